//! The alert center: `/ui/alerts`, the alerts firing now and recently received, newest first,
//! each saying in words what aiops did about it (its repairs, their state and playbook) or why
//! it did nothing (the decision's reason); and `/ui/alerts/{id}`, one alert with its labels,
//! annotations, links, decisions and repairs.
//!
//! The store's read model is the API's (`Store::list_alerts`, `Store::alert`, with the same
//! filters and the same per-app access through [`crate::auth::Claims`]); this module turns it
//! into views ([`view`]) and pages. Another app's alert answers 404, exactly like a missing one.

mod view;
mod words;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;

use super::session::console;
use super::{UiError, Viewer, page};
use crate::auth::Claims;
use crate::http::AppState;
use crate::store::{AlertRecord, Job};
use view::AlertsQuery;

/// Templates of this page group.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("alerts.html", include_str!("templates/alerts.html")),
    ("alert.html", include_str!("templates/alert.html")),
];

/// Words of this page group: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = words::WORDS;

/// CSS of this page group, appended to /ui/static/console.css.
pub(super) const CSS: &str = include_str!("static/alerts.css");

/// Alerts on one page of the list.
const PAGE: i64 = 50;

/// Routes of this page group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/alerts", get(list))
        .route("/ui/alerts/{id}", get(one))
}

/// `/ui/alerts`: a page of alerts, filtered by the form's fields; `before` is the cursor.
async fn list(
    viewer: Viewer,
    State(st): State<AppState>,
    Query(q): Query<AlertsQuery>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let lang = viewer.lang;
    let filter = q
        .filter(&viewer.claims, PAGE + 1)
        .map_err(|message| UiError::BadRequest {
            message: message.in_lang(lang),
            lang,
        })?;
    let store = st.pipeline.store();
    let alerts = store
        .list_alerts(&filter)
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?;
    let ids: Vec<i64> = alerts.iter().map(|a| a.id).collect();
    let jobs = visible_jobs(
        &viewer.claims,
        store
            .jobs_of_alerts(&ids)
            .await
            .map_err(|e| UiError::internal(e).in_lang(lang))?,
    );
    let view = view::list(&q, &viewer.claims, alerts, &jobs, PAGE as usize);
    page(c, &viewer, "alerts.html", view)
}

/// `/ui/alerts/{id}`: one alert; 404 when it is missing or belongs to an app the viewer
/// cannot see.
async fn one(
    viewer: Viewer,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let lang = viewer.lang;
    // A path that is not a number names no alert: the console's 404, not axum's plain 400.
    let id: i64 = id.parse().map_err(|_| UiError::NotFound)?;
    let store = st.pipeline.store();
    let alert = store
        .alert(id)
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?
        .filter(|a| viewer.claims.can_see_item(a.namespace.as_deref()))
        .ok_or(UiError::NotFound)?;
    let jobs = visible_jobs(
        &viewer.claims,
        store
            .jobs_of_alerts(&[alert.id])
            .await
            .map_err(|e| UiError::internal(e).in_lang(lang))?,
    );
    let alert = visible_decisions(&viewer.claims, alert);
    page(c, &viewer, "alert.html", view::detail(alert, &jobs))
}

/// The jobs the viewer may see: a rule may target another app's namespace than the alert's,
/// and that app's repair is not this viewer's to see (nor does it count as automation here).
fn visible_jobs(claims: &Claims, jobs: Vec<Job>) -> Vec<Job> {
    jobs.into_iter()
        .filter(|j| claims.can_see(&j.target_namespace))
        .collect()
}

/// The alert without the decisions whose target lies in a namespace the viewer cannot see
/// (a target is `namespace/Kind/name`); decisions without a target stay.
pub(super) fn visible_decisions(claims: &Claims, mut alert: AlertRecord) -> AlertRecord {
    alert.decisions.retain(|d| match &d.target {
        Some(t) => claims.can_see(t.split('/').next().unwrap_or_default()),
        None => true,
    });
    alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::ui::{Console, Lang};

    fn viewer(lang: Lang) -> Viewer {
        Viewer {
            claims: Claims {
                sub: "console:ann".into(),
                role: Role::Editor,
                apps: vec!["shop".into()],
                exp: i64::MAX,
                iat: 0,
                nbf: None,
            },
            name: "ann".into(),
            csrf: "csrf-token".into(),
            lang,
            path: "/ui/alerts".into(),
            session: String::new(),
        }
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn both_pages_render_in_both_languages_with_every_word_found() {
        let c = Console::from_settings(&crate::config::Settings::default()).unwrap();
        let claims = viewer(Lang::En).claims;
        for lang in Lang::ALL {
            let v = view::list(&AlertsQuery::default(), &claims, Vec::new(), &[], 50);
            let html = match page(&c, &viewer(lang), "alerts.html", v) {
                Ok(r) => body(r).await,
                Err(e) => panic!("alerts.html in {lang:?}: {e:?}"),
            };
            assert!(html.contains("id=\"page-alerts\""), "{html}");
            let v = view::detail(view::tests::alert(1, "firing", Vec::new()), &[]);
            let html = match page(&c, &viewer(lang), "alert.html", v) {
                Ok(r) => body(r).await,
                Err(e) => panic!("alert.html in {lang:?}: {e:?}"),
            };
            assert!(html.contains("id=\"page-alert\""), "{html}");
        }
    }

    #[test]
    fn an_app_user_sees_neither_another_apps_job_nor_a_decision_targeting_it_on_their_own_alert() {
        use crate::decision::Verdict;
        use crate::job::JobSpec;
        use crate::store::{AlertDecision, AlertState, JobState};
        let job = |id: i64, ns: &str| Job {
            id,
            alert_event_id: 7,
            fingerprint: "fp".into(),
            alertname: "KubePodCrashLooping".into(),
            rule: "crashloop".into(),
            playbook: "restart".into(),
            spec: JobSpec::new("restart"),
            chain_index: 0,
            parent_id: None,
            target_namespace: ns.into(),
            target_kind: "Deployment".into(),
            target_name: "web".into(),
            target_key: format!("{ns}/Deployment/web"),
            dry_run: false,
            timeout_ms: None,
            state: JobState::Queued,
            not_before: 1_000,
            created_at: 1_000,
            started_at: None,
            finished_at: None,
            owner: None,
            outcome: None,
            error: None,
            ttr_ms: None,
        };
        let decision = |target: Option<&str>| AlertDecision {
            rule: Some("crashloop".into()),
            verdict: Verdict::Job,
            reason: "plan".into(),
            target: target.map(Into::into),
            job_id: None,
            sentence: String::new(),
            detail: String::new(),
            decided_at: 950,
            requested_by: None,
        };
        let alert = AlertRecord {
            id: 7,
            fingerprint: "fp".into(),
            status: "firing".into(),
            state: AlertState::Firing,
            alertname: "KubePodCrashLooping".into(),
            namespace: Some("shop".into()),
            severity: None,
            labels: Default::default(),
            annotations: Default::default(),
            starts_at: 500,
            ends_at: None,
            resolved_at: None,
            generator_url: String::new(),
            received_at: 900,
            decisions: vec![
                decision(Some("shop/Deployment/web")),
                decision(Some("billing/Deployment/web")),
                decision(None),
            ],
        };
        let claims = viewer(Lang::En).claims;
        let jobs = visible_jobs(&claims, vec![job(1, "shop"), job(2, "billing")]);
        assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![1]);
        let targets: Vec<_> = visible_decisions(&claims, alert)
            .decisions
            .into_iter()
            .map(|d| d.target)
            .collect();
        assert_eq!(targets, vec![Some("shop/Deployment/web".into()), None]);
    }
}
