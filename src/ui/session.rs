//! Who is looking: the session cookie, the signed-in [`Viewer`], the page language, and forms
//! that prove they came from this console ([`CsrfForm`]).
//!
//! - **The cookie** `aiops_session` holds 32 random bytes (hex); the store keeps only their
//!   SHA-256, with the user and the session's CSRF token. It is `HttpOnly` (scripts cannot read
//!   it), `SameSite=Lax` (other sites' forms do not carry it; links from a chat message still
//!   arrive signed in), `Path=/ui`, and `Secure` by `ui.secure_cookie`.
//! - **CSRF**: every form carries the session's synchronizer token in a hidden `csrf` field,
//!   compared in constant time; a request whose `Origin` names another host is refused as well.
//!   A refused form changes nothing and says why.
//! - **The language**: the `aiops_lang` cookie (set by the switcher, `/ui/lang/{code}`), else
//!   the browser's `Accept-Language`, else `notify.language`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::render::UiError;
use super::{Console, Lang};
use crate::auth::Claims;
use crate::config::SecureCookie;
use crate::http::AppState;
use crate::store::{self, Store};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "aiops_session";
/// The language cookie's name.
pub const LANG_COOKIE: &str = "aiops_lang";

/// A signed-in user, as every console page sees them.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// Role and apps, exactly as an API token's: every access check is [`Claims`]'. The subject
    /// is `console:<name>`, as the audit log and approvals record it.
    pub claims: Claims,
    /// The user's name.
    pub name: String,
    /// The session's CSRF token, put into every form.
    pub csrf: String,
    /// The page language.
    pub lang: Lang,
    /// Path and query of this request (the language switcher returns here).
    pub path: String,
    /// SHA-256 (hex) of the session token (sign-out ends this session).
    pub(crate) session: String,
}

impl Viewer {
    /// The approver this user is on allow-lists: `console:<name>`.
    pub fn approver(&self) -> crate::rules::Approver {
        crate::rules::Approver {
            platform: crate::rules::Platform::Console,
            id: self.name.clone(),
        }
    }
}

/// The console of the state, or 404 when it is off (the routes are not even mounted then).
pub(crate) fn console(st: &AppState) -> Result<&Console, UiError> {
    st.console.as_deref().ok_or(UiError::NotFound)
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The language of a request: its cookie, else `Accept-Language`, else the default.
pub fn request_lang(headers: &HeaderMap, default: Lang) -> Lang {
    if let Some(l) = cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
        return l;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|part| Lang::parse(part.split(';').next().unwrap_or("")))
        .next()
        .unwrap_or(default)
}

/// The language of a page that needs no sign-in (the login page, errors).
#[derive(Clone, Copy, Debug)]
pub struct PageLang(pub Lang);

impl FromRequestParts<AppState> for PageLang {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<PageLang, UiError> {
        let c = console(st)?;
        Ok(PageLang(request_lang(&parts.headers, c.default_lang)))
    }
}

/// SHA-256 of a session token, hex: what the store keys sessions by.
pub fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source works");
    hex::encode(bytes)
}

/// Whether the session cookie is `Secure` for this request.
pub fn secure(c: &Console, headers: &HeaderMap) -> bool {
    match c.secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => {
            c.external_https
                || headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
        }
    }
}

/// A new session for `user`, recorded in the store: the cookie's token (to send once, never
/// stored) and the session's CSRF token.
pub async fn start(
    store: &Store,
    c: &Console,
    user: &str,
    now: i64,
) -> Result<(String, String), store::Error> {
    let token = random_token();
    let csrf = random_token();
    let mut tx = store.begin_write().await?;
    // Ended sessions go when a new one starts, so the table holds only live ones without a
    // separate task.
    tx.prune_console_sessions(now).await?;
    tx.insert_console_session(
        &token_hash(&token),
        user,
        &csrf,
        now,
        now.saturating_add(store::ms(c.session_ttl)),
    )
    .await?;
    tx.commit().await?;
    Ok((token, csrf))
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(c: &Console, headers: &HeaderMap, token: &str) -> HeaderValue {
    let secure = if secure(c, headers) { "; Secure" } else { "" };
    let max_age = c.session_ttl.as_secs();
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("a hex token is a valid header value")
}

/// `Set-Cookie` that deletes the session cookie (sign-out).
pub fn clear_session_cookie(c: &Console, headers: &HeaderMap) -> HeaderValue {
    let secure = if secure(c, headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("a static header value")
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Viewer, UiError> {
        let c = console(st)?;
        let lang = request_lang(&parts.headers, c.default_lang);
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
        let sign_in = || UiError::SignIn {
            next: path.clone(),
            lang,
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Err(sign_in());
        };
        let now = store::now_ms();
        let hash = token_hash(token);
        let Some(s) = st
            .pipeline
            .store()
            .console_session(&hash, now)
            .await
            .map_err(UiError::internal)?
        else {
            return Err(sign_in());
        };
        Ok(Viewer {
            claims: Claims {
                sub: format!("console:{}", s.user.name),
                role: s.user.role,
                apps: s.user.apps,
                exp: s.expires_at / 1000,
                iat: s.created_at / 1000,
                nbf: None,
            },
            name: s.user.name,
            csrf: s.csrf,
            lang,
            path,
            session: s.id_hash,
        })
    }
}

/// A form posted from a console page by the signed-in [`Viewer`]: its `csrf` field matched
/// the session's token (constant time) and its `Origin`, when sent, is this host. `T` is the
/// rest of the form (urlencoded), read strictly.
#[derive(Debug)]
pub struct CsrfForm<T> {
    /// Who posted it.
    pub viewer: Viewer,
    /// The form's other fields.
    pub form: T,
}

/// Whether `Origin` (when the browser sent one) names the host the request was sent to, or
/// `external` (the origin of `external_url`: a proxy in front may rewrite `Host`).
fn same_origin(headers: &HeaderMap, external: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if external.is_some_and(|e| e.eq_ignore_ascii_case(origin.trim_end_matches('/'))) {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = UiError;

    async fn from_request(req: Request, st: &AppState) -> Result<CsrfForm<T>, UiError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, st).await?;
        let external = console(st)?.external_origin.as_deref();
        if !same_origin(&parts.headers, external) {
            tracing::info!(user = %viewer.name, "console form from another origin refused");
            return Err(UiError::Csrf { lang: viewer.lang });
        }
        let req = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(req, st)
            .await
            .map_err(|e| UiError::BadRequest {
                message: e.body_text(),
                lang: viewer.lang,
            })?;
        let mut csrf = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(&bytes) {
            if k == "csrf" {
                csrf = Some(v.into_owned());
            } else {
                rest.append_pair(&k, &v);
            }
        }
        let matches = csrf.is_some_and(|c| {
            subtle::ConstantTimeEq::ct_eq(c.as_bytes(), viewer.csrf.as_bytes()).into()
        });
        if !matches {
            tracing::info!(user = %viewer.name, "console form without this session's CSRF token refused");
            return Err(UiError::Csrf { lang: viewer.lang });
        }
        let form = serde_urlencoded::from_str(&rest.finish()).map_err(|e| UiError::BadRequest {
            message: e.to_string(),
            lang: viewer.lang,
        })?;
        Ok(CsrfForm { viewer, form })
    }
}

/// The language switcher and the routes of this module.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ui/lang/{code}", get(switch_language))
}

/// Query of the switcher: where to go back to.
#[derive(Debug, Deserialize)]
struct Back {
    next: Option<String>,
}

/// Only a path of this console: never another site (open redirect) nor `//host`.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui")
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/ui/alerts",
    }
}

/// `GET /ui/lang/{code}?next=/ui/...`: remembers the language for a year and goes back. A GET,
/// because it changes only this browser's preference, and works signed out too.
async fn switch_language(
    State(st): State<AppState>,
    Path(code): Path<String>,
    Query(back): Query<Back>,
) -> Result<Response, UiError> {
    console(&st)?;
    let Some(lang) = Lang::parse(&code) else {
        return Err(UiError::NotFound);
    };
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/ui; Max-Age=31536000; SameSite=Lax",
        lang.code()
    );
    let mut resp = Redirect::to(safe_next(back.next.as_deref())).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    *resp.status_mut() = StatusCode::SEE_OTHER;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_through_a_proxy_that_rewrites_host_passes_with_the_external_origin_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            "aiops.svc.cluster.local:8080".parse().unwrap(),
        );
        h.insert(header::ORIGIN, "https://aiops.example.com".parse().unwrap());
        let external = Some("https://aiops.example.com");
        assert!(same_origin(&h, external));
        assert!(
            !same_origin(&h, None),
            "without external_url only Host counts"
        );
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, external));
        h.insert(header::ORIGIN, "http://aiops.example.com".parse().unwrap());
        assert!(
            !same_origin(&h, external),
            "the scheme is part of the origin"
        );
        h.insert(
            header::ORIGIN,
            "http://aiops.svc.cluster.local:8080".parse().unwrap(),
        );
        assert!(same_origin(&h, external), "Host still counts");
    }

    #[test]
    fn cookies_are_found_among_others_and_across_headers() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; aiops_lang=zh-TW".parse().unwrap());
        h.append(header::COOKIE, "aiops_session=abc".parse().unwrap());
        assert_eq!(cookie(&h, LANG_COOKIE), Some("zh-TW"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn the_language_comes_from_the_cookie_then_the_browser_then_the_default() {
        let mut h = HeaderMap::new();
        assert_eq!(request_lang(&h, Lang::ZhTw), Lang::ZhTw);
        h.insert(
            header::ACCEPT_LANGUAGE,
            "fr;q=1, zh-TW;q=0.8, en;q=0.5".parse().unwrap(),
        );
        assert_eq!(request_lang(&h, Lang::En), Lang::ZhTw);
        h.insert(header::COOKIE, "aiops_lang=en".parse().unwrap());
        assert_eq!(request_lang(&h, Lang::ZhTw), Lang::En);
    }

    #[test]
    fn going_back_after_a_switch_never_leaves_the_console() {
        assert_eq!(safe_next(Some("/ui/repairs/3?x=1")), "/ui/repairs/3?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui",
            "/api/alerts",
            "/ui\\..",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/alerts", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/alerts");
    }

    #[test]
    fn a_form_from_another_origin_is_told_apart_from_this_host() {
        let mut h = HeaderMap::new();
        assert!(
            same_origin(&h, None),
            "no Origin (an older browser, curl): the CSRF token decides"
        );
        h.insert(header::HOST, "127.0.0.1:9095".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:9095".parse().unwrap());
        assert!(same_origin(&h, None));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, None));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h, None));
    }

    #[test]
    fn a_session_token_is_stored_only_as_its_hash() {
        let t = random_token();
        assert_eq!(t.len(), 64);
        assert_ne!(random_token(), t);
        let h = token_hash(&t);
        assert_eq!(h.len(), 64);
        assert_ne!(h, t);
    }
}
