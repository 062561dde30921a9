//! The JSON API as its clients use it: bearer tokens (minted with the daemon's own key type, or
//! issued by `aiops token issue` as an operator does) and calls answering (status, JSON body).

use std::collections::HashMap;

use aiops::auth::{Claims, Key, Role};
use aiops::config::Secret;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use super::app::TestApp;
use super::process::run_cli;

/// A token signed with `secret` for `role` in `apps`, subject `<role>-user`, valid 10 minutes.
pub fn token(secret: &str, role: Role, apps: &[&str]) -> String {
    let now = chrono::Utc::now().timestamp();
    Key::new(Secret::new(secret))
        .unwrap()
        .issue(&Claims {
            sub: format!("{}-user", role.as_str()),
            role,
            apps: apps.iter().map(|a| a.to_string()).collect(),
            exp: now + 600,
            iat: now,
            nbf: None,
        })
        .unwrap()
}

/// Mints a token the way an operator does: `aiops token issue` in the daemon's directory with
/// `AIOPS_JWT_SECRET=secret`, the token alone on the last line. `apps` is comma-separated; empty
/// for none (an admin).
pub fn issue(app: &TestApp, secret: &str, sub: &str, apps: &str, role: &str) -> String {
    let env = HashMap::from([("AIOPS_JWT_SECRET", secret.to_string())]);
    let mut args = vec![
        "token", "issue", "--sub", sub, "--role", role, "--ttl", "1h",
    ];
    if !apps.is_empty() {
        args.extend(["--apps", apps]);
    }
    let (status, out, err) = run_cli(app.dir.path(), &args, &env);
    assert!(status.success(), "{out}{err}");
    out.lines().last().unwrap().trim().to_string()
}

impl TestApp {
    /// Sends `req` with `token` as bearer; the status and the JSON body (`Null` when the body
    /// is not JSON).
    pub async fn api_send(&self, req: RequestBuilder, token: &str) -> (StatusCode, Value) {
        let r = req.bearer_auth(token).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` with `token`.
    pub async fn api_get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.api_send(self.client.get(self.url(path)), token).await
    }

    /// `POST path` with `token` and a JSON body.
    pub async fn api_post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.api_send(self.client.post(self.url(path)).json(&body), token)
            .await
    }

    /// `POST /api/apps` with an app spec written in YAML, as an editor registers an app.
    pub async fn api_register_app(&self, token: &str, spec: String) -> (StatusCode, Value) {
        let req = self
            .client
            .post(self.url("/api/apps"))
            .header("content-type", "application/yaml")
            .body(spec);
        self.api_send(req, token).await
    }
}
