//! Signing in (`/ui/login`) and out (`/ui/logout`), and the limit on failed sign-ins.
//!
//! - **Who may sign in**: console users (`aiops user add`), checked against their argon2id
//!   hash ([`super::password`]) off the async runtime.
//! - **No user enumeration**: an unknown name, a wrong password and an unusable stored hash get
//!   the same page and take the same time (an unknown name is verified against a dummy hash).
//! - **Guessing is slow twice over**: every failure spends the client address's budget
//!   (`http.auth_failures_per_minute`, the same rates as the webhook and the API but a budget of
//!   its own, so mistyped passwords never throttle Alertmanager), and the
//!   [`Limiter`] counts failures per user name, whatever the address, so that many addresses
//!   cannot share the guessing of one password.
//! - **Login CSRF**: the form carries a token that must equal the `aiops_login` cookie set with
//!   the form (`SameSite=Strict`), so another site cannot sign a browser into an account of its
//!   choosing.
//! - A successful sign-in starts a new session ([`super::session::start`]) and goes back to the
//!   page that asked for it (`next`, only ever a console path).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::password::{self, MAX_NAME_BYTES};
use super::render::{UiError, anonymous_page};
use super::session::{self, CsrfForm, PageLang, Viewer, console, cookie, random_token, safe_next};
use super::{Console, Lang};
use crate::http::AppState;
use crate::store;

/// Templates of this module.
pub(super) const TEMPLATES: &[(&str, &str)] =
    &[("login.html", include_str!("templates/login.html"))];

/// Styles of the sign-in page.
pub(super) const CSS: &str = include_str!("static/login.css");

/// Words of this module: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = &[
    ("login.title", "Sign in", "登入"),
    (
        "login.heading",
        "Sign in to the aiops console",
        "登入 aiops 主控台",
    ),
    ("login.username", "User name", "使用者名稱"),
    ("login.password", "Password", "密碼"),
    ("login.submit", "Sign in", "登入"),
    (
        "login.error.wrong",
        "The user name or password is wrong.",
        "使用者名稱或密碼錯誤。",
    ),
    (
        "login.error.throttled",
        "Too many failed sign-ins. Try again in this many seconds:",
        "登入失敗次數過多。請在以下秒數後再試：",
    ),
    (
        "login.error.expired",
        "The sign-in form expired. Please sign in again.",
        "登入表單已過期，請重新登入。",
    ),
    (
        "login.hint",
        "Accounts are created by an operator with: aiops user add NAME --role ROLE --apps APPS",
        "帳號由維運人員以此指令建立：aiops user add 名稱 --role 角色 --apps 應用",
    ),
];

/// The cookie holding the sign-in form's anti-CSRF token.
const LOGIN_COOKIE: &str = "aiops_login";

/// Routes of this module.
pub(super) fn routes() -> Router<AppState> {
    // The dummy hash is made now, off the runtime, so that no sign-in pays for it (the first
    // unknown name would otherwise be the one slower answer).
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn_blocking(password::warm_up);
    }
    Router::new()
        .route("/ui/login", get(form).post(sign_in))
        .route("/ui/logout", post(sign_out))
}

/// Query of the login page: where to go once signed in.
#[derive(Debug, Default, Deserialize)]
struct Next {
    next: Option<String>,
}

/// The sign-in form as posted. No `Debug`: it holds a password.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// Why the form is shown again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Unknown user or wrong password (never told apart).
    Wrong,
    /// Too many failures: from this address or for this user name.
    Throttled(Duration),
    /// The form's token is not this browser's.
    Expired,
}

/// The login page's variables.
#[derive(Debug, Serialize)]
struct LoginView<'a> {
    next: &'a str,
    username: &'a str,
    token: &'a str,
    /// Key of the error's words, if the form is shown again.
    error: Option<&'static str>,
    /// Seconds to wait, with `login.error.throttled`.
    retry_after: Option<u64>,
}

/// Whole seconds to wait, rounded up (a client told 0 would retry at once).
fn seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The form's token: the browser's `aiops_login` cookie when it has a well-formed one (several
/// tabs share it), else a new one.
fn form_token(headers: &HeaderMap) -> String {
    cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(random_token, str::to_string)
}

/// The login page, with `refusal` when the form is shown again.
fn login_page(
    c: &Console,
    headers: &HeaderMap,
    lang: Lang,
    next: &str,
    username: &str,
    refusal: Option<Refusal>,
) -> Result<Response, UiError> {
    let token = form_token(headers);
    let view = LoginView {
        next: safe_next(Some(next)),
        username,
        token: &token,
        error: refusal.map(|r| match r {
            Refusal::Wrong => "login.error.wrong",
            Refusal::Throttled(_) => "login.error.throttled",
            Refusal::Expired => "login.error.expired",
        }),
        retry_after: match refusal {
            Some(Refusal::Throttled(wait)) => Some(seconds(wait)),
            _ => None,
        },
    };
    let mut resp = anonymous_page(c, lang, "/ui/login", "login.html", &view)?;
    let secure = if session::secure(c, headers) {
        "; Secure"
    } else {
        ""
    };
    let set = format!(
        "{LOGIN_COOKIE}={token}; Path=/ui/login; Max-Age=3600; HttpOnly; SameSite=Strict{secure}"
    );
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    match refusal {
        Some(Refusal::Throttled(wait)) => {
            *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(v) = HeaderValue::from_str(&seconds(wait).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        Some(Refusal::Expired) => *resp.status_mut() = StatusCode::FORBIDDEN,
        Some(Refusal::Wrong) | None => {}
    }
    Ok(resp)
}

/// `GET /ui/login?next=…`: the form; a browser already signed in goes on to `next`.
async fn form(
    State(st): State<AppState>,
    PageLang(lang): PageLang,
    Query(q): Query<Next>,
    mut parts: Parts,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let next = safe_next(q.next.as_deref());
    if Viewer::from_request_parts(&mut parts, &st).await.is_ok() {
        return Ok(see_other(next));
    }
    login_page(c, &parts.headers, lang, next, "", None)
}

/// 303 to `to`.
fn see_other(to: &str) -> Response {
    let mut r = axum::response::Redirect::to(to).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}

/// The client's address (absent only when the router is driven without a server, as the
/// bench does; then no address is throttled).
fn client_ip(ext: &Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// `POST /ui/login`: checks the form's token, the throttles, then the password.
async fn sign_in(
    State(st): State<AppState>,
    PageLang(lang): PageLang,
    headers: HeaderMap,
    ext: Extensions,
    body: Bytes,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let f: LoginForm = serde_urlencoded::from_bytes(&body).map_err(|e| UiError::BadRequest {
        message: e.to_string(),
        lang,
    })?;
    let next = safe_next(f.next.as_deref());
    let again = |refusal| login_page(c, &headers, lang, next, &f.username, Some(refusal));
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    let token_ok = !expected.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            f.csrf.as_bytes(),
            expected.as_bytes(),
        ));
    if !token_ok {
        tracing::info!("console sign-in form without this browser's token refused");
        return again(Refusal::Expired);
    }
    let ip = client_ip(&ext);
    // Before the password is looked at: a blocked guesser must not learn that a guess was right.
    if let Some(wait) = ip.and_then(|ip| st.sign_in_blocked(ip)) {
        return again(Refusal::Throttled(wait));
    }
    let now = Instant::now();
    if let Err(wait) = c.logins.check(&f.username, now) {
        return again(Refusal::Throttled(wait));
    }
    let store = st.pipeline.store();
    let user = if f.username.is_empty() || f.username.len() > MAX_NAME_BYTES {
        None
    } else {
        store
            .console_user(&f.username)
            .await
            .map_err(|e| UiError::internal(e).in_lang(lang))?
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let presented = f.password.clone();
    // Each verification holds 19 MiB and a core for tens of milliseconds: a flood of posted
    // forms (all arriving before any failure is counted) waits here instead of taking the
    // daemon's memory.
    let _permit = VERIFYING
        .acquire()
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?;
    let ok = tokio::task::spawn_blocking(move || password::verify(&presented, stored.as_deref()))
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?;
    let user = match user {
        Some(u) if ok => u,
        other => {
            // The name only when it is a user's: people type passwords into the name field.
            match &other {
                Some(u) => {
                    tracing::info!(user = %u.name, "console sign-in refused: wrong password")
                }
                None => tracing::info!("console sign-in refused: unknown user name"),
            }
            let by_name = c.logins.failed(&f.username, now);
            let by_address = ip.and_then(|ip| st.sign_in_failure(ip));
            return match by_name.into_iter().chain(by_address).max() {
                Some(wait) => again(Refusal::Throttled(wait)),
                None => again(Refusal::Wrong),
            };
        }
    };
    c.logins.succeeded(&user.name);
    let (token, _csrf) = session::start(store, c, &user.name, store::now_ms())
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?;
    tracing::info!(user = %user.name, role = user.role.as_str(), "console sign-in");
    let mut resp = see_other(next);
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::session_cookie(c, &headers, &token),
    );
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "aiops_login=; Path=/ui/login; Max-Age=0; HttpOnly; SameSite=Strict",
        ),
    );
    Ok(resp)
}

/// The sign-out form: only its CSRF token.
#[derive(Debug, Deserialize)]
struct NoFields {}

/// `POST /ui/logout`: ends this session in the store (the cookie alone would not: a copy of it
/// would still work) and goes to the login page.
async fn sign_out(
    State(st): State<AppState>,
    headers: HeaderMap,
    CsrfForm { viewer, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let mut tx = st
        .pipeline
        .store()
        .begin_write()
        .await
        .map_err(|e| UiError::internal(e).in_lang(viewer.lang))?;
    tx.end_console_session(&viewer.session)
        .await
        .map_err(|e| UiError::internal(e).in_lang(viewer.lang))?;
    tx.commit()
        .await
        .map_err(|e| UiError::internal(e).in_lang(viewer.lang))?;
    tracing::info!(user = %viewer.name, "console sign-out");
    let mut resp = see_other("/ui/login");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session::clear_session_cookie(c, &headers),
    );
    Ok(resp)
}

/// Password verifications running at once (see [`sign_in`]): half the cores, so a flood of
/// forms leaves the other half to the webhook and the workers (a fixed 4 saturated 2 cores).
static VERIFYING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    tokio::sync::Semaphore::new(verifiers_for(cores))
});

/// How many argon2 verifications may run at once on a machine with `cores` cores.
fn verifiers_for(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// Failures a user name may have before sign-ins to it are delayed.
const FREE_FAILURES: u32 = 5;
/// The delay after the first failure beyond the free ones; it doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_secs(30);
/// The longest delay: an attacker can slow a user's sign-in, never lock them out for long.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// A name with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Names remembered at most: the names are chosen by whoever posts the form.
const MAX_NAMES: usize = 10_000;

/// Failed sign-ins of one user name.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when sign-ins to this name are refused.
    fn until(&self) -> Instant {
        let beyond = self.count.saturating_sub(FREE_FAILURES);
        if beyond == 0 {
            return self.last;
        }
        let delay = FIRST_DELAY
            .checked_mul(1u32 << (beyond - 1).min(16))
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY);
        self.last + delay
    }
}

/// Failed sign-ins per user name, whatever the address they come from: after
/// [`FREE_FAILURES`], each further failure delays the next attempt, from 30 s doubling up to
/// 15 min; a success or an hour without failure starts afresh.
///
/// Hand-written rather than `governor` (which the per-address throttle uses): a sign-in that
/// succeeds must clear its name's count, and governor's keyed limiter cannot reset one key.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    names: Mutex<HashMap<String, Failures>>,
}

impl Limiter {
    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while sign-ins to `name` are refused.
    pub(crate) fn check(&self, name: &str, now: Instant) -> Result<(), Duration> {
        let names = self.names();
        let Some(f) = names.get(key(name)) else {
            return Ok(());
        };
        let until = f.until();
        if until > now && now.duration_since(f.last) < FORGET_AFTER {
            return Err(until - now);
        }
        Ok(())
    }

    /// Records a failed sign-in to `name`; `Some(wait)` when further ones are now refused.
    pub(crate) fn failed(&self, name: &str, now: Instant) -> Option<Duration> {
        let mut names = self.names();
        let k = key(name);
        if !names.contains_key(k) && names.len() >= MAX_NAMES {
            make_room(&mut names, now);
        }
        let f = names.entry(k.to_string()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        let until = f.until();
        (until > now).then(|| until - now)
    }

    /// A successful sign-in: the name starts afresh.
    pub(crate) fn succeeded(&self, name: &str) {
        self.names().remove(key(name));
    }
}

/// The key of a name: bounded, so that a posted megabyte is not stored.
fn key(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_BYTES + 1);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Forgets names whose failures are old; if all are recent, the one idle longest.
fn make_room(names: &mut HashMap<String, Failures>, now: Instant) {
    names.retain(|_, f| f.until() > now && now.duration_since(f.last) < FORGET_AFTER);
    if names.len() >= MAX_NAMES
        && let Some(oldest) = names
            .iter()
            .min_by_key(|(_, f)| f.last)
            .map(|(k, _)| k.clone())
    {
        names.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_verifications_use_at_most_half_the_cores_and_at_least_one() {
        assert_eq!(verifiers_for(1), 1);
        assert_eq!(verifiers_for(2), 1);
        assert_eq!(verifiers_for(3), 1);
        assert_eq!(verifiers_for(8), 4);
        assert_eq!(verifiers_for(64), 32);
    }

    #[test]
    fn a_name_is_delayed_only_after_its_free_failures_then_doubling_up_to_a_cap() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(l.check("alice", t0), Ok(()));
            assert_eq!(l.failed("alice", t0), None);
        }
        assert_eq!(l.failed("alice", t0), Some(FIRST_DELAY));
        assert_eq!(l.check("alice", t0), Err(FIRST_DELAY));
        assert_eq!(l.check("bob", t0), Ok(()), "other names are not slowed");
        let t1 = t0 + FIRST_DELAY;
        assert_eq!(l.check("alice", t1), Ok(()));
        assert_eq!(l.failed("alice", t1), Some(FIRST_DELAY * 2));
        let mut t = t1;
        for _ in 0..10 {
            t += MAX_DELAY;
            l.failed("alice", t);
        }
        assert_eq!(l.check("alice", t), Err(MAX_DELAY));
    }

    #[test]
    fn a_success_or_an_hour_of_quiet_starts_a_name_afresh() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..=FREE_FAILURES {
            l.failed("alice", t0);
        }
        assert!(l.check("alice", t0).is_err());
        l.succeeded("alice");
        assert_eq!(l.check("alice", t0), Ok(()));
        for _ in 0..FREE_FAILURES {
            l.failed("alice", t0);
        }
        let later = t0 + FORGET_AFTER;
        assert_eq!(
            l.failed("alice", later),
            None,
            "the old failures were forgotten"
        );
    }

    #[test]
    fn the_names_remembered_are_bounded_whatever_is_posted() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for n in 0..MAX_NAMES + 50 {
            l.failed(&format!("guess{n}"), t0 + Duration::from_millis(n as u64));
        }
        assert!(l.names().len() <= MAX_NAMES);
        assert!(l.names().contains_key("guess10049"), "the newest is kept");
        let long = "x".repeat(10_000);
        l.failed(&long, t0);
        assert!(l.names().keys().all(|k| k.len() <= MAX_NAME_BYTES + 1));
        assert_eq!(key("ab"), "ab");
        assert_eq!(
            key(&"密".repeat(40)).len(),
            63,
            "cut on a character boundary"
        );
    }

    #[test]
    fn the_login_form_token_is_the_browsers_when_well_formed() {
        let mut h = HeaderMap::new();
        let fresh = form_token(&h);
        assert_eq!(fresh.len(), 64);
        let mine = random_token();
        h.insert(
            header::COOKIE,
            format!("{LOGIN_COOKIE}={mine}").parse().unwrap(),
        );
        assert_eq!(form_token(&h), mine);
        h.insert(header::COOKIE, "aiops_login=<script>".parse().unwrap());
        assert_ne!(form_token(&h), "<script>");
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::ZERO), 1);
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    fn console() -> std::sync::Arc<Console> {
        Console::from_settings(&crate::config::Settings::default())
            .expect("the console is on by default")
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_login_page_renders_in_both_languages_with_its_error_in_words() {
        let c = console();
        let h = HeaderMap::new();
        let r = login_page(
            &c,
            &h,
            Lang::En,
            "/ui/inbox",
            "alice",
            Some(Refusal::Throttled(Duration::from_millis(29_001))),
        )
        .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "30");
        let html = body(r).await;
        assert!(
            html.contains("Too many failed sign-ins. Try again in this many seconds: 30</p>"),
            "{html}"
        );
        assert!(html.contains("value=\"alice\""), "{html}");
        assert!(
            !html.contains("id=\"sign-out\""),
            "no header controls for a visitor"
        );
        let r = login_page(&c, &h, Lang::ZhTw, "/ui/alerts", "", None).unwrap();
        let html = body(r).await;
        assert!(
            html.contains("<html lang=\"zh-TW\">") && html.contains("登入 aiops 主控台"),
            "{html}"
        );
        assert!(!html.contains("login-error"));
    }
}
