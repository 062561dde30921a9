//! The web console's frame, on a real daemon: signing in is required, the language switcher,
//! the security headers on every answer, the stylesheet and script served from the binary,
//! and `ui.enabled: false`. (Each page group has its own test file, `tests/console_*.rs`; the
//! browser tests are in `tests/console_browser.rs`.)

use crate::common;

use aiops::auth::Role;
use common::console::{ConsoleClient, no_redirects};
use common::{Db, Spawn, TestApp};
use reqwest::StatusCode;

#[tokio::test]
async fn a_visitor_who_is_not_signed_in_is_sent_to_the_login_page_and_back() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let http = no_redirects();
    let r = http
        .get(app.url("/ui/repairs?state=failed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/ui/login?next=%2Fui%2Frepairs%3Fstate%3Dfailed"
    );
    // A forged or expired cookie is the same as none.
    let r = http
        .get(app.url("/ui/alerts"))
        .header("cookie", "aiops_session=0123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_console_answer_forbids_framing_foreign_scripts_and_caching() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let r = no_redirects()
        .get(app.url("/ui/alerts"))
        .send()
        .await
        .unwrap();
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
}

#[tokio::test]
async fn the_stylesheet_and_script_come_from_the_binary() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    for (path, kind) in [
        ("/ui/static/console.css", "text/css"),
        ("/ui/static/console.js", "text/javascript"),
    ] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(!r.text().await.unwrap().is_empty(), "{path}");
    }
}

#[tokio::test]
async fn the_language_switcher_remembers_the_choice_and_never_leaves_the_console() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let http = no_redirects();
    let r = http
        .get(app.url("/ui/lang/zh-TW?next=/ui/repairs/4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/repairs/4");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("aiops_lang=zh-TW;"), "{cookie}");
    let r = http
        .get(app.url("/ui/lang/en?next=https://evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/alerts");
    let r = http.get(app.url("/ui/lang/fr")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite)).await;
    let c = ConsoleClient::direct(&app, "alice", Role::Admin, &[]).await;
    let p = c.post_raw("/ui/logout", &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    let p = c.post_raw("/ui/logout", &[("csrf", "0000")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    // Still signed in: the refused sign-out did nothing.
    let s = app.store().await;
    assert!(
        s.console_session(
            &aiops::ui::session::token_hash(&c.token),
            aiops::store::now_ms()
        )
        .await
        .unwrap()
        .is_some()
    );
}

#[tokio::test]
async fn with_the_console_off_its_paths_are_not_there() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).env("AIOPS_UI_ENABLED", "false")).await;
    let r = no_redirects()
        .get(app.url("/ui/alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
