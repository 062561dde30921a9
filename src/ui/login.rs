//! Signing in (`/ui/login`) and out (`/ui/logout`), and the limit on failed sign-ins.
//!
//! - **Who may sign in**: console users (`aiops user add`), checked against their argon2id
//!   hash ([`super::password`]) off the async runtime.
//! - **No user enumeration**: an unknown name, a wrong password and an unusable stored hash get
//!   the same page and take the same time (an unknown name is verified against a dummy hash).
//! - **Guessing is slow twice over**: every failure spends the client address's budget
//!   (`http.auth_failures_per_minute`, the same rates as the webhook and the API but a budget of
//!   its own, so mistyped passwords never throttle Alertmanager), and the
//!   [`Limiter`] delays a name from an address that keeps failing for it, and, once a name is
//!   under attack, from every address that has failed for it. An address with a clean record
//!   still gets in with the right password, so nobody can lock a user out from elsewhere.
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
    if let Err(wait) = c.logins.check(&f.username, ip, now) {
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
            let by_name = c.logins.failed(&f.username, ip, now);
            let by_address = ip.and_then(|ip| st.sign_in_failure(ip));
            return match by_name.into_iter().chain(by_address).max() {
                Some(wait) => again(Refusal::Throttled(wait)),
                None => again(Refusal::Wrong),
            };
        }
    };
    c.logins.succeeded(&f.username, ip);
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

/// Failed sign-ins of one user name, or of one name from one address.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when sign-ins are refused.
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

    /// Whether these failures still count at `now`.
    fn recent(&self, now: Instant) -> bool {
        now.duration_since(self.last) < FORGET_AFTER
    }

    /// `Some(wait)` while these failures refuse sign-ins at `now`.
    fn wait(&self, now: Instant) -> Option<Duration> {
        let until = self.until();
        (until > now && self.recent(now)).then(|| until - now)
    }

    /// Counts one more failure at `now` (old ones forgotten first).
    fn add(&mut self, now: Instant) {
        if !self.recent(now) {
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.last = now;
    }
}

/// Whose failures: a user name, and the client address when there is one.
type Pair = (String, Option<IpAddr>);

/// Failed sign-ins, counted twice:
///
/// - **per (name, address)**: after [`FREE_FAILURES`], each further failure delays the next
///   attempt to that name *from that address*, from 30 s doubling up to 15 min;
/// - **per name, whatever the address**: once a name has more than [`FREE_FAILURES`] recent
///   failures it is under attack, and then any address that has failed for it even once waits
///   the name's delay. An address with a clean record for the name is still let through, so
///   someone failing from elsewhere cannot lock the user out, while a spread-out guesser gets
///   one try per address instead of five.
///
/// A success clears only that address's count; an hour without failure starts afresh.
///
/// Hand-written rather than `governor` (which the per-address throttle uses): a sign-in that
/// succeeds must clear its pair's count, and governor's keyed limiter cannot reset one key.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    inner: Mutex<Counts>,
}

/// The two tables of [`Limiter`].
#[derive(Debug, Default)]
struct Counts {
    names: HashMap<String, Failures>,
    pairs: HashMap<Pair, Failures>,
}

impl Limiter {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while sign-ins to `name` from `ip` are refused.
    pub(crate) fn check(
        &self,
        name: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        let counts = self.counts();
        match counts.wait(name, ip, now) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Records a failed sign-in to `name` from `ip`; `Some(wait)` when further ones from `ip`
    /// are now refused.
    pub(crate) fn failed(&self, name: &str, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let mut counts = self.counts();
        let k = key(name);
        let pair = (k.to_string(), ip);
        if !counts.names.contains_key(k) && counts.names.len() >= MAX_NAMES {
            make_room(&mut counts.names, now);
        }
        if !counts.pairs.contains_key(&pair) && counts.pairs.len() >= MAX_NAMES {
            make_room(&mut counts.pairs, now);
        }
        let fresh = Failures {
            count: 0,
            last: now,
        };
        counts.names.entry(k.to_string()).or_insert(fresh).add(now);
        counts.pairs.entry(pair).or_insert(fresh).add(now);
        counts.wait(name, ip, now)
    }

    /// A successful sign-in from `ip`: that address starts afresh for `name`. The name's own
    /// count stays, so a user signing in during an attack does not reset the attacker's delay.
    pub(crate) fn succeeded(&self, name: &str, ip: Option<IpAddr>) {
        self.counts().pairs.remove(&(key(name).to_string(), ip));
    }
}

impl Counts {
    /// How long `ip` must wait before trying `name` again, if at all.
    fn wait(&self, name: &str, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let k = key(name);
        let pair = self
            .pairs
            .get(&(k.to_string(), ip))
            .filter(|f| f.recent(now));
        let own = pair.and_then(|f| f.wait(now));
        // Under attack, a name is closed to every address with a failure of its own.
        let shared = pair
            .and_then(|_| self.names.get(k))
            .and_then(|f| f.wait(now));
        own.into_iter().chain(shared).max()
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

/// Makes room in a full table: forgets entries whose failures are old; then, if still full, the
/// quiet entry idle longest (one that refuses nothing), and only if every entry is refusing,
/// the one idle longest. So spraying fresh names, one failure each, cannot push out the count
/// of a name under attack.
fn make_room<K: Clone + Eq + std::hash::Hash>(table: &mut HashMap<K, Failures>, now: Instant) {
    table.retain(|_, f| f.recent(now) && (f.count > 0));
    if table.len() < MAX_NAMES {
        return;
    }
    let victim = table
        .iter()
        .min_by_key(|(_, f)| (f.wait(now).is_some(), f.last))
        .map(|(k, _)| k.clone());
    if let Some(k) = victim {
        table.remove(&k);
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

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    fn at(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, n)))
    }

    #[test]
    fn an_address_is_delayed_only_after_its_free_failures_then_doubling_up_to_a_cap() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(l.check("alice", AWAY, t0), Ok(()));
            assert_eq!(l.failed("alice", AWAY, t0), None);
        }
        assert_eq!(l.failed("alice", AWAY, t0), Some(FIRST_DELAY));
        assert_eq!(l.check("alice", AWAY, t0), Err(FIRST_DELAY));
        assert_eq!(
            l.check("bob", AWAY, t0),
            Ok(()),
            "other names are not slowed"
        );
        let t1 = t0 + FIRST_DELAY;
        assert_eq!(l.check("alice", AWAY, t1), Ok(()));
        assert_eq!(l.failed("alice", AWAY, t1), Some(FIRST_DELAY * 2));
        let mut t = t1;
        for _ in 0..10 {
            t += MAX_DELAY;
            l.failed("alice", AWAY, t);
        }
        assert_eq!(l.check("alice", AWAY, t), Err(MAX_DELAY));
    }

    #[test]
    fn failures_from_elsewhere_never_lock_out_an_address_with_a_clean_record() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..20 {
            l.failed("alice", AWAY, t0);
        }
        assert!(l.check("alice", AWAY, t0).is_err());
        assert_eq!(l.check("alice", HOME, t0), Ok(()), "the user's own address");
    }

    #[test]
    fn a_name_under_attack_gives_each_address_one_try_instead_of_five() {
        let l = Limiter::default();
        let t0 = Instant::now();
        // Spread out: one failure from each of six addresses puts the name under attack.
        for n in 1..=FREE_FAILURES as u8 {
            assert_eq!(l.failed("alice", at(n), t0), None);
        }
        let sixth = l.failed("alice", at(6), t0);
        assert_eq!(sixth, Some(FIRST_DELAY), "the sixth address waits at once");
        assert_eq!(
            l.check("alice", at(1), t0),
            Err(FIRST_DELAY),
            "as do the others"
        );
        assert_eq!(
            l.check("alice", at(7), t0),
            Ok(()),
            "a new address gets its one try"
        );
        assert_eq!(l.failed("alice", at(7), t0), Some(FIRST_DELAY * 2));
        assert_eq!(
            l.check("bob", at(1), t0),
            Ok(()),
            "other names are not slowed"
        );
    }

    #[test]
    fn a_success_clears_its_address_but_not_the_attack_on_the_name() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for n in 1..=10 {
            l.failed("alice", at(n), t0);
        }
        l.failed("alice", HOME, t0);
        assert!(
            l.check("alice", HOME, t0).is_err(),
            "a typo during an attack waits"
        );
        l.succeeded("alice", HOME);
        assert_eq!(l.check("alice", HOME, t0), Ok(()));
        assert!(
            l.check("alice", at(1), t0).is_err(),
            "the guessers still wait"
        );
        assert!(
            l.failed("alice", HOME, t0).is_some(),
            "the name is still under attack"
        );
    }

    #[test]
    fn an_hour_of_quiet_starts_afresh() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            l.failed("alice", AWAY, t0);
        }
        let later = t0 + FORGET_AFTER;
        assert_eq!(
            l.failed("alice", AWAY, later),
            None,
            "the old failures were forgotten"
        );
    }

    #[test]
    fn spraying_names_cannot_push_out_the_count_of_a_name_under_attack() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..=FREE_FAILURES {
            l.failed("admin", AWAY, t0);
        }
        for n in 0..MAX_NAMES + 50 {
            l.failed(
                &format!("guess{n}"),
                AWAY,
                t0 + Duration::from_millis(n as u64 + 1),
            );
        }
        let now = t0 + Duration::from_secs(1);
        let counts = l.counts();
        assert!(counts.names.len() <= MAX_NAMES && counts.pairs.len() <= MAX_NAMES);
        assert!(
            counts.names.contains_key("guess10049"),
            "the newest is kept"
        );
        drop(counts);
        assert!(l.check("admin", AWAY, now).is_err(), "still refused");
    }

    #[test]
    fn the_names_remembered_are_bounded_in_length() {
        let l = Limiter::default();
        let long = "x".repeat(10_000);
        l.failed(&long, AWAY, Instant::now());
        assert!(
            l.counts()
                .names
                .keys()
                .all(|k| k.len() <= MAX_NAME_BYTES + 1)
        );
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
