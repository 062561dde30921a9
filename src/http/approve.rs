//! Approving a repair over HTTP: the signed links of email and webhook messages, and the API.
//!
//! - `GET /approve/{token}` shows a confirmation page (what will run, on what, until when) with
//!   one button, and changes nothing: mail scanners and link previews that fetch every link
//!   cannot approve.
//! - `POST /approve/{token}` (the page's form) decides through [`crate::approval::decide_link`].
//!   Anti-CSRF: the form body must carry the token again. The token is the capability (signed,
//!   single-use, known only to the message's readers), so a page on another site can post it
//!   only if its author already holds the link, which would let them decide anyway; a forged
//!   cross-site form without it is refused. Answers say `no-store` and `no-referrer` so the token
//!   stays out of caches and of other sites' logs, and refuse framing (clickjacking).
//! - `POST /api/repairs/{id}/approve` and `/reject` (JWT, editor or admin, per-app access): the
//!   API decides as its token's subject, which must be written `platform:id` and be on the
//!   repair's allow-list, like any click; `via` is `api`. So the API cannot approve more than
//!   the person the token names could from chat.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::Serialize;

use super::auth::Claims;
use super::respond::{audit, internal, not_found};
use super::{ApiError, AppState};
use crate::approval::{self, Choice, Decider, LinkUse};
use crate::notify::config::Language;
use crate::rules::Approver;
use crate::store::{self, JobState};

/// The link routes (outside `/api`: a person's browser, no JWT).
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/approve/{token}", get(page).post(confirm))
}

/// The API routes (merged under `/api`'s layers).
pub(super) fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/repairs/{id}/approve", post(api_approve))
        .route("/api/repairs/{id}/reject", post(api_reject))
}

/// The confirmation page and the result page, in both languages (auto-escaped HTML).
const PAGE: &str = r#"<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>aiops</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}
dt{font-weight:bold}button{font-size:1.1em;padding:.5em 1.5em}</style></head>
<body>
<h1>{{ title }}</h1>
{% if message %}<p>{{ message }}</p>{% endif %}
{% if job %}<dl>
<dt>{{ t.action }}</dt><dd>{{ job.playbook }} (job {{ job.id }})</dd>
<dt>{{ t.target }}</dt><dd>{{ job.target }}</dd>
<dt>{{ t.problem }}</dt><dd>{{ job.alertname }} ({{ t.rule }} {{ job.rule }})</dd>
<dt>{{ t.state }}</dt><dd>{{ job.state }}</dd>
{% if job.expires_at %}<dt>{{ t.expires }}</dt><dd>{{ job.expires_at }}</dd>{% endif %}
</dl>{% endif %}
{% if form %}<form method="post" action="/approve/{{ token }}">
<input type="hidden" name="token" value="{{ token }}">
<button type="submit">{{ button }}</button>
</form>{% endif %}
</body></html>
"#;

#[derive(Serialize)]
struct Words {
    action: &'static str,
    target: &'static str,
    problem: &'static str,
    rule: &'static str,
    state: &'static str,
    expires: &'static str,
}

fn words(lang: Language) -> Words {
    match lang {
        Language::En => Words {
            action: "Action",
            target: "Target",
            problem: "Problem",
            rule: "rule",
            state: "State",
            expires: "Approval expires",
        },
        Language::ZhTw => Words {
            action: "動作",
            target: "目標",
            problem: "問題",
            rule: "規則",
            state: "狀態",
            expires: "核准期限",
        },
    }
}

#[derive(Serialize)]
struct JobView {
    id: i64,
    playbook: String,
    target: String,
    alertname: String,
    rule: String,
    state: &'static str,
    expires_at: String,
}

#[derive(Serialize)]
struct View<'a> {
    lang: &'static str,
    title: String,
    message: String,
    job: Option<JobView>,
    form: bool,
    token: &'a str,
    button: &'static str,
    t: Words,
}

fn html(status: StatusCode, view: &View<'_>) -> Response {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let body = env
        .template_from_str(PAGE)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(view))))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "approval page failed to render");
            "aiops: the page could not be rendered".into()
        });
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

fn view<'a>(lang: Language, token: &'a str, title: String, message: String) -> View<'a> {
    View {
        lang: match lang {
            Language::En => "en",
            Language::ZhTw => "zh-TW",
        },
        title,
        message,
        job: None,
        form: false,
        token,
        button: "",
        t: words(lang),
    }
}

fn invalid(lang: Language, e: &approval::LinkError) -> Response {
    tracing::warn!("an approval link with a bad signature was refused");
    let (title, message) = match lang {
        Language::En => ("Invalid link".to_string(), e.to_string()),
        Language::ZhTw => (
            "連結無效".to_string(),
            "此核准連結無效：它不是由這個 aiops 簽發，或已被修改。".to_string(),
        ),
    };
    html(StatusCode::FORBIDDEN, &view(lang, "", title, message))
}

/// `GET /approve/{token}`: the confirmation page. Reads only.
async fn page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let lang = st.language;
    let Some(links) = &st.links else {
        return html(
            StatusCode::NOT_FOUND,
            &view(lang, "", "aiops".into(), unconfigured(lang).into()),
        );
    };
    let claims = match links.verify(&token) {
        Ok(c) => c,
        Err(e) => return invalid(lang, &e),
    };
    let store = st.pipeline.store();
    let job = match store.job(claims.job_id).await {
        Ok(j) => j,
        Err(e) => return unavailable(lang, e),
    };
    let expires_at = match store.approval_expires_at(claims.job_id).await {
        Ok(e) => e,
        Err(e) => return unavailable(lang, e),
    };
    let approve = claims.choice == Choice::Approve;
    let (title, button) = match (lang, approve) {
        (Language::En, true) => ("Approve this repair?", "Approve"),
        (Language::En, false) => ("Reject this repair?", "Reject"),
        (Language::ZhTw, true) => ("核准這個修復？", "核准"),
        (Language::ZhTw, false) => ("拒絕這個修復？", "拒絕"),
    };
    let mut v = view(lang, &token, title.into(), String::new());
    v.button = button;
    match job {
        None => v.message = approval::Outcome::UnknownJob.sentence(lang),
        Some(job) => {
            let waiting = job.state == JobState::AwaitingApproval;
            v.form = waiting && store::now_ms() < claims.expires_at_ms;
            if !waiting {
                v.message = approval::Outcome::NotAwaiting {
                    state: job.state.as_str().into(),
                }
                .sentence(lang);
            } else if !v.form {
                v.message = approval::Outcome::Expired {
                    at_ms: claims.expires_at_ms,
                }
                .sentence(lang);
            }
            v.job = Some(JobView {
                id: job.id,
                playbook: job.playbook.clone(),
                target: job.target_key.clone(),
                alertname: job.alertname.clone(),
                rule: job.rule.clone(),
                state: job.state.as_str(),
                expires_at: expires_at.map(rfc3339).unwrap_or_default(),
            });
        }
    }
    html(StatusCode::OK, &v)
}

/// `POST /approve/{token}`: the page's form decides.
async fn confirm(State(st): State<AppState>, Path(token): Path<String>, body: Bytes) -> Response {
    let lang = st.language;
    let Some(links) = &st.links else {
        return html(
            StatusCode::NOT_FOUND,
            &view(lang, "", "aiops".into(), unconfigured(lang).into()),
        );
    };
    if form_token(&body).as_deref() != Some(token.as_str()) {
        let message = match lang {
            Language::En => "Refused: post the form of the confirmation page to decide.",
            Language::ZhTw => "已拒絕：請用確認頁面上的表單送出決定。",
        };
        return html(
            StatusCode::FORBIDDEN,
            &view(lang, "", "aiops".into(), message.into()),
        );
    }
    let claims = match links.verify(&token) {
        Ok(c) => c,
        Err(e) => return invalid(lang, &e),
    };
    let store = st.pipeline.store();
    let outbox = st.pipeline.outbox().map(|o| o.as_ref());
    let used = match approval::decide_link(
        store,
        outbox,
        &st.pipeline.maintenance().snapshot(),
        &claims,
        store::now_ms(),
    )
    .await
    {
        Ok(u) => u,
        Err(e) => return unavailable(lang, e),
    };
    let title = match (&used, lang) {
        (LinkUse::Decided(approval::Outcome::Approved { .. }), Language::En) => "Approved",
        (LinkUse::Decided(approval::Outcome::Rejected { .. }), Language::En) => "Rejected",
        (LinkUse::Decided(approval::Outcome::Approved { .. }), Language::ZhTw) => "已核准",
        (LinkUse::Decided(approval::Outcome::Rejected { .. }), Language::ZhTw) => "已拒絕",
        (_, Language::En) => "Not decided",
        (_, Language::ZhTw) => "未決定",
    };
    let status = StatusCode::from_u16(used.status()).unwrap_or(StatusCode::CONFLICT);
    html(status, &view(lang, "", title.into(), used.sentence(lang)))
}

/// The `token` field of an `application/x-www-form-urlencoded` body.
fn form_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn unconfigured(lang: Language) -> &'static str {
    match lang {
        Language::En => {
            "Approval links are off: external_url and approval_secret are not both set."
        }
        Language::ZhTw => "核准連結未啟用：external_url 與 approval_secret 尚未都設定。",
    }
}

fn unavailable(lang: Language, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "approval page: the store did not answer");
    let message = match lang {
        Language::En => "The store did not answer; nothing was decided. Try again.",
        Language::ZhTw => "資料庫沒有回應；沒有做出任何決定。請再試一次。",
    };
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        &view(lang, "", "aiops".into(), message.into()),
    )
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

async fn api_approve(claims: Claims, State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    api_decide(claims, st, id, Choice::Approve).await
}

async fn api_reject(claims: Claims, State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    api_decide(claims, st, id, Choice::Reject).await
}

#[derive(Serialize)]
struct Decided {
    job_id: i64,
    outcome: &'static str,
    message: String,
}

async fn api_decide(claims: Claims, st: AppState, id: i64, choice: Choice) -> Response {
    let store = st.pipeline.store();
    if !claims.can_write() {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "deciding a repair needs an editor or admin token",
        );
        return refused(store, &claims, id, choice, e).await;
    }
    // Another app's repair answers as a missing one, as everywhere in the API.
    match store.job(id).await {
        Err(e) => return refused(store, &claims, id, choice, internal(e)).await,
        Ok(Some(j)) if claims.can_see(&j.target_namespace) => {}
        Ok(_) => return refused(store, &claims, id, choice, not_found("repair")).await,
    }
    let Ok(who) = claims.sub.parse::<Approver>() else {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "the token's subject is not an approver: issue one whose subject is written platform:id (telegram:123456789) and is on the repair's allow-list",
        );
        return refused(store, &claims, id, choice, e).await;
    };
    let by = Decider {
        name: claims.sub.clone(),
        who,
        via: "api".into(),
    };
    let outbox = st.pipeline.outbox().map(|o| o.as_ref());
    // The decision writes its own audit row (who, platform, channel, outcome).
    match approval::decide(
        store,
        outbox,
        &st.pipeline.maintenance().snapshot(),
        id,
        choice,
        &by,
        store::now_ms(),
    )
    .await
    {
        Err(e) => internal(e).into_response(),
        Ok(outcome) => {
            let status = StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::CONFLICT);
            let body = Decided {
                job_id: id,
                outcome: outcome.code(),
                message: outcome.sentence(st.language),
            };
            (status, axum::Json(body)).into_response()
        }
    }
}

/// A request refused before any decision (role, app, subject): audited as any API write.
async fn refused(
    store: &store::Store,
    claims: &Claims,
    id: i64,
    choice: Choice,
    e: ApiError,
) -> Response {
    audit(
        store,
        claims,
        &format!("POST /api/repairs/{{id}}/{}", choice.as_str()),
        format!("repair {id}"),
        e.status(),
        serde_json::json!({ "error": "refused" }),
    )
    .await;
    e.into_response()
}
