//! Signing in to the web console, as a browser and an operator do it: users added with the
//! `aiops user` command (password on stdin), `/ui/login` and `/ui/logout` on a real daemon,
//! the throttles on guessing, sessions that end when a password changes; and the store's
//! console users and sessions on both backends.

use crate::both_backends;
use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use aiops::auth::Role;
use aiops::store::{self, Store};
use aiops::ui::session::token_hash;
use common::console::no_redirects;
use common::{Db, Spawn, TestApp, TestDb};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

/// Runs `aiops ARGS` against the daemon's store with `stdin` as its input. Off the test's
/// runtime: the daemon runs on it, and a write transaction of its must not wait on this
/// process (the CLI would then find the SQLite file locked).
async fn aiops_cli(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String, String) {
    let dir = app.dir.path().to_path_buf();
    let url = app.db.url.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aiops"))
            .args(&args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AIOPS_DATABASE_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `aiops user add NAME --role ROLE --apps APPS` with `password` on stdin; must succeed.
async fn add_user(app: &TestApp, name: &str, role: &str, apps: &str, password: &str) -> String {
    let (ok, out, err) = aiops_cli(
        app,
        &["user", "add", name, "--role", role, "--apps", apps],
        &format!("{password}\n"),
    )
    .await;
    assert!(ok, "user add failed: {out}{err}");
    out
}

/// A browser without JavaScript: keeps the cookies the daemon sets, follows no redirect.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

/// An answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }

    /// The `Set-Cookie` header that sets cookie `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The text of the element with id `id` (tags stripped), if the page has one.
    fn text_of(&self, id: &str) -> Option<String> {
        let start = self.body.find(&format!("id=\"{id}\""))?;
        let open_end = start + self.body[start..].find('>')? + 1;
        let close = open_end + self.body[open_end..].find("</")?;
        Some(self.body[open_end..close].trim().to_string())
    }
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.url(""),
            http: no_redirects(),
            cookies: HashMap::new(),
        }
    }

    /// A browser whose connections come from `ip` (any 127.x.y.z reaches the daemon on
    /// 127.0.0.1, so tests can play several client addresses).
    fn from_address(app: &TestApp, ip: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(ip.parse::<std::net::IpAddr>().unwrap())
                .build()
                .unwrap(),
            ..Browser::new(app)
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, r: reqwest::Response) -> Answer {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        Answer {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(r).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(r).await
    }

    /// Opens the login page (for its form token) and posts the form.
    async fn sign_in(&mut self, user: &str, password: &str, next: &str) -> Answer {
        let form = self
            .get(&format!("/ui/login?next={}", urlencode(next)))
            .await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let token = self.cookies["aiops_login"].clone();
        self.post(
            "/ui/login",
            &[
                ("csrf", &token),
                ("next", next),
                ("username", user),
                ("password", password),
            ],
        )
        .await
    }

    fn session(&self) -> Option<&str> {
        self.cookies.get("aiops_session").map(String::as_str)
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The live session of a session cookie, from the store.
async fn stored_session(app: &TestApp, token: &str) -> Option<store::ConsoleSession> {
    app.store()
        .await
        .console_session(&token_hash(token), store::now_ms())
        .await
        .unwrap()
}

async fn signing_in_starts_a_session_that_signing_out_ends(db: Db) {
    let app = TestApp::spawn_app(Spawn::new(db)).await;
    let out = add_user(&app, "alice", "editor", "shop,blog", PASSWORD).await;
    assert!(
        out.contains("added console user alice (role editor, apps blog,shop)"),
        "{out}"
    );

    let mut b = Browser::new(&app);
    let form = b
        .get("/ui/login?next=%2Fui%2Frepairs%3Fstate%3Dfailed")
        .await;
    assert_eq!(form.status, StatusCode::OK);
    for selector in [
        "id=\"login-form\"",
        "id=\"username\" name=\"username\"",
        "id=\"password\" name=\"password\" type=\"password\"",
        "id=\"sign-in\"",
        "<label for=\"username\">",
        "<label for=\"password\">",
        "id=\"page-auth\"",
        "name=\"next\" value=\"&#x2f;ui&#x2f;repairs?state=failed\"",
    ] {
        assert!(form.body.contains(selector), "{selector} in {}", form.body);
    }
    let login_cookie = form.set_cookie("aiops_login").unwrap();
    assert!(
        login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"),
        "{login_cookie}"
    );

    let r = b
        .sign_in("alice", PASSWORD, "/ui/repairs?state=failed")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/ui/repairs?state=failed");
    let cookie = r.set_cookie("aiops_session").unwrap();
    for attr in ["Path=/ui", "HttpOnly", "SameSite=Lax", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback: {cookie}"
    );
    let token = b.session().unwrap().to_string();
    let s = stored_session(&app, &token)
        .await
        .expect("the session is in the store");
    assert_eq!(s.user.name, "alice");
    assert_eq!(s.user.role, Role::Editor);
    assert_ne!(s.id_hash, token, "the store keeps only the token's hash");

    // Signed in, the login page sends the browser on.
    let again = b.get("/ui/login?next=/ui/inbox").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), "/ui/inbox");

    let out = b.post("/ui/logout", &[("csrf", &s.csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert_eq!(out.location(), "/ui/login");
    assert!(
        out.set_cookie("aiops_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(
        stored_session(&app, &token).await.is_none(),
        "ended in the store, not only in the browser"
    );
    // A copy of the old cookie is worth nothing now.
    let copy = no_redirects()
        .get(app.url("/ui/login"))
        .header("cookie", format!("aiops_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        copy.status(),
        StatusCode::OK,
        "the form again, not a redirect"
    );
    assert!(
        !app.log_text().contains(PASSWORD),
        "the password is never logged"
    );
}
both_backends!(signing_in_starts_a_session_that_signing_out_ends);

#[tokio::test]
async fn after_signing_in_the_browser_never_leaves_the_console() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    add_user(&app, "alice", "admin", "", PASSWORD).await;
    for next in ["https://evil.example/", "//evil.example/ui", "/api/alerts"] {
        let mut b = Browser::new(&app);
        let r = b.sign_in("alice", PASSWORD, next).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(r.location(), "/ui/alerts", "{next}");
    }
}

#[tokio::test]
async fn an_unknown_name_and_a_wrong_password_get_the_same_answer_in_similar_time() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    add_user(&app, "alice", "viewer", "shop", PASSWORD).await;
    let mut b = Browser::new(&app);
    let t = Instant::now();
    let wrong = b.sign_in("alice", "not the password", "/ui/alerts").await;
    let t_wrong = t.elapsed();
    let t = Instant::now();
    let unknown = b.sign_in("mallory", "not the password", "/ui/alerts").await;
    let t_unknown = t.elapsed();
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.set_cookie("aiops_session").is_none());
    }
    let said = wrong.text_of("login-error").unwrap();
    assert_eq!(said, "The user name or password is wrong.");
    assert_eq!(unknown.text_of("login-error").unwrap(), said);
    // The unknown name is verified against a dummy hash: without it, it would answer in a
    // small fraction of the time an argon2id verification takes.
    let (slow, fast) = (t_wrong.max(t_unknown), t_wrong.min(t_unknown));
    assert!(
        fast * 3 > slow,
        "wrong password {t_wrong:?}, unknown name {t_unknown:?}"
    );
    assert!(!app.log_text().contains("not the password"));
}

#[tokio::test]
async fn guessing_one_name_slows_the_guessers_even_for_the_right_password_but_never_locks_out_the_user()
 {
    // Without the per-address throttle, so that only the per-name limit is seen.
    let app =
        TestApp::spawn_app(Spawn::new(Db::Sqlite).env("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE", "0"))
            .await;
    add_user(&app, "alice", "viewer", "shop", PASSWORD).await;
    add_user(&app, "bob", "viewer", "shop", PASSWORD).await;
    let mut guesser = Browser::from_address(&app, "127.0.0.2");
    for n in 1..=5 {
        let r = guesser
            .sign_in("alice", &format!("guess {n}"), "/ui/alerts")
            .await;
        assert_eq!(r.status, StatusCode::OK, "failure {n} is free");
    }
    let r = guesser.sign_in("alice", "guess 6", "/ui/alerts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "30");
    assert!(
        r.text_of("login-error")
            .unwrap()
            .contains("Too many failed sign-ins"),
        "{}",
        r.body
    );
    let r = guesser.sign_in("alice", PASSWORD, "/ui/alerts").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password waits too"
    );
    assert!(guesser.session().is_none());

    // A second guesser: alice is under attack, so one failure is all it gets.
    let mut other = Browser::from_address(&app, "127.0.0.3");
    let r = other.sign_in("alice", "guess 7", "/ui/alerts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let r = other.sign_in("alice", PASSWORD, "/ui/alerts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // Alice, from an address that has not failed, still gets in.
    let mut alice = Browser::from_address(&app, "127.0.0.4");
    let r = alice.sign_in("alice", PASSWORD, "/ui/alerts").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(alice.session().is_some());
    let r = guesser.sign_in("bob", PASSWORD, "/ui/alerts").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "another name is not slowed"
    );
}

#[tokio::test]
async fn an_address_that_keeps_failing_is_refused_before_its_password_is_read() {
    let app = TestApp::spawn_app(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_HTTP_AUTH_FAILURE_BURST", "2")
            .env("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE", "1"),
    )
    .await;
    add_user(&app, "alice", "viewer", "shop", PASSWORD).await;
    let mut b = Browser::new(&app);
    for name in ["u1", "u2"] {
        let r = b.sign_in(name, "guess", "/ui/alerts").await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
    }
    let r = b.sign_in("u3", "guess", "/ui/alerts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = b.sign_in("alice", PASSWORD, "/ui/alerts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    assert!(b.session().is_none());
}

#[tokio::test]
async fn failed_sign_ins_from_an_address_never_throttle_the_webhook_from_it() {
    let token = "webhook-token-0123456789";
    let app = TestApp::spawn_app(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_WEBHOOK_TOKEN", token)
            .env("AIOPS_HTTP_AUTH_FAILURE_BURST", "2")
            .env("AIOPS_HTTP_AUTH_FAILURES_PER_MINUTE", "1"),
    )
    .await;
    let mut b = Browser::new(&app);
    for name in ["u1", "u2", "u3"] {
        b.sign_in(name, "mistyped", "/ui/alerts").await;
    }
    let r = b.sign_in("u4", "mistyped", "/ui/alerts").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the console's own budget is spent"
    );
    let alert = common::payload::payload(
        &[(&[("alertname", "Typos")], "firing")],
        "2026-11-30T00:00:00Z",
    );
    let r = app
        .client
        .post(app.url("/webhook/alertmanager"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(alert)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test]
async fn a_sign_in_form_not_from_this_browser_is_refused() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    add_user(&app, "alice", "viewer", "shop", PASSWORD).await;
    let mut b = Browser::new(&app);
    let fields = [
        ("csrf", "0".repeat(64)),
        ("username", "alice".into()),
        ("password", PASSWORD.into()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Another site's form: no aiops_login cookie (SameSite=Strict keeps it home).
    let r = b.post("/ui/login", &fields).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.text_of("login-error").unwrap(),
        "The sign-in form expired. Please sign in again."
    );
    assert!(b.session().is_none());
    // With this browser's cookie but another token: refused as well.
    b.get("/ui/login").await;
    let r = b.post("/ui/login", &fields).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(b.session().is_none());
}

#[tokio::test]
async fn the_login_page_speaks_the_browsers_language_and_cookies_are_secure_when_asked() {
    let app =
        TestApp::spawn_app(Spawn::new(Db::Sqlite).env("AIOPS_UI_SECURE_COOKIE", "always")).await;
    add_user(&app, "alice", "viewer", "shop", PASSWORD).await;
    let r = no_redirects()
        .get(app.url("/ui/login"))
        .header("accept-language", "zh-TW,zh;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("<html lang=\"zh-TW\">"), "{body}");
    assert!(
        body.contains("<label for=\"password\">密碼</label>"),
        "{body}"
    );
    let mut b = Browser::new(&app);
    let r = b.sign_in("alice", PASSWORD, "/ui/alerts").await;
    assert!(r.set_cookie("aiops_session").unwrap().ends_with("; Secure"));
}

#[tokio::test]
async fn changing_a_password_signs_the_user_out_everywhere_and_removing_them_too() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    add_user(&app, "alice", "editor", "shop", PASSWORD).await;
    let mut laptop = Browser::new(&app);
    laptop.sign_in("alice", PASSWORD, "/ui/alerts").await;
    let old = laptop.session().unwrap().to_string();

    let out = add_user(&app, "alice", "viewer", "shop,blog", "a new passphrase").await;
    assert!(
        out.contains(
            "updated console user alice (role viewer, apps blog,shop); 1 session(s) ended"
        ),
        "{out}"
    );
    assert!(stored_session(&app, &old).await.is_none());
    let mut phone = Browser::new(&app);
    let r = phone.sign_in("alice", PASSWORD, "/ui/alerts").await;
    assert_eq!(r.status, StatusCode::OK, "the old password no longer works");
    let r = phone
        .sign_in("alice", "a new passphrase", "/ui/alerts")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let s = stored_session(&app, phone.session().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (s.user.role, s.user.apps),
        (Role::Viewer, vec!["blog".to_string(), "shop".to_string()])
    );

    let (ok, out, _) = aiops_cli(&app, &["user", "list"], "").await;
    assert!(ok);
    assert!(
        out.contains("alice") && out.contains("viewer") && out.contains("blog,shop"),
        "{out}"
    );
    assert!(!out.contains("$argon2id$"), "never the hash: {out}");
    let (ok, out, _) = aiops_cli(&app, &["user", "remove", "alice"], "").await;
    assert!(ok, "{out}");
    assert!(
        stored_session(&app, phone.session().unwrap())
            .await
            .is_none()
    );
    let (ok, _, err) = aiops_cli(&app, &["user", "remove", "alice"], "").await;
    assert!(!ok);
    assert!(err.contains("no console user \"alice\""), "{err}");
}

#[tokio::test]
async fn a_user_is_added_only_with_a_sound_name_role_apps_and_password_from_stdin() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    for (args, stdin, says) in [
        (
            vec!["alice", "--role", "editor", "--apps", "shop"],
            "short\n",
            "too short",
        ),
        (
            vec!["alice", "--role", "editor"],
            "long enough\n",
            "needs --apps",
        ),
        (
            vec!["alice", "--role", "root", "--apps", "shop"],
            "long enough\n",
            "unknown role",
        ),
        (
            vec!["al ice", "--role", "admin"],
            "long enough\n",
            "invalid user name",
        ),
        (
            vec!["alice", "--role", "viewer", "--apps", "Shop_1"],
            "long enough\n",
            "not a namespace",
        ),
        (
            vec!["alice", "--role", "viewer", "--apps", "shop"],
            "one\ntwo lines\n",
            "one line",
        ),
    ] {
        let mut all = vec!["user", "add"];
        all.extend(args);
        let (ok, _, err) = aiops_cli(&app, &all, stdin).await;
        assert!(!ok, "{all:?}");
        assert!(err.contains(says), "{all:?}: {err}");
        assert!(
            !err.contains("long enough") && !err.contains("short\n"),
            "{err}"
        );
    }
    assert!(app.store().await.console_users().await.unwrap().is_empty());
    let mut help = Command::new(env!("CARGO_BIN_EXE_aiops"));
    let help = help.args(["user", "add", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("stdin"), "{help}");
    assert!(!help.contains("--password"), "no password argument: {help}");
}

/// The store's console users and sessions, on both backends.
async fn console_users_and_sessions_are_kept_as_the_console_needs_them(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::new(db, dir.path()).await;
    let s = Store::connect(&test_db.url, &store::Options::default())
        .await
        .unwrap();
    let apps = vec!["shop".to_string()];
    let mut tx = s.begin_write().await.unwrap();
    assert!(
        tx.put_console_user("bob", "$h1", Role::Editor, &apps, 1_000)
            .await
            .unwrap()
    );
    assert!(
        tx.put_console_user("alice", "$h1", Role::Viewer, &apps, 1_000)
            .await
            .unwrap()
    );
    assert!(
        !tx.put_console_user("bob", "$h2", Role::Admin, &[], 2_000)
            .await
            .unwrap(),
        "a second put changes the user"
    );
    tx.insert_console_session("s-live", "bob", "c1", 2_000, 10_000)
        .await
        .unwrap();
    tx.insert_console_session("s-old", "bob", "c2", 1_000, 3_000)
        .await
        .unwrap();
    tx.insert_console_session("s-alice", "alice", "c3", 2_000, 10_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let bob = s.console_user("bob").await.unwrap().unwrap();
    assert_eq!(
        (
            bob.password_hash.as_str(),
            bob.role,
            bob.apps.len(),
            bob.created_at,
            bob.updated_at
        ),
        ("$h2", Role::Admin, 0, 1_000, 2_000)
    );
    assert_eq!(
        s.console_user("Bob").await.unwrap(),
        None,
        "names are exact"
    );
    let names: Vec<String> = s
        .console_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let live = s.console_session("s-live", 5_000).await.unwrap().unwrap();
    assert_eq!(
        (live.csrf.as_str(), live.user.name.as_str(), live.expires_at),
        ("c1", "bob", 10_000)
    );
    assert_eq!(
        s.console_session("s-live", 10_000).await.unwrap(),
        None,
        "ended at its expiry"
    );
    assert_eq!(s.console_session("s-old", 5_000).await.unwrap(), None);
    assert_eq!(s.console_session("nope", 5_000).await.unwrap(), None);

    let mut tx = s.begin_write().await.unwrap();
    assert_eq!(tx.prune_console_sessions(5_000).await.unwrap(), 1);
    assert!(tx.end_console_session("s-live").await.unwrap());
    assert!(!tx.end_console_session("s-live").await.unwrap());
    tx.insert_console_session("s-2", "bob", "c4", 5_000, 10_000)
        .await
        .unwrap();
    tx.insert_console_session("s-3", "bob", "c5", 5_000, 10_000)
        .await
        .unwrap();
    assert_eq!(tx.end_console_sessions_of("bob").await.unwrap(), 2);
    assert!(tx.remove_console_user("alice").await.unwrap());
    assert!(!tx.remove_console_user("alice").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        s.console_session("s-alice", 5_000).await.unwrap(),
        None,
        "gone with its user"
    );
    assert_eq!(s.console_user("alice").await.unwrap(), None);
    // A name can be added again after removal (no session of the old one comes back).
    let mut tx = s.begin_write().await.unwrap();
    assert!(
        tx.put_console_user("alice", "$h3", Role::Viewer, &apps, 6_000)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert_eq!(s.console_session("s-alice", 6_000).await.unwrap(), None);
}
both_backends!(console_users_and_sessions_are_kept_as_the_console_needs_them);
