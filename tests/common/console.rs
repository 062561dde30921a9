//! The web console as a browser without JavaScript uses it: a session cookie, pages as HTML,
//! forms posted urlencoded with the session's CSRF token.
//!
//! [`ConsoleClient::direct`] puts a user and a session straight into the daemon's store, for
//! tests about pages; tests about signing in go through `/ui/login` instead.

use aiops::auth::Role;
use aiops::store;
use aiops::ui::session::{SESSION_COOKIE, random_token, token_hash};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::app::TestApp;

/// A signed-in browser.
pub struct ConsoleClient {
    /// The daemon's base URL (`http://127.0.0.1:port`).
    pub base: String,
    /// The session token (the cookie's value).
    pub token: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// A client that does not follow redirects, so tests see them.
    pub http: reqwest::Client,
}

/// A page as answered: status, headers and body.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` header of a redirect.
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }
}

/// A client that does not follow redirects.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl ConsoleClient {
    /// Adds user `name` (role, apps; the password hash is a placeholder nobody can sign in
    /// with) and a session of theirs to `app`'s store, valid for an hour.
    pub async fn direct(app: &TestApp, name: &str, role: Role, apps: &[&str]) -> ConsoleClient {
        let s = app.store().await;
        let now = store::now_ms();
        let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
        let token = random_token();
        let csrf = random_token();
        let mut tx = s.begin_write().await.unwrap();
        tx.put_console_user(name, "!test-only, no password", role, &apps, now)
            .await
            .unwrap();
        tx.insert_console_session(&token_hash(&token), name, &csrf, now, now + 3_600_000)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ConsoleClient {
            base: app.url(""),
            token,
            csrf,
            http: no_redirects(),
        }
    }

    fn cookie(&self) -> String {
        format!("{SESSION_COOKIE}={}", self.token)
    }

    async fn page(r: reqwest::Response) -> Page {
        Page {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    /// `GET path` with the session.
    pub async fn get(&self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie())
            .send()
            .await
            .unwrap();
        Self::page(r).await
    }

    /// `POST path` with the session, the form `fields` and the session's CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &self.csrf));
        self.post_raw(path, &all).await
    }

    /// `POST path` with the session and exactly `fields` (no CSRF token unless given).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Self::page(r).await
    }
}
