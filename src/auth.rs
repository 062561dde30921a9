//! API tokens: JWT (RFC 7519) signed with HS256, minted by `aiops token issue` and checked on
//! every `/api` request.
//!
//! A token says who the caller is (`sub`), what it may do (`role`) and which apps it may see
//! (`apps`, namespaces). Only HS256 is accepted: the `alg` header is checked, never trusted, so
//! `none` or a public-key algorithm cannot be substituted. The signature is compared in
//! constant time.
//!
//! Signing and verifying are the `jsonwebtoken` crate's, on its aws-lc-rs backend (the one
//! crypto provider of the binary; its constant-time `hmac::verify` checks the signature). What
//! stays here is what the crate does differently from our contract: `exp`/`nbf` are checked
//! against the caller's `now` (so tests and the fuzz target choose the time) with our leeway,
//! and its errors are sorted into the bounded kinds of [`Error`] that metrics count.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Why a token was refused. Messages never include the token or the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not three base64url parts, or not JSON inside.
    #[error("malformed token")]
    Malformed,
    /// A header algorithm other than HS256.
    #[error("unsupported token algorithm (only HS256)")]
    Algorithm,
    /// The signature does not match the configured secret.
    #[error("invalid token signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The secret is too short to be safe.
    #[error("the JWT secret must be at least 32 bytes")]
    WeakSecret,
    /// Claims that make no sense (empty subject, unknown role).
    #[error("invalid claims: {0}")]
    Claims(String),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Malformed => "malformed",
            Error::Algorithm => "algorithm",
            Error::Signature => "signature",
            Error::Expired => "expired",
            Error::NotYetValid => "not_yet_valid",
            Error::WeakSecret => "weak_secret",
            Error::Claims(_) => "claims",
        }
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every app and may write.
    Admin,
    /// Sees its apps and may write (notes, app registration) in them.
    Editor,
    /// Sees its apps, read only.
    Viewer,
}

impl Role {
    /// The role's name as tokens spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        match s {
            "admin" => Ok(Role::Admin),
            "editor" => Ok(Role::Editor),
            "viewer" => Ok(Role::Viewer),
            other => Err(Error::Claims(format!(
                "unknown role {other:?} (admin, editor or viewer)"
            ))),
        }
    }
}

/// The claims of an API token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who (a person or a system), recorded in the audit log.
    pub sub: String,
    /// What it may do.
    pub role: Role,
    /// Apps (namespaces) it may see; admins see every app whatever this says.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: i64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl Claims {
    /// Whether the token may see items of app (namespace) `ns`.
    pub fn can_see(&self, ns: &str) -> bool {
        self.role == Role::Admin || self.apps.iter().any(|a| a == ns)
    }

    /// Whether the token may see an item of app `ns`, where an item without an app (an alert
    /// with no namespace label) belongs to no app: only admins see it, as in the listings.
    pub fn can_see_item(&self, ns: Option<&str>) -> bool {
        match ns {
            Some(ns) => self.can_see(ns),
            None => self.visible_apps().is_none(),
        }
    }

    /// Whether the token may write (editor or admin).
    pub fn can_write(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Editor)
    }

    /// The apps a listing is limited to: None for admins (every app).
    pub fn visible_apps(&self) -> Option<&[String]> {
        (self.role != Role::Admin).then_some(self.apps.as_slice())
    }

    /// The apps a listing asked for `asked` (an app filter, if any) covers: `None` for every
    /// app (an admin who asked for none). Another app's name filters down to nothing, as if
    /// it had no items, so a listing never tells a hidden app from an empty one.
    pub fn listing_scope(&self, asked: Option<&str>) -> Option<Vec<String>> {
        match asked {
            Some(ns) if self.can_see(ns) => Some(vec![ns.to_string()]),
            Some(_) => Some(Vec::new()),
            None => self.visible_apps().map(<[String]>::to_vec),
        }
    }
}

/// Clock leeway for `exp` and `nbf`, seconds: replicas' clocks differ a little.
const LEEWAY_S: i64 = 30;

/// A signing key; holds the secret without ever printing it.
#[derive(Clone)]
pub struct Key {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

/// The header as far as [`Key::verify`] needs to read it when `jsonwebtoken` refused it: an
/// algorithm it does not know (`none`, a typo) is refused as one, not as a malformed token.
#[derive(Deserialize)]
struct AlgOnly {
    alg: String,
}

impl Key {
    /// A key from the configured secret (at least 32 bytes, as RFC 7518 §3.2 requires for HS256).
    pub fn new(secret: Secret) -> Result<Key> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < 32 {
            return Err(Error::WeakSecret);
        }
        // Only HS256. Time claims are checked by `verify` against its `now`, so the crate's
        // own clock-based checks (and its required `exp`, which `Claims` requires anyway)
        // are off.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        Ok(Key {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        })
    }

    /// Signs claims into a compact JWT.
    pub fn issue(&self, claims: &Claims) -> Result<String> {
        if claims.sub.trim().is_empty() {
            return Err(Error::Claims("empty subject".into()));
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Claims(e.to_string()))
    }

    /// Verifies a compact JWT at time `now` (seconds) and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims> {
        // The crate splits on the last dot only; a JWS in compact form has exactly three parts.
        if token.split('.').count() != 3 {
            return Err(Error::Malformed);
        }
        // The header first, so a JSON error below can only be the claims'.
        if let Err(e) = jsonwebtoken::decode_header(token) {
            return Err(match e.kind() {
                ErrorKind::Json(_) if header_names_an_algorithm(token) => Error::Algorithm,
                _ => Error::Malformed,
            });
        }
        // Only a correctly signed payload is parsed into claims.
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidAlgorithm => Error::Algorithm,
                ErrorKind::InvalidSignature => Error::Signature,
                ErrorKind::Json(e) => Error::Claims(e.to_string()),
                _ => Error::Malformed,
            })?
            .claims;
        if claims.exp.saturating_add(LEEWAY_S) <= now {
            return Err(Error::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(LEEWAY_S) > now)
        {
            return Err(Error::NotYetValid);
        }
        if claims.sub.trim().is_empty() {
            return Err(Error::Claims("empty subject".into()));
        }
        Ok(claims)
    }
}

/// Whether the token's header is JSON naming an algorithm other than HS256 (one the crate does
/// not know; an HS256 header it refused is malformed in another way).
fn header_names_an_algorithm(token: &str) -> bool {
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<AlgOnly>(&json).ok())
        .is_some_and(|h| h.alg != "HS256")
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn key() -> Key {
        Key::new(Secret::new("0123456789abcdef0123456789abcdef")).unwrap()
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "alice".into(),
            role: Role::Editor,
            apps: vec!["shop".into()],
            exp,
            iat: 1_000,
            nbf: None,
        }
    }

    #[test]
    fn a_token_issued_with_the_secret_verifies_to_its_claims() {
        let t = key().issue(&claims(2_000)).unwrap();
        assert_eq!(key().verify(&t, 1_500).unwrap(), claims(2_000));
    }

    #[test]
    fn a_token_signed_by_another_implementation_verifies() {
        // Made with Python's hmac and base64 modules for this secret.
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJ2aWV3ZXIiLCJhcHBzIjpbInNob3AiXSwiZXhwIjo0MTAyNDQ0ODAwfQ.WHovGvaT_No76aV-QDdtUAI3Z9Yv4bQzcKJnKxkf1xQ";
        let c = key().verify(t, 1_700_000_000).unwrap();
        assert_eq!(c.role, Role::Viewer);
        assert_eq!(c.apps, vec!["shop".to_string()]);
        assert_eq!(c.exp, 4_102_444_800);
    }

    #[test]
    fn expired_forged_and_malformed_tokens_are_refused() {
        let t = key().issue(&claims(2_000)).unwrap();
        assert_eq!(key().verify(&t, 2_031), Err(Error::Expired));
        let other = Key::new(Secret::new("another secret, also 32 bytes long!")).unwrap();
        assert_eq!(other.verify(&t, 1_500), Err(Error::Signature));
        // A payload swapped under the original signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let admin = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                role: Role::Admin,
                ..claims(2_000)
            })
            .unwrap(),
        );
        parts[1] = &admin;
        assert_eq!(key().verify(&parts.join("."), 1_500), Err(Error::Signature));
        assert_eq!(key().verify("abc", 1_500), Err(Error::Malformed));
        assert_eq!(key().verify("a.b.c.d", 1_500), Err(Error::Malformed));
    }

    #[test]
    fn the_none_algorithm_is_refused() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(2_000)).unwrap());
        assert_eq!(
            key().verify(&format!("{h}.{p}."), 1_500),
            Err(Error::Algorithm)
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert_eq!(
            Key::new(Secret::new("short")).unwrap_err(),
            Error::WeakSecret
        );
    }

    #[test]
    fn admins_see_every_app_and_viewers_only_theirs_read_only() {
        let mut c = claims(2_000);
        assert!(c.can_see("shop") && !c.can_see("blog") && c.can_write());
        c.role = Role::Viewer;
        assert!(!c.can_write());
        assert_eq!(c.visible_apps(), Some(&["shop".to_string()][..]));
        c.role = Role::Admin;
        assert!(c.can_see("blog"));
        assert_eq!(c.visible_apps(), None);
    }
}
