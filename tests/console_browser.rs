//! The web console in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, through `fantoccini`) against the daemon on 127.0.0.1, port 0. A person signs
//! in, reads the alert center, opens a repair's timeline, approves a waiting repair; a viewer
//! cannot approve; another app's alert is not there by URL; a form without the CSRF token is
//! refused; the language switches. Every page is photographed (PNG, to `$AIOPS_SCREENSHOTS` or
//! `target/console-screenshots/`) and checked for accessibility: labels, alt text, heading
//! order, text contrast of at least 4.5:1 from the computed styles, and keyboard focus.
//!
//! Without chromium and chromedriver the tests skip with a message, except in CI, where
//! `.ci/run` installs them and their absence fails. One browser runs at a time ([`ONE_BROWSER`]):
//! the machine has two cores.

mod a11y;
mod browser;
use crate::common;
mod scene;

use aiops::store::JobState;
use browser::{Browser, DESKTOP, PHONE, screenshot_dir};
use fantoccini::Locator;
use scene::Scene;
use tokio::sync::{Mutex, MutexGuard};

/// Browsers take turns: each is a handful of processes, and two cores are shared with the
/// daemon under test.
static ONE_BROWSER: Mutex<()> = Mutex::const_new(());

/// A browser for this test (holding the turn), or `None` when this machine has none (skipped).
async fn browser() -> Option<(MutexGuard<'static, ()>, Browser)> {
    let turn = ONE_BROWSER.lock().await;
    Some((turn, Browser::start().await?))
}

/// Whether `text` has any Han character (the zh-TW pages do; the English ones do not).
fn has_han(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[tokio::test]
async fn a_person_signs_in_and_sees_a_firing_alert_and_why_aiops_did_nothing_about_it() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    s.add_user("olivia", "editor", "prod", "correct horse battery staple")
        .await;

    // Not signed in: the console sends the browser to the login page, and back afterwards.
    b.open(&s.url("/ui/alerts")).await;
    b.find("#login-form").await;
    assert!(b.client.current_url().await.unwrap().path() == "/ui/login");

    // A wrong password is refused in words, and the form is there again.
    b.find("#username").await.send_keys("olivia").await.unwrap();
    b.find("#password").await.send_keys("not it").await.unwrap();
    b.find("#sign-in").await.click().await.unwrap();
    let error = b.text("#login-error").await;
    assert!(!error.trim().is_empty());
    assert!(!b.has("#user-name").await);

    b.find("#username").await.clear().await.unwrap();
    b.find("#username").await.send_keys("olivia").await.unwrap();
    b.find("#password").await.clear().await.unwrap();
    b.find("#password")
        .await
        .send_keys("correct horse battery staple")
        .await
        .unwrap();
    b.find("#sign-in").await.click().await.unwrap();

    // Signed in, on the page first asked for.
    assert_eq!(b.text("#user-name").await, "olivia");
    b.find("#page-alerts").await;
    assert_eq!(b.client.current_url().await.unwrap().path(), "/ui/alerts");

    // The firing alert no rule matched, and the reason in words.
    let row = format!("tr[data-alert-id=\"{}\"]", s.quiet_alert);
    let text = b.text(&row).await;
    assert!(text.contains("HighLatency"), "{text}");
    let did = b.text(&format!("{row} .did")).await.to_lowercase();
    assert!(did.contains("no rule matched"), "{did}");
    // The repair aiops ran is on the list too, with what it did.
    let rows = b.text("tbody#alert-rows").await;
    assert!(
        rows.contains("restart-api") || rows.contains("restart"),
        "{rows}"
    );
    // App a's alert is not olivia's to see.
    assert!(!rows.contains("DiskAlmostFull"), "{rows}");

    // Signing out ends the session: the console asks for a sign-in again.
    b.find("#sign-out").await.click().await.unwrap();
    b.find("#login-form").await;
    b.open(&s.url("/ui/alerts")).await;
    b.find("#login-form").await;
    b.close().await;
}

#[tokio::test]
async fn a_repair_opened_from_the_repairs_list_shows_its_timeline_and_playbook_steps() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    b.use_session(&s.admin.base, &s.admin.token).await;

    b.open(&s.url("/ui/repairs")).await;
    b.find("#page-repairs").await;
    let row = format!("tr[data-repair-id=\"{}\"]", s.done_job);
    b.find(&format!("{row} a[href=\"/ui/repairs/{}\"]", s.done_job))
        .await
        .click()
        .await
        .unwrap();

    b.find("#page-repair").await;
    assert_eq!(
        b.client.current_url().await.unwrap().path(),
        format!("/ui/repairs/{}", s.done_job)
    );
    let state = b.find("#repair-state").await;
    assert_eq!(
        state.attr("data-state").await.unwrap().as_deref(),
        Some("succeeded")
    );
    let steps = b
        .client
        .find_all(Locator::Css("ol#timeline > li.entry[data-kind=\"step\"]"))
        .await
        .unwrap();
    assert!(!steps.is_empty(), "no playbook step on the timeline");
    let mut words = String::new();
    for step in &steps {
        words.push_str(&step.text().await.unwrap());
    }
    assert!(words.contains("restart"), "{words}");
    // The alert it repaired is on the timeline, before the steps.
    let kinds: Vec<String> = b
        .eval(
            "return [...document.querySelectorAll('ol#timeline > li.entry')].map(e => e.dataset.kind);",
            vec![],
        )
        .await;
    let first_step = kinds.iter().position(|k| k == "step").unwrap();
    assert!(
        kinds[..first_step].iter().any(|k| k == "alert"),
        "{kinds:?}"
    );
    b.close().await;
}

#[tokio::test]
async fn an_editor_on_the_allow_list_approves_a_waiting_repair_and_it_runs_once() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    b.use_session(&s.editor.base, &s.editor.token).await;
    let id = s.waiting_job;

    b.open(&s.url("/ui/inbox")).await;
    b.find(&format!("tr[data-approval-job=\"{id}\"]")).await;
    b.find(&format!("#approve-{id}"))
        .await
        .click()
        .await
        .unwrap();

    // Post-redirect-get: back on the inbox with the outcome, the repair no longer waiting.
    let notice = b.text("#inbox-notice").await;
    assert!(!notice.trim().is_empty());
    assert_eq!(b.client.current_url().await.unwrap().path(), "/ui/inbox");
    assert!(!b.has(&format!("#approve-{id}")).await);

    s.app
        .wait_for_jobs("the approved repair done", |j| {
            j.iter()
                .any(|j| j.id == id && j.state == JobState::Succeeded)
        })
        .await;
    // Reloading the page the approval answered does not approve again.
    b.client.refresh().await.unwrap();
    b.find("#page-inbox").await;
    assert_eq!(s.runs(id).await, 1, "the approved repair ran once");
    let approvals = s.app.store().await.approvals(id).await.unwrap();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    b.close().await;
}

#[tokio::test]
async fn a_viewer_gets_no_approve_button_and_a_forged_approval_is_refused() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    b.use_session(&s.viewer.base, &s.viewer.token).await;
    let id = s.waiting_job;

    b.open(&s.url("/ui/inbox")).await;
    b.find("#page-inbox").await;
    assert!(!b.has(&format!("#approve-{id}")).await);
    assert!(!b.has(&format!("#reject-{id}")).await);

    // The viewer builds the form by hand, with the session's own CSRF token: refused anyway.
    submit_forged_form(&b, &format!("/ui/repairs/{id}/approve"), true).await;
    let title = b.text("h1").await;
    assert_eq!(title, "Not allowed");
    let job = s.app.store().await.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::AwaitingApproval);
    assert!(s.app.store().await.approvals(id).await.unwrap().is_empty());
    b.close().await;
}

#[tokio::test]
async fn a_user_of_one_app_finds_nothing_at_another_apps_alert_url() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    b.use_session(&s.other.base, &s.other.token).await;

    // bob (app a) sees app a's alert …
    b.open(&s.url(&format!("/ui/alerts/{}", s.other_alert)))
        .await;
    b.find("#page-alert").await;
    assert!(b.text("#page-alert").await.contains("DiskAlmostFull"));

    // … and at prod's alert's URL, the same page as for an alert that does not exist.
    b.open(&s.url(&format!("/ui/alerts/{}", s.quiet_alert)))
        .await;
    let shown = b.text("main").await;
    assert_eq!(b.text("h1").await, "Not found");
    assert!(!shown.contains("HighLatency"), "{shown}");
    assert!(!b.has("#page-alert").await);
    b.open(&s.url("/ui/alerts/999999")).await;
    assert_eq!(b.text("main").await, shown);

    // Nor is it on his list.
    b.open(&s.url("/ui/alerts")).await;
    b.find("#page-alerts").await;
    assert!(
        !b.has(&format!("tr[data-alert-id=\"{}\"]", s.quiet_alert))
            .await
    );
    b.close().await;
}

#[tokio::test]
async fn a_form_posted_without_the_csrf_token_is_refused_and_changes_nothing() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    b.use_session(&s.editor.base, &s.editor.token).await;
    let id = s.waiting_job;

    b.open(&s.url("/ui/inbox")).await;
    b.find(&format!("#approve-{id}")).await;
    submit_forged_form(&b, &format!("/ui/repairs/{id}/approve"), false).await;
    assert_eq!(b.text("h1").await, "The form expired");

    let job = s.app.store().await.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::AwaitingApproval);
    assert!(s.app.store().await.approvals(id).await.unwrap().is_empty());
    // Still signed in: the refusal did not end the session either.
    b.open(&s.url("/ui/inbox")).await;
    assert_eq!(b.text("#user-name").await, "erin");
    b.close().await;
}

#[tokio::test]
async fn switching_to_traditional_chinese_translates_the_console_and_is_remembered() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    b.use_session(&s.admin.base, &s.admin.token).await;

    b.open(&s.url("/ui/repairs")).await;
    b.find("#page-repairs").await;
    assert_eq!(html_lang(&b).await, "en");
    let english = b.text("#nav-repairs").await;
    assert!(!has_han(&english), "{english}");

    // The switcher keeps the page.
    b.find("#lang-zh-TW").await.click().await.unwrap();
    b.find("#page-repairs").await;
    assert_eq!(html_lang(&b).await, "zh-TW");
    assert_eq!(b.client.current_url().await.unwrap().path(), "/ui/repairs");
    let chinese = b.text("#nav-repairs").await;
    assert!(has_han(&chinese), "{chinese}");
    let heading = b.text("h1").await;
    assert!(has_han(&heading), "{heading}");

    // Remembered on the next page, until switched back.
    b.open(&s.url("/ui/alerts")).await;
    b.find("#page-alerts").await;
    assert_eq!(html_lang(&b).await, "zh-TW");
    b.find("#lang-en").await.click().await.unwrap();
    b.find("#page-alerts").await;
    assert_eq!(html_lang(&b).await, "en");
    assert_eq!(b.text("#nav-repairs").await, english);
    b.close().await;
}

#[tokio::test]
async fn every_page_passes_the_accessibility_checks_and_is_photographed() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    let dir = screenshot_dir();

    // The login page, before any session.
    b.open(&s.url("/ui/login")).await;
    b.find("#login-form").await;
    check_page(&b, "login").await;
    b.screenshot(&dir, "login").await;

    b.use_session(&s.admin.base, &s.admin.token).await;
    let pages = [
        ("alerts", "/ui/alerts".to_string(), "#page-alerts"),
        (
            "alert",
            format!("/ui/alerts/{}", s.quiet_alert),
            "#page-alert",
        ),
        ("repairs", "/ui/repairs".into(), "#page-repairs"),
        (
            "repair-timeline",
            format!("/ui/repairs/{}", s.done_job),
            "#page-repair",
        ),
        ("rules", "/ui/rules".into(), "#page-rules"),
        ("rule", "/ui/rules/restart-web".into(), "#page-rule"),
        ("inbox", "/ui/inbox".into(), "#page-inbox"),
        ("apps", "/ui/apps".into(), "#page-apps"),
        ("app", "/ui/apps/prod".into(), "#page-app"),
    ];
    for (name, path, root) in &pages {
        b.open(&s.url(path)).await;
        b.find(root).await;
        check_page(&b, name).await;
        b.screenshot(&dir, name).await;
    }

    // The alert center in Traditional Chinese …
    b.open(&s.url("/ui/lang/zh-TW?next=/ui/alerts")).await;
    b.find("#page-alerts").await;
    assert_eq!(html_lang(&b).await, "zh-TW");
    check_page(&b, "alerts (zh-TW)").await;
    b.screenshot(&dir, "alerts-zh-TW").await;

    // … and on a phone: nothing wider than the screen, the same checks.
    b.open(&s.url("/ui/lang/en?next=/ui/alerts")).await;
    b.resize(PHONE).await;
    b.find("#page-alerts").await;
    let (scroll, inner): (f64, f64) = b
        .eval(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    assert!(
        scroll <= inner,
        "the phone page scrolls sideways: {scroll} > {inner}"
    );
    check_page(&b, "alerts (phone)").await;
    b.screenshot(&dir, "alerts-phone").await;
    b.resize(DESKTOP).await;

    for name in [
        "login",
        "alerts",
        "repair-timeline",
        "alerts-zh-TW",
        "alerts-phone",
    ] {
        assert!(dir.join(format!("{name}.png")).is_file(), "{name}");
    }
    eprintln!("screenshots: {}", dir.display());
    b.close().await;
}

#[tokio::test]
async fn the_keyboard_reaches_the_navigation_the_filters_and_the_buttons_with_a_visible_focus() {
    let Some((_turn, b)) = browser().await else {
        return;
    };
    let s = Scene::new().await;
    b.use_session(&s.editor.base, &s.editor.token).await;

    b.open(&s.url("/ui/alerts")).await;
    b.find("#alert-filters").await;
    let seen = a11y::tab_through(&b, &["nav", "#alert-filters"], 40).await;
    let invisible: Vec<_> = seen.iter().filter(|f| !f.visible_focus).collect();
    assert!(invisible.is_empty(), "focus not visible on {invisible:#?}");
    assert!(seen.iter().any(|f| f.id == "nav-alerts"), "{seen:#?}");
    assert!(
        seen.iter().any(|f| f.inside.iter().any(|s| s == "#alert-filters")
            && !f.tag.starts_with("button")),
        "no filter reached: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|f| f.inside.iter().any(|s| s == "#alert-filters") && f.tag.starts_with("button")),
        "the filter button not reached: {seen:#?}"
    );

    // The inbox's Approve button, from the keyboard alone: focus it by Tab, press Enter.
    b.open(&s.url("/ui/inbox")).await;
    let approve = format!("approve-{}", s.waiting_job);
    b.find(&format!("#{approve}")).await;
    let seen = a11y::tab_through(&b, &["main"], 60).await;
    let reached = seen.iter().find(|f| f.id == approve);
    assert!(
        reached.is_some_and(|f| f.visible_focus),
        "{approve} not reached with a visible focus: {seen:#?}"
    );
    b.close().await;
}

/// Runs the accessibility checks on the page shown; fails naming every problem.
async fn check_page(b: &Browser, name: &str) {
    let report = a11y::check(b).await;
    assert!(report.texts_checked > 0, "{name}: no text measured");
    let problems = report.problems();
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
}

/// The `lang` of the page's `<html>`.
async fn html_lang(b: &Browser) -> String {
    b.eval("return document.documentElement.lang;", vec![])
        .await
}

/// Submits a form the page never offered: `action`, POST, with the session's CSRF token (read
/// from the sign-out form) when `with_token`. Waits for the answer's page.
async fn submit_forged_form(b: &Browser, action: &str, with_token: bool) {
    let script = r#"
const f = document.createElement("form");
f.method = "post";
f.action = arguments[0];
if (arguments[1]) {
  const t = document.createElement("input");
  t.type = "hidden";
  t.name = "csrf";
  t.value = document.querySelector('form[action="/ui/logout"] input[name="csrf"]').value;
  f.appendChild(t);
}
document.body.appendChild(f);
document.body.dataset.before = "forged";
f.submit();
return null;
"#;
    b.eval::<serde_json::Value>(script, vec![action.into(), with_token.into()])
        .await;
    // The old page is gone once the answer is shown.
    common::wait::until(
        "the answer to the forged form",
        common::wait::DEFAULT_WITHIN,
        async || {
            let v: serde_json::Value = b
                .client
                .execute(
                    "return document.body ? (document.body.dataset.before || 'new') : null;",
                    vec![],
                )
                .await
                .ok()?;
            (v == "new").then_some(())
        },
        String::new,
    )
    .await;
}
