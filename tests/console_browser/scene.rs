//! The daemon every browser test looks at: app `prod` with a repair that ran (rule
//! `restart-api`, auto), a repair waiting for approval (rule `restart-web`, approvers
//! `console:erin`) and an alert no rule matched; app `a` with an alert of its own; app `prod`
//! registered from a spec. Everything arrives as Alertmanager sends it, through the webhook.

use std::io::Write;
use std::process::{Command, Stdio};

use aiops::auth::Role;
use aiops::store::{JobState, ListFilter};

use crate::common::console::ConsoleClient;
use crate::common::{Db, Spawn, TestApp, minutes_ago, payload, repo};

/// The key of the scene's API tokens (app registration).
const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-browser";

/// The rules: one repair runs at once, one waits for erin's approval.
const RULES: &str = r#"
rules:
  - name: restart-api
    matchers: ['auto_repair="restart"', 'app="api"']
    playbook: restart
    params: {rollout_timeout: 1m}
    cooldown: 10m
  - name: restart-web
    matchers: ['auto_repair="restart"', 'app="web"']
    playbook: restart
    params: {rollout_timeout: 1m}
    mode: approve
    approval: {expires: 1h, approvers: ["console:erin"]}
"#;

/// The scene and who looks at it.
pub struct Scene {
    pub app: TestApp,
    /// `ada`, admin.
    pub admin: ConsoleClient,
    /// `erin`, editor of `prod`, on `restart-web`'s allow-list.
    pub editor: ConsoleClient,
    /// `vic`, viewer of `prod`.
    pub viewer: ConsoleClient,
    /// `bob`, editor of app `a` only.
    pub other: ConsoleClient,
    /// The repair that ran (succeeded).
    pub done_job: i64,
    /// The repair waiting for approval.
    pub waiting_job: i64,
    /// `HighLatency` in `prod`: no rule matched it.
    pub quiet_alert: i64,
    /// `DiskAlmostFull` in app `a`.
    pub other_alert: i64,
}

impl Scene {
    pub async fn new() -> Scene {
        let app = TestApp::spawn_app(
            Spawn::new(Db::Sqlite)
                .rules(RULES)
                .env("AIOPS_JWT_SECRET", JWT_SECRET)
                .env(
                    "AIOPS_DEPLOY_WEBHOOK_URL",
                    "https://aiops.example.net/webhook/alertmanager",
                ),
        )
        .await;
        let since = minutes_ago(12);
        for labels in [
            &[
                ("alertname", "KubePodCrashLooping"),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "api"),
                ("severity", "critical"),
            ][..],
            &[
                ("alertname", "KubePodCrashLooping"),
                ("auto_repair", "restart"),
                ("namespace", "prod"),
                ("app", "web"),
                ("severity", "critical"),
            ],
            &[
                ("alertname", "HighLatency"),
                ("namespace", "prod"),
                ("app", "web"),
                ("severity", "warning"),
            ],
            &[
                ("alertname", "DiskAlmostFull"),
                ("namespace", "a"),
                ("app", "one"),
                ("severity", "warning"),
            ],
        ] {
            let r = app
                .post_webhook(payload(&[(labels, "firing")], &since))
                .await;
            assert!(r.status().is_success(), "{:?}", r.status());
        }
        let jobs = app
            .wait_for_jobs("one repair done, one waiting for approval", |j| {
                j.len() == 2
                    && j.iter().any(|j| j.state == JobState::Succeeded)
                    && j.iter().any(|j| j.state == JobState::AwaitingApproval)
            })
            .await;
        let job = |s: JobState| jobs.iter().find(|j| j.state == s).unwrap().id;
        let (done_job, waiting_job) = (job(JobState::Succeeded), job(JobState::AwaitingApproval));
        let quiet_alert = alert_id(&app, "HighLatency").await;
        let other_alert = alert_id(&app, "DiskAlmostFull").await;
        register_app(&app, "prod").await;
        Scene {
            admin: ConsoleClient::direct(&app, "ada", Role::Admin, &[]).await,
            editor: ConsoleClient::direct(&app, "erin", Role::Editor, &["prod"]).await,
            viewer: ConsoleClient::direct(&app, "vic", Role::Viewer, &["prod"]).await,
            other: ConsoleClient::direct(&app, "bob", Role::Editor, &["a"]).await,
            app,
            done_job,
            waiting_job,
            quiet_alert,
            other_alert,
        }
    }

    /// `path` on the daemon.
    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// How many times job `id` started running.
    pub async fn runs(&self, id: i64) -> usize {
        let events = self.app.store().await.job_events(id).await.unwrap();
        events.iter().filter(|e| e.to == "running").count()
    }

    /// Adds a console user the way an operator does: `aiops user add NAME --role ROLE --apps …`
    /// with the password on standard input.
    ///
    /// The command runs on a blocking thread while this test's runtime keeps serving the
    /// in-process daemon: blocking the runtime here could leave a daemon write half-done,
    /// holding SQLite's lock until the command gave up with "database is locked".
    pub async fn add_user(&self, name: &str, role: &str, apps: &str, password: &str) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiops"));
        cmd.args(["user", "add", name, "--role", role, "--apps", apps])
            .current_dir(self.app.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AIOPS_DATABASE_URL", &self.app.db.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let password = password.to_string();
        let out = tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().unwrap();
            writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "aiops user add: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The id of the one alert named `name`.
async fn alert_id(app: &TestApp, name: &str) -> i64 {
    let found = app
        .store()
        .await
        .list_alerts(&ListFilter {
            subject: Some(name.into()),
            limit: 10,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].id
}

/// Registers app `name` in the namespace of the same name (where the scene's alerts are) from
/// the golden Flask spec through `/api/apps`, as an editor does.
async fn register_app(app: &TestApp, name: &str) {
    let spec = std::fs::read_to_string(repo().join("tests/golden/deploy/flask-basic.app.yaml"))
        .unwrap()
        .replace("name: shop", &format!("name: {name}\nnamespace: {name}"));
    let token = crate::common::api::token(JWT_SECRET, Role::Editor, &[name]);
    let (status, body) = app.api_register_app(&token, spec).await;
    assert_eq!(status, 201, "{body}");
}

impl Drop for Scene {
    /// A failed browser test shows the page it saw; the daemon's own log (why a page failed)
    /// is printed with it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.app.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("the daemon's last log lines:");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
