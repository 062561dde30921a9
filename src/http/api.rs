//! The JSON API under `/api`: alerts, repairs and the knowledge base, per app. Running a
//! repair by hand (`POST /api/repairs`) is in [`super::repairs`].
//!
//! Every route but `/api/openapi.json` needs a JWT ([`Claims`]). A token sees only the apps
//! (namespaces) it names, admins every app: another app's item answers 404 exactly as a missing
//! one does, and never appears in a listing. Writes need editor or admin and are recorded in the
//! audit log with the subject, whatever their outcome.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::Claims;
use super::repairs::run_repair;
use super::respond::{audit, internal, not_found, unreadable};
use super::{ApiError, AppState};
use crate::decision::Verdict;
use crate::kb;
use crate::rules::Mode;
use crate::store::{self, AlertState, JobState, ListFilter, NewNote};

/// Page size when the request names none.
const DEFAULT_PAGE: i64 = 50;

/// The /api routes of alerts, repairs and the knowledge base (merged into the main router
/// beside `apps::routes`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{id}", get(get_alert))
        .route("/api/repairs", get(list_repairs).post(run_repair))
        .route("/api/repairs/{id}", get(get_repair))
        .route("/api/kb/stats", get(kb_stats))
        .route("/api/kb/similar", get(kb_similar))
        .route("/api/kb/rules/{rule}", get(kb_rule))
        .route("/api/kb/notes", post(add_note))
}

/// Unknown routes under /api: JSON, so clients see what went wrong.
pub async fn fallback() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such API route (GET /api/openapi.json lists them)",
    )
}

/// `since`: a duration back from now (`7d`, `90m`) or an RFC 3339 time.
fn parse_since(v: &str) -> Result<i64, ApiError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    // No repair or alert is received before 1970; a longer duration (`300000000y`) would reach
    // past what a timestamp can show and /api/kb/stats would answer `"since": null`.
    crate::config::parse_duration(v)
        .map(|d| (store::now_ms() - store::ms(d)).max(0))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e).field("since"))
}

/// Query parameters of the listings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Repairs: `namespace/Kind/name`.
    target: Option<String>,
    /// Repairs: job state. Alerts: `firing` (firing now) or `resolved` (ended).
    state: Option<String>,
    /// Alerts: the old spelling of `state`, kept as an alias (same meaning).
    status: Option<String>,
    /// Alerts: decision verdict (`job`, `refused`, `skipped`).
    verdict: Option<String>,
    /// Alerts: decision reason code.
    reason: Option<String>,
    /// Alerts: alert name.
    alertname: Option<String>,
    /// Repairs: trust mode (`shadow`, `approve`, `auto`).
    mode: Option<String>,
    /// Only this app (must be one the token sees).
    namespace: Option<String>,
    /// `7d` or an RFC 3339 time.
    since: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// Page size (1..=api.max_page).
    limit: Option<i64>,
}

impl ListQuery {
    fn filter(&self, claims: &Claims, st: &AppState) -> Result<ListFilter, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=st.max_page).contains(&limit) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit must be between 1 and {}", st.max_page),
            )
            .field("limit"));
        }
        Ok(ListFilter {
            namespaces: claims.listing_scope(self.namespace.as_deref()),
            subject: None,
            since: self.since.as_deref().map(parse_since).transpose()?,
            before_id: self.cursor,
            limit,
            ..ListFilter::default()
        })
    }
}

fn page<T: serde::Serialize>(items: Vec<T>, id: impl Fn(&T) -> i64, limit: i64) -> Response {
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(&id))
        .flatten();
    Json(json!({ "items": items, "next_cursor": next })).into_response()
}

/// The alert filters: `state` (or its alias `status`), `verdict` and `reason`, checked.
fn alert_filters(q: &ListQuery, f: &mut ListFilter) -> Result<(), ApiError> {
    let state = match (&q.state, &q.status) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "status is the old name of state: give one",
            )
            .field("status"));
        }
        (Some(s), _) => Some((s, "state")),
        (None, Some(s)) => Some((s, "status")),
        (None, None) => None,
    };
    if let Some((s, field)) = state {
        f.alert_state = Some(AlertState::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{field} is firing (firing now) or resolved"),
            )
            .field(field)
        })?);
    }
    if let Some(v) = &q.verdict {
        let all: Vec<&str> = Verdict::ALL.iter().map(|v| v.as_str()).collect();
        f.verdict = Some(Verdict::parse(v).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown verdict {v:?} (one of {})", all.join(", ")),
            )
            .field("verdict")
        })?);
    }
    if let Some(r) = &q.reason {
        let all = crate::pipeline::reason_codes();
        if !all.contains(&r.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown reason {r:?} (one of {})", all.join(", ")),
            )
            .field("reason"));
        }
        f.reason = Some(r.clone());
    }
    Ok(())
}

async fn list_alerts(
    claims: Claims,
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if q.target.is_some() || q.mode.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "alerts filter by state, verdict, reason, alertname, namespace and since",
        ));
    }
    let mut f = q.filter(&claims, &st)?;
    alert_filters(&q, &mut f)?;
    f.subject = q.alertname.clone();
    let items = st
        .pipeline
        .store()
        .list_alerts(&f)
        .await
        .map_err(internal)?;
    Ok(page(items, |a| a.id, f.limit))
}

async fn get_alert(
    claims: Claims,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    // An alert without an app label belongs to no app: only admins see it, as in the listing.
    let alert = st
        .pipeline
        .store()
        .alert(id)
        .await
        .map_err(internal)?
        .filter(|a| claims.can_see_item(a.namespace.as_deref()))
        .ok_or_else(|| not_found("alert"))?;
    Ok(Json(alert).into_response())
}

async fn list_repairs(
    claims: Claims,
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if q.status.is_some() || q.alertname.is_some() || q.verdict.is_some() || q.reason.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "repairs filter by target, state, mode, namespace and since",
        ));
    }
    let mode = q
        .mode
        .as_deref()
        .map(|m| {
            m.parse::<Mode>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e).field("mode"))
        })
        .transpose()?;
    if let Some(s) = &q.state
        && JobState::parse(s).is_none()
    {
        let all: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown state {s:?} (one of {})", all.join(", ")),
        )
        .field("state"));
    }
    let mut f = q.filter(&claims, &st)?;
    f.state = q.state.clone();
    f.subject = q.target.clone();
    f.mode = mode;
    let items = st.pipeline.store().list_jobs(&f).await.map_err(internal)?;
    Ok(page(items, |j| j.id, f.limit))
}

async fn get_repair(
    claims: Claims,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let store = st.pipeline.store();
    let job = store
        .job(id)
        .await
        .map_err(internal)?
        .filter(|j| claims.can_see(&j.target_namespace))
        .ok_or_else(|| not_found("repair"))?;
    let steps = store.job_steps(id).await.map_err(internal)?;
    let events = store.job_events(id).await.map_err(internal)?;
    let escalations = store.escalations_of(id).await.map_err(internal)?;
    let notes = repair_notes(store, &job).await.map_err(internal)?;
    let gitops = store.job_gitops(id).await.map_err(internal)?;
    Ok(Json(json!({
        "repair": job,
        "steps": steps,
        "events": events,
        "escalations": escalations,
        "notes": notes,
        "gitops": gitops,
    }))
    .into_response())
}

/// The notes a repair shows (the API's and the console's timeline): those about its target,
/// then those about its alert name in its app that name no target; at most 20 of each.
pub(crate) async fn repair_notes(
    store: &crate::store::Store,
    job: &crate::store::Job,
) -> crate::store::Result<Vec<crate::store::Note>> {
    let ns = [job.target_namespace.clone()];
    let mut notes = store
        .notes(Some(&ns), None, Some(&job.target_key), 20)
        .await?;
    notes.extend(
        store
            .notes(Some(&ns), Some(&job.alertname), None, 20)
            .await?
            .into_iter()
            .filter(|n| n.target.is_none()),
    );
    Ok(notes)
}

/// Query of /api/kb/stats.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    since: Option<String>,
    namespace: Option<String>,
}

async fn kb_stats(
    claims: Claims,
    State(st): State<AppState>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, ApiError> {
    let since = parse_since(q.since.as_deref().unwrap_or("7d"))?;
    let apps: Option<Vec<String>> = match (&q.namespace, claims.visible_apps()) {
        (Some(ns), _) if !claims.can_see(ns) => Some(Vec::new()),
        (Some(ns), _) => Some(vec![ns.clone()]),
        (None, apps) => apps.map(<[String]>::to_vec),
    };
    let report = kb::report(st.pipeline.store(), since, apps.as_deref())
        .await
        .map_err(internal)?;
    Ok(Json(report).into_response())
}

/// Query of /api/kb/rules/{rule}.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleQuery {
    since: Option<String>,
}

/// One rule's shadow-mode evidence (`kb::shadow`), over the jobs on targets the token sees: an
/// app-scoped token gets its apps' share of the numbers, as with /api/kb/stats.
async fn kb_rule(
    claims: Claims,
    State(st): State<AppState>,
    Path(rule): Path<String>,
    Query(q): Query<RuleQuery>,
) -> Result<Response, ApiError> {
    let since = parse_since(q.since.as_deref().unwrap_or("7d"))?;
    let apps = claims.visible_apps();
    let report = kb::shadow::rule_report(st.pipeline.store(), &rule, since, store::now_ms(), apps)
        .await
        .map_err(internal)?;
    Ok(Json(report).into_response())
}

/// Query of /api/kb/similar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    alertname: String,
    namespace: String,
    limit: Option<i64>,
}

async fn kb_similar(
    claims: Claims,
    State(st): State<AppState>,
    Query(q): Query<SimilarQuery>,
) -> Result<Response, ApiError> {
    if !claims.can_see(&q.namespace) {
        return Err(not_found("app"));
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=st.max_page).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {}", st.max_page),
        )
        .field("limit"));
    }
    let store = st.pipeline.store();
    let incidents = kb::similar(store, &q.alertname, &q.namespace, limit)
        .await
        .map_err(internal)?;
    let ns = [q.namespace.clone()];
    let notes = store
        .notes(Some(&ns), Some(&q.alertname), None, 50)
        .await
        .map_err(internal)?;
    Ok(Json(json!({
        "fixes": kb::fixes(&incidents),
        "incidents": incidents,
        "notes": notes,
    }))
    .into_response())
}

/// Body of POST /api/kb/notes: about an alert name in an app, or about a target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// The app; may be left out when `target` is given.
    namespace: Option<String>,
    /// Alert name the note is about.
    alertname: Option<String>,
    /// Target (`namespace/Kind/name`) the note is about.
    target: Option<String>,
    /// The text (1..=10000 characters).
    body: String,
}

async fn add_note(
    claims: Claims,
    State(st): State<AppState>,
    body: Result<Json<NoteBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let store = st.pipeline.store().clone();
    let (resp, resource, detail) = match note(&claims, &st, body).await {
        Ok(n) => (
            (StatusCode::CREATED, Json(json!(n))).into_response(),
            format!("note {}", n.id),
            json!({"namespace": n.namespace, "alertname": n.alertname, "target": n.target}),
        ),
        Err((e, detail)) => (e.into_response(), "note".to_string(), detail),
    };
    let status = resp.status();
    audit(
        &store,
        &claims,
        "POST /api/kb/notes",
        resource,
        status,
        detail,
    )
    .await;
    resp
}

async fn note(
    claims: &Claims,
    st: &AppState,
    body: Result<Json<NoteBody>, axum::extract::rejection::JsonRejection>,
) -> Result<store::Note, (ApiError, serde_json::Value)> {
    let bad = |m: String, field: &str| {
        (
            ApiError::new(StatusCode::BAD_REQUEST, m).field(field),
            json!({ "error": "bad request" }),
        )
    };
    let Json(b) = body.map_err(|e| (unreadable(&e), json!({ "error": "bad request" })))?;
    let detail = json!({"namespace": b.namespace, "alertname": b.alertname, "target": b.target});
    if !claims.can_write() {
        return Err((
            ApiError::new(StatusCode::FORBIDDEN, "viewer tokens cannot write"),
            detail,
        ));
    }
    if b.alertname.is_none() && b.target.is_none() {
        return Err(bad(
            "a note is about an alertname or a target".into(),
            "alertname",
        ));
    }
    let text = b.body.trim();
    if text.is_empty() || text.chars().count() > 10_000 {
        return Err(bad("body must be 1 to 10000 characters".into(), "body"));
    }
    let target_ns = match &b.target {
        Some(t) => {
            let parts: Vec<&str> = t.split('/').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(bad(
                    format!("target {t:?} must be namespace/Kind/name"),
                    "target",
                ));
            }
            Some(parts[0].to_string())
        }
        None => None,
    };
    let ns = match (b.namespace.clone(), target_ns) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                format!("target is in namespace {b:?}, not {a:?}"),
                "namespace",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(bad("namespace is required".into(), "namespace")),
    };
    if !claims.can_see(&ns) {
        return Err((not_found("app"), detail));
    }
    let store = st.pipeline.store();
    let mut tx = store
        .begin_write()
        .await
        .map_err(|e| (internal(e), detail.clone()))?;
    let n = tx
        .insert_note(
            &NewNote {
                namespace: &ns,
                alertname: b.alertname.as_deref(),
                target: b.target.as_deref(),
                author: &claims.sub,
                body: text,
            },
            store::now_ms(),
        )
        .await
        .map_err(|e| (internal(e), detail.clone()))?;
    tx.commit().await.map_err(|e| (internal(e), detail))?;
    Ok(n)
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::openapi::DOCUMENT,
    )
        .into_response()
}
