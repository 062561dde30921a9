//! Signed approval links for the channels without buttons (email, generic webhook).
//!
//! A link is `external_url` + `/approve/{token}`. The token is a compact JWS (HS256, the
//! `jsonwebtoken` crate already used for the API, on the binary's one crypto provider) over the
//! job id, the choice, the channel and its platform, the expiry (the approval's own) and a random
//! nonce, signed with `approval_secret`. The signature makes the link unforgeable, the expiry ends
//! it with the approval, and the nonce, recorded in the decision's transaction
//! (`approval_links_used`), makes it single-use. The audience claim keeps an API token and a link
//! token from ever being taken for each other, even under one secret.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Choice;
use crate::notify::channel::ChannelKind;
use crate::rules::{Approver, Platform};

/// The audience every link token carries.
const AUDIENCE: &str = "aiops-approval-link";

/// Why a token was refused (the page says so; no detail of the secret ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token this daemon signed (bad signature, wrong audience, damaged).
    #[error("this approval link is not valid: it was not signed by this aiops, or it was altered")]
    Invalid,
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkClaims {
    /// The job.
    pub job_id: i64,
    /// Approve or reject.
    pub choice: Choice,
    /// Who the link stands for: `email:<channel>` or `webhook:<channel>`.
    pub approver: Approver,
    /// When the link stops working (epoch ms, whole seconds).
    pub expires_at_ms: i64,
    /// The single-use nonce.
    pub nonce: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    aud: String,
    job: i64,
    choice: Choice,
    /// `email` or `webhook`.
    platform: String,
    /// The channel's name.
    ch: String,
    /// Seconds since the epoch (JWT's `exp`).
    exp: i64,
    nonce: String,
}

/// Signs and verifies approval links.
pub struct Links {
    base: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Which platform each link channel is (email or webhook).
    platforms: BTreeMap<String, Platform>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Links {
    /// The signer of the settings: `None` unless both `external_url` and `approval_secret` are
    /// set (the settings already refused a secret shorter than [`super::MIN_SECRET_BYTES`]).
    pub fn from_settings(settings: &crate::config::Settings) -> Option<Links> {
        let base = settings.external_url.as_deref()?;
        let secret = settings.approval_secret.as_ref()?;
        let platforms = settings
            .notify
            .channels
            .iter()
            .filter_map(|(name, c)| match c.kind {
                ChannelKind::Email(_) => Some((name.clone(), Platform::Email)),
                ChannelKind::Webhook(_) => Some((name.clone(), Platform::Webhook)),
                _ => None,
            })
            .collect();
        Some(Links::new(base, secret.expose().as_bytes(), platforms))
    }

    /// A signer for links under `base` with `secret`.
    pub fn new(base: &str, secret: &[u8], platforms: BTreeMap<String, Platform>) -> Links {
        let mut validation = Validation::new(Algorithm::HS256);
        // The expiry is the approval's, judged by the decision (which records an expired
        // click); the signature and audience are judged here.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_audience(&[AUDIENCE]);
        Links {
            base: base.trim_end_matches('/').to_string(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            platforms,
        }
    }

    /// A signed token for one choice on one job, sent to `channel`.
    pub fn token(&self, job_id: i64, choice: Choice, channel: &str, expires_at_ms: i64) -> String {
        let platform = self
            .platforms
            .get(channel)
            .copied()
            .unwrap_or(Platform::Webhook);
        let claims = Claims {
            aud: AUDIENCE.into(),
            job: job_id,
            choice,
            platform: platform.as_str().into(),
            ch: channel.into(),
            // Rounded up: the link never ends before the approval does.
            exp: expires_at_ms.div_euclid(1000) + i64::from(expires_at_ms.rem_euclid(1000) > 0),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        };
        // HS256 over a struct of plain fields cannot fail to encode.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The link to the confirmation page of a token.
    pub fn url(&self, token: &str) -> String {
        format!("{}/approve/{token}", self.base)
    }

    /// Checks a token's signature and audience and returns what it says.
    pub fn verify(&self, token: &str) -> Result<LinkClaims, LinkError> {
        if token.split('.').count() != 3 {
            return Err(LinkError::Invalid);
        }
        let c = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| LinkError::Invalid)?
            .claims;
        let platform = match c.platform.as_str() {
            "email" => Platform::Email,
            "webhook" => Platform::Webhook,
            _ => return Err(LinkError::Invalid),
        };
        if c.ch.is_empty() || c.nonce.is_empty() {
            return Err(LinkError::Invalid);
        }
        Ok(LinkClaims {
            job_id: c.job,
            choice: c.choice,
            approver: Approver { platform, id: c.ch },
            expires_at_ms: c.exp.saturating_mul(1000),
            nonce: c.nonce,
        })
    }
}

impl crate::notify::ApprovalLinks for Links {
    fn links(&self, job_id: i64, channel: &str, expires_at_ms: i64) -> (String, String) {
        let url = |choice| self.url(&self.token(job_id, choice, channel, expires_at_ms));
        (url(Choice::Approve), url(Choice::Reject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(secret: &[u8]) -> Links {
        let mut p = BTreeMap::new();
        p.insert("oncall-mail".to_string(), Platform::Email);
        Links::new("https://aiops.example.com/", secret, p)
    }

    #[test]
    fn a_token_says_what_it_was_signed_for_and_stands_for_its_channel() {
        let l = links(&[7; 32]);
        let t = l.token(42, Choice::Reject, "oncall-mail", 1_700_000_000_500);
        let c = l.verify(&t).unwrap();
        assert_eq!((c.job_id, c.choice), (42, Choice::Reject));
        assert_eq!(c.approver.to_string(), "email:oncall-mail");
        assert_eq!(
            c.expires_at_ms, 1_700_000_001_000,
            "rounded up, never earlier"
        );
        assert_eq!(l.url(&t), format!("https://aiops.example.com/approve/{t}"));
        let again = l.token(42, Choice::Reject, "oncall-mail", 1_700_000_000_500);
        assert_ne!(l.verify(&again).unwrap().nonce, c.nonce, "a nonce per link");
    }

    #[test]
    fn a_token_signed_with_another_secret_or_altered_is_refused() {
        let t = links(&[7; 32]).token(42, Choice::Approve, "oncall-mail", 1_700_000_000_000);
        assert_eq!(links(&[8; 32]).verify(&t), Err(LinkError::Invalid));
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = b64.encode(payload.replace("\"job\":42", "\"job\":43"));
        assert_eq!(
            links(&[7; 32]).verify(&parts.join(".")),
            Err(LinkError::Invalid)
        );
        assert_eq!(links(&[7; 32]).verify("x.y"), Err(LinkError::Invalid));
    }

    #[test]
    fn an_api_token_under_the_same_secret_is_no_link() {
        let key = crate::auth::Key::new(crate::secret::Secret::new("s".repeat(32))).unwrap();
        let api = key
            .issue(&crate::auth::Claims {
                sub: "ops".into(),
                role: crate::auth::Role::Admin,
                apps: vec![],
                exp: i64::MAX / 2,
                nbf: None,
                iat: 0,
            })
            .unwrap();
        assert_eq!(
            links("s".repeat(32).as_bytes()).verify(&api),
            Err(LinkError::Invalid)
        );
    }
}
