//! The HTTP surface: the Alertmanager webhook, health, readiness, metrics, reload, the
//! JSON API under /api and the web console under /ui ([`crate::ui`]).
//!
//! Handlers only translate between HTTP and the pipeline; every decision lives below. Errors are
//! JSON bodies `{"error": "...", "field": "..."}` with the status Alertmanager needs: 4xx for what
//! a retry cannot fix, 503 for what a retry can.

pub mod api;
mod approve;
pub mod apps;
pub mod auth;
mod chat;
pub(crate) mod gitops;
pub mod limits;
pub(crate) mod maintenance;
pub mod monitor;
mod openapi;
mod ops;
pub mod repairs;
pub(crate) mod respond;
pub mod server;
pub mod throttle;
mod webhook;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

use crate::config::{Secret, Settings};
use crate::pipeline::Pipeline;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The intake pipeline (holds the store, definitions and metrics).
    pub pipeline: Arc<Pipeline>,
    /// Token required on the webhook and reload.
    pub token: Option<Secret>,
    /// Body size limit.
    pub max_body_bytes: usize,
    /// Per-client request limiter (None = unlimited).
    pub limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    /// Per-client failed-authentication limiter (None = off).
    pub auth_throttle: Option<Arc<throttle::AuthThrottle>>,
    /// The console's sign-in failures per address: the same rates, its own state, so mistyped
    /// passwords behind a shared proxy address never throttle the webhook or the API.
    pub sign_in_throttle: Option<Arc<throttle::AuthThrottle>>,
    /// Largest request body under /api.
    pub api_max_body_bytes: usize,
    /// Structure limit of /api bodies ([`limits::check_structure`]).
    pub api_max_depth: usize,
    /// Where rules and playbooks are reloaded from.
    pub rules_dir: crate::embedded::Source,
    /// Playbooks directory.
    pub playbooks_dir: crate::embedded::Source,
    /// Verifies /api tokens (None: the API is closed).
    pub jwt: Option<crate::auth::Key>,
    /// Largest page a listing returns.
    pub max_page: i64,
    /// How /api/apps renders manifests (deploy.webhook_url, deploy.templates_dir).
    pub deploy: crate::deploy::Options,
    /// The hosts `POST /api/apps` may fetch a repository from (`deploy.source_hosts`; empty:
    /// any).
    pub source_hosts: Arc<[String]>,
    /// The deploy settings a queued deployment is recorded with (its build's image).
    pub deploy_settings: Arc<crate::config::DeploySettings>,
    /// Wakes the daemon's deploy worker; `None` when no worker runs (no cluster configured):
    /// `POST /api/apps/{name}/deploy` then answers 503 and says why.
    pub deployer: Option<Arc<tokio::sync::Notify>>,
    /// The latest cluster preflight, shown by `/-/ready` (never a readiness condition).
    pub preflight: crate::preflight::Shared,
    /// Approval clicks from Slack and LINE (`/chat/...`).
    pub chat: crate::chat::Receivers,
    /// Verifies approval links (`None`: links are off, `/approve/*` says so).
    pub links: Option<Arc<crate::approval::Links>>,
    /// The language of the approval pages and answers (`notify.language`).
    pub language: crate::notify::config::Language,
    /// Releases GitOps holds (`POST /api/gitops/holds/{id}/release`); set by the daemon, which
    /// has the cluster (`None`: that route answers 503).
    pub gitops: Option<crate::gitops::release::Releaser>,
    /// The web console (`/ui`); `None` when `ui.enabled` is off.
    pub console: Option<Arc<crate::ui::Console>>,
    /// The Prometheus `/api/monitor` queries (`None`: not configured, those routes say so).
    pub prometheus: Option<crate::monitor::Prometheus>,
}

impl AppState {
    /// Builds the state from settings.
    pub fn new(pipeline: Arc<Pipeline>, settings: &Settings) -> AppState {
        let limiter = NonZeroU32::new(settings.intake.rate_limit_per_second).map(|rate| {
            let burst = NonZeroU32::new(settings.intake.rate_limit_burst).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        let auth_throttle = || {
            NonZeroU32::new(settings.http.auth_failures_per_minute).map(|rate| {
                let burst = NonZeroU32::new(settings.http.auth_failure_burst).unwrap_or(rate);
                Arc::new(throttle::AuthThrottle::new(rate, burst))
            })
        };
        AppState {
            token: settings.webhook_token.clone(),
            max_body_bytes: settings.intake.max_body_bytes,
            limiter,
            auth_throttle: auth_throttle(),
            sign_in_throttle: auth_throttle(),
            api_max_body_bytes: settings
                .api
                .max_body_bytes
                .unwrap_or(crate::config::ApiSettings::DEFAULT_MAX_BODY_BYTES),
            api_max_depth: settings
                .api
                .max_depth
                .unwrap_or(crate::config::ApiSettings::DEFAULT_MAX_DEPTH),
            rules_dir: settings.rules_source(),
            playbooks_dir: settings.playbooks_source(),
            // Settings already refused a secret too short for a key.
            jwt: settings
                .api
                .jwt_secret
                .clone()
                .and_then(|s| crate::auth::Key::new(s).ok()),
            max_page: settings.api.max_page.unwrap_or(500),
            deploy: crate::deploy::Options::from_settings(&settings.deploy),
            source_hosts: settings.deploy.source_hosts.clone().into(),
            deploy_settings: Arc::new(settings.deploy.clone()),
            deployer: None,
            preflight: crate::preflight::Shared::default(),
            chat: crate::chat::Receivers::new(
                &settings.notify,
                crate::chat::Deciding::new(
                    pipeline.store().clone(),
                    pipeline.outbox().cloned(),
                    settings.notify.language,
                    pipeline.maintenance().clone(),
                ),
            ),
            pipeline,
            links: crate::approval::Links::from_settings(settings).map(Arc::new),
            language: settings.notify.language,
            gitops: None,
            console: crate::ui::Console::from_settings(settings),
            prometheus: crate::monitor::Prometheus::from_settings(&settings.monitoring).and_then(
                |p| {
                    p.inspect_err(|e| tracing::error!(error = %e, "cannot use the Prometheus of monitoring.prometheus_url"))
                        .ok()
                },
            ),
        }
    }
}

impl AppState {
    /// Before any credentials are read: 429 while `ip` has no failed-authentication budget left.
    pub(crate) fn auth_allowed(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.auth_blocked(ip)
            .map_or(Ok(()), |wait| Err(ApiError::throttled(wait)))
    }

    /// After credentials were refused: the answer, `refusal` or 429 when this failure used up
    /// the address's budget (logged once, when the block begins).
    pub(crate) fn auth_failed(&self, ip: IpAddr, refusal: ApiError) -> ApiError {
        self.auth_failure(ip).map_or(refusal, ApiError::throttled)
    }

    /// How long `ip` is still refused (counted), if it is.
    fn auth_blocked(&self, ip: IpAddr) -> Option<std::time::Duration> {
        self.blocked(self.auth_throttle.as_deref()?, ip)
    }

    /// How long `ip` may not sign in to the console (its own budget), if it may not.
    pub(crate) fn sign_in_blocked(&self, ip: IpAddr) -> Option<std::time::Duration> {
        self.blocked(self.sign_in_throttle.as_deref()?, ip)
    }

    /// Records a failed console sign-in from `ip` (its own budget, never the webhook's).
    pub(crate) fn sign_in_failure(&self, ip: IpAddr) -> Option<std::time::Duration> {
        self.failure(self.sign_in_throttle.as_deref()?, ip)
    }

    /// Records a refused credential from `ip`.
    fn auth_failure(&self, ip: IpAddr) -> Option<std::time::Duration> {
        self.failure(self.auth_throttle.as_deref()?, ip)
    }

    fn blocked(&self, t: &throttle::AuthThrottle, ip: IpAddr) -> Option<std::time::Duration> {
        let wait = t.check(ip).err()?;
        self.pipeline.metrics().http_auth_throttled.inc();
        Some(wait)
    }

    /// How long `ip` is refused when this failure used up its budget (counted and logged
    /// once, when the block begins).
    fn failure(&self, t: &throttle::AuthThrottle, ip: IpAddr) -> Option<std::time::Duration> {
        let wait = t.failed(ip)?;
        self.pipeline.metrics().http_auth_throttled.inc();
        tracing::warn!(client = %ip, retry_in = ?wait, "too many failed authentications from this address: refusing its requests unread for a while (http.auth_failures_per_minute)");
        Some(wait)
    }
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    for throttle in [&state.auth_throttle, &state.sign_in_throttle]
        .into_iter()
        .flatten()
        .cloned()
    {
        // Forget addresses whose block ended, so the maps cannot grow without bound.
        let weak = Arc::downgrade(&throttle);
        drop(throttle);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(t) = weak.upgrade() else { return };
                t.prune();
            }
        });
    }
    if let Some(limiter) = state.limiter.clone() {
        // Forget clients that have been quiet, so the per-client map cannot grow without bound.
        let weak = Arc::downgrade(&limiter);
        drop(limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { return };
                l.retain_recent();
                l.shrink_to_fit();
            }
        });
    }
    let console = crate::ui::routes(&state);
    Router::new()
        // PUT too: Grafana's webhook contact point can be set to send with PUT.
        .route(
            "/webhook/alertmanager",
            post(webhook::alertmanager).put(webhook::alertmanager),
        )
        .route("/-/healthy", get(ops::healthy))
        .route("/-/ready", get(ops::ready))
        .route("/-/reload", post(ops::reload))
        .route("/metrics", get(ops::metrics))
        .merge(chat::routes())
        .merge(approve::routes())
        .merge(console)
        .merge(
            api::routes()
                .merge(apps::routes())
                .merge(approve::api_routes())
                .merge(maintenance::routes())
                .merge(gitops::routes())
                .merge(monitor::routes())
                .route("/api/{*rest}", axum::routing::any(api::fallback))
                .layer(axum::middleware::from_fn(limits::reject_control_chars))
                .layer(axum::middleware::map_response(limits::json_errors))
                .layer(DefaultBodyLimit::max(state.api_max_body_bytes)),
        )
        .with_state(state)
}

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// 429 for a client address that used up its failed-authentication budget.
    pub fn throttled(wait: std::time::Duration) -> ApiError {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed authentications from this address; retry in {secs} s"),
        )
        .header("retry-after", secs.to_string())
    }

    /// An error with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
            headers: Vec::new(),
        }
    }

    /// Adds the offending field's path.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.body["field"] = json!(field.into());
        self
    }

    /// Adds another key to the body (a refusal's `reason` code, say).
    pub fn with(mut self, key: &'static str, value: serde_json::Value) -> ApiError {
        self.body[key] = value;
        self
    }

    /// The field the error names, if any.
    pub fn field_name(&self) -> Option<&str> {
        self.body["field"].as_str()
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message (what the console shows of a refusal the API would answer with).
    pub fn message(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = value.parse() {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

/// Binds the listener; port 0 picks a free port (tests).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
