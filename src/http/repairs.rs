//! `POST /api/repairs`: an editor runs a named playbook by hand, against a target or a stored
//! alert, through the guards, modes and audit of an automatic repair (`pipeline::hand`).
//!
//! The write half of `/api/repairs`, apart from `api.rs` for its size: `api.rs` mounts it on
//! the route its listing answers, and this file imports nothing of `api.rs` (what both answer
//! alike is in `respond.rs`).
//!
//! Cheapest first, as `POST /api/apps`: the role is checked before a byte of the body is read
//! (a viewer's body is discarded unparsed), the body is read within `api.max_body_bytes` and
//! `http.body_read_timeout` and its nesting bounded before serde sees it. Then, in order: the
//! body's shape (400 naming the field), the playbook (422), the alert (404, as a missing or
//! hidden one), the target (400 malformed; 404 in an app the token cannot see), the mode
//! (403 bolder than the trust settings allow, 422 when nobody could approve it); up to here
//! nothing is recorded but the audit line. Then the guards decide and record: 202 with the job,
//! or the refusal with its reason code (409 when something else holds the target, 429 when
//! the repair is rate-limited). Every call is audited with its outcome.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Claims;
use super::limits;
use super::respond::{audit, internal, not_found};
use super::{ApiError, AppState};
use crate::job::{ByHand, Params};
use crate::pipeline::hand::{self, HandOutcome, HandRun, Source};
use crate::pipeline::{Plan, Refusal};
use crate::rules::Mode;
use crate::store::JobState;

/// The audit log's action for every call.
const ACTION: &str = "POST /api/repairs";

/// The longest `reason` kept with a run, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Body of `POST /api/repairs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// A loaded playbook's name.
    playbook: String,
    /// `namespace/Kind/name`; exactly one of `target` and `alert`.
    #[serde(default)]
    target: Option<String>,
    /// A stored alert's id (`GET /api/alerts/{id}`); exactly one of `target` and `alert`.
    #[serde(default)]
    alert: Option<i64>,
    /// The playbook's parameters, over the governing rule's.
    #[serde(default)]
    params: Option<Params>,
    /// `shadow`, `approve` or `auto`; default what the trust settings give the repair.
    #[serde(default)]
    mode: Option<Mode>,
    /// Free text recorded with the run.
    #[serde(default)]
    reason: Option<String>,
}

/// The answer to an accepted run (202).
#[derive(Debug, Serialize)]
struct Accepted {
    /// The job (`GET /api/repairs/{job_id}`).
    job_id: i64,
    /// `queued`, or `awaiting_approval` in approve mode.
    state: JobState,
    /// The trust mode it runs in (`shadow` runs are dry runs).
    mode: Mode,
    /// Whether it changes nothing (shadow mode, or a dry-run rule).
    dry_run: bool,
    /// The rule it is recorded under, whose cooldown and budget it counts against.
    rule: String,
    /// The playbook.
    playbook: String,
    /// The parameters it runs with (the rule's, with the request's over them).
    params: Params,
    /// `namespace/Kind/name`.
    target: String,
    /// The stored alert it came from, if any.
    alert: Option<i64>,
    /// Who asked (the token's subject).
    requested_by: String,
    /// Why, as given.
    reason: Option<String>,
    /// Where to follow it.
    repair: String,
}

/// A call that ended without a job: its answer, and what the audit log keeps of it.
struct Failure {
    error: ApiError,
    detail: serde_json::Value,
}

impl Failure {
    fn new(error: ApiError, detail: &serde_json::Value) -> Failure {
        Failure {
            error,
            detail: detail.clone(),
        }
    }
}

/// `POST /api/repairs`.
pub async fn run_repair(claims: Claims, State(st): State<AppState>, body: Body) -> Response {
    let store = st.pipeline.store().clone();
    let (resp, resource, detail) = match run(&claims, &st, body).await {
        Ok((accepted, detail)) => {
            let location = accepted.repair.clone();
            let resource = format!("repair {}", accepted.job_id);
            let mut resp = (StatusCode::ACCEPTED, axum::Json(accepted)).into_response();
            if let Ok(v) = location.parse() {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            (resp, resource, detail)
        }
        Err(f) => (f.error.into_response(), "repair".to_string(), f.detail),
    };
    audit(&store, &claims, ACTION, resource, resp.status(), detail).await;
    resp
}

async fn run(
    claims: &Claims,
    st: &AppState,
    body: Body,
) -> Result<(Accepted, serde_json::Value), Failure> {
    if !claims.can_write() {
        // Discarded unparsed, only so the client reads the 403 rather than a reset.
        limits::discard(body, st.api_max_body_bytes).await;
        let e = ApiError::new(StatusCode::FORBIDDEN, "viewer tokens cannot write");
        return Err(Failure::new(
            e,
            &json!({"error": "viewer tokens cannot write"}),
        ));
    }
    let refused_body = |e: ApiError| {
        let detail = json!({"error": "body refused", "status": e.status().as_u16()});
        Failure { error: e, detail }
    };
    let bytes = limits::read_body(body, st.api_max_body_bytes)
        .await
        .map_err(refused_body)?;
    let b = parse(&bytes, st.api_max_depth).map_err(refused_body)?;
    let reason = b.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let detail = json!({
        "playbook": b.playbook,
        "target": b.target,
        "alert": b.alert,
        "mode": b.mode,
        "reason": reason,
    });
    let bad = |m: String, field: &str| {
        Failure::new(
            ApiError::new(StatusCode::BAD_REQUEST, m).field(field),
            &detail,
        )
    };
    if let Some(r) = reason
        && r.chars().count() > MAX_REASON_CHARS
    {
        return Err(bad(
            format!("reason is at most {MAX_REASON_CHARS} characters"),
            "reason",
        ));
    }
    let source = match (&b.target, b.alert) {
        (Some(t), None) => {
            Source::Target(hand::parse_target(t).map_err(|e| Failure::new(hand_error(e), &detail))?)
        }
        (None, Some(id)) => Source::Alert(id),
        (Some(_), Some(_)) => {
            return Err(bad(
                "give exactly one of target and alert, not both".into(),
                "alert",
            ));
        }
        (None, None) => {
            return Err(bad(
                "give the target (namespace/Kind/name) or the alert (its id) to run against".into(),
                "target",
            ));
        }
    };
    let request = HandRun {
        playbook: b.playbook.clone(),
        source,
        params: b.params,
        mode: b.mode,
        by: ByHand {
            by: claims.sub.clone(),
            reason: reason.map(str::to_string),
        },
    };
    let pipeline = &st.pipeline;
    let may_see = |ns: Option<&str>| claims.can_see_item(ns);
    let plan = pipeline
        .plan_by_hand(request, &may_see)
        .await
        .map_err(|e| Failure::new(hand_error(e), &detail))?;
    let mut detail = detail;
    detail["rule"] = json!(plan.rule());
    detail["target"] = json!(plan.target().key());
    detail["mode"] = json!(plan.mode());
    let (rule, target, alert) = (
        plan.rule().to_string(),
        plan.target().key(),
        plan.alert_id(),
    );
    match pipeline
        .run_by_hand(plan)
        .await
        .map_err(|e| Failure::new(hand_error(e), &detail))?
    {
        HandOutcome::Job {
            job_id,
            state,
            plan,
        } => {
            detail["job_id"] = json!(job_id);
            let Plan {
                playbook,
                params,
                dry_run,
                mode,
                ..
            } = plan;
            let accepted = Accepted {
                job_id,
                state,
                mode,
                dry_run,
                rule,
                playbook,
                params,
                target,
                alert,
                requested_by: claims.sub.clone(),
                reason: reason.map(str::to_string),
                repair: format!("/api/repairs/{job_id}"),
            };
            Ok((accepted, detail))
        }
        HandOutcome::Refused {
            reason: refusal,
            detail: words,
        } => {
            detail["refused"] = json!(refusal.as_str());
            let error = ApiError::new(refusal_status(refusal), words)
                .with("reason", json!(refusal.as_str()))
                .with("rule", json!(rule))
                .with("target", json!(target));
            Err(Failure { error, detail })
        }
    }
}

/// The body as JSON of [`RunBody`]'s shape: 400 naming the field that is wrong (the body
/// itself when it is no JSON object at all).
fn parse(bytes: &[u8], max_depth: usize) -> Result<RunBody, ApiError> {
    let bad = |m: String, field: &str| ApiError::new(StatusCode::BAD_REQUEST, m).field(field);
    let text =
        std::str::from_utf8(bytes).map_err(|_| bad("the body is not UTF-8".into(), "body"))?;
    if !text.trim_start().starts_with('{') {
        return Err(bad(
            "the body must be a JSON object: {\"playbook\": ..., \"target\": ...}".into(),
            "body",
        ));
    }
    limits::check_structure(text, max_depth).map_err(|m| bad(m, "body"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = field_of(&e);
        bad(e.into_inner().to_string(), &field)
    })
}

/// The field a deserialization error is about: its path, or for an error on the object itself
/// (a missing or unknown field) the field its message names.
fn field_of(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path != "." && !path.is_empty() {
        return path;
    }
    let message = e.inner().to_string();
    message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field `"))
        .unwrap_or("body")
        .to_string()
}

/// The status of a guard's refusal: 409 when something else holds the target (a repair, a
/// maintenance window) or the namespace is not the daemon's to act in; 429 when the repair is
/// rate-limited (cooldown, budget, the storm brake, a full queue) and waiting will do.
fn refusal_status(r: Refusal) -> StatusCode {
    match r {
        Refusal::Cooldown | Refusal::Budget | Refusal::StormBrake | Refusal::QueueFull => {
            StatusCode::TOO_MANY_REQUESTS
        }
        Refusal::TargetBusy | Refusal::Maintenance | Refusal::NamespaceDenied => {
            StatusCode::CONFLICT
        }
        // Checked before the guards for a run by hand (`plan_by_hand`); kept total.
        Refusal::NoTarget | Refusal::InvalidTarget => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// A run by hand the pipeline would not decide, as the API answers it.
fn hand_error(e: hand::Error) -> ApiError {
    use hand::Error as E;
    let status = match &e {
        E::MalformedTarget { .. } => StatusCode::BAD_REQUEST,
        E::UnknownAlert => return not_found("alert").field("alert"),
        E::HiddenApp => return not_found("app"),
        E::ModeAboveTrust { .. } => StatusCode::FORBIDDEN,
        E::QueueFull { .. } => {
            return ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                .with("reason", json!(Refusal::QueueFull.as_str()));
        }
        E::Store(_) => return internal(e),
        E::UnknownPlaybook { .. }
        | E::NotFiring { .. }
        | E::NoTarget { .. }
        | E::InvalidTarget { .. }
        | E::NoApprovers { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let field = match &e {
        E::MalformedTarget { .. } => "target",
        E::UnknownPlaybook { .. } => "playbook",
        E::ModeAboveTrust { .. } | E::NoApprovers { .. } => "mode",
        _ => "alert",
    };
    ApiError::new(status, e.to_string()).field(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str) -> (StatusCode, String) {
        let e = parse(body.as_bytes(), 16).unwrap_err();
        (e.status(), e.field_name().unwrap_or_default().to_string())
    }

    #[test]
    fn a_malformed_body_names_the_field_that_is_wrong() {
        for (body, want) in [
            (r#"{"target": "prod/Deployment/web"}"#, "playbook"),
            (r#"{"playbook": "restart", "force": true}"#, "force"),
            (r#"{"playbook": 3}"#, "playbook"),
            (r#"{"playbook": "restart", "params": [1]}"#, "params"),
            (r#"{"playbook": "restart", "mode": "yolo"}"#, "mode"),
            (r#"{"playbook": "restart", "alert": "seven"}"#, "alert"),
            (r#"{"playbook": "restart""#, "body"),
            ("[]", "body"),
            ("", "body"),
        ] {
            assert_eq!(
                field(body),
                (StatusCode::BAD_REQUEST, want.to_string()),
                "{body}"
            );
        }
    }

    #[test]
    fn a_well_formed_body_reads_its_fields() {
        let b = parse(
            br#"{"playbook": "restart", "alert": 7, "params": {"rollout_timeout": "1m"}, "mode": "shadow", "reason": "stuck"}"#,
            16,
        )
        .unwrap();
        assert_eq!(b.playbook, "restart");
        assert_eq!(b.alert, Some(7));
        assert_eq!(b.mode, Some(Mode::Shadow));
        assert_eq!(b.params.unwrap()["rollout_timeout"], "1m");
        assert_eq!(b.reason.as_deref(), Some("stuck"));
    }

    #[test]
    fn waiting_helps_against_rate_limits_and_not_against_what_holds_the_target() {
        for r in Refusal::ALL {
            let s = refusal_status(r);
            let expected = match r {
                Refusal::Cooldown | Refusal::Budget | Refusal::StormBrake | Refusal::QueueFull => {
                    429
                }
                Refusal::TargetBusy | Refusal::Maintenance | Refusal::NamespaceDenied => 409,
                Refusal::NoTarget | Refusal::InvalidTarget => 422,
            };
            assert_eq!(s.as_u16(), expected, "{r:?}");
        }
    }
}
