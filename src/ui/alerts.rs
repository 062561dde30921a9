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
use crate::http::AppState;
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
    let jobs = store
        .jobs_of_alerts(&ids)
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?;
    let view = view::list(&q, &viewer.claims, alerts, &jobs, PAGE as usize);
    page(c, &viewer, "alerts.html", view)
}

/// `/ui/alerts/{id}`: one alert; 404 when it is missing or belongs to an app the viewer
/// cannot see.
async fn one(
    viewer: Viewer,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let lang = viewer.lang;
    let store = st.pipeline.store();
    let alert = store
        .alert(id)
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?
        .filter(|a| viewer.claims.can_see_item(a.namespace.as_deref()))
        .ok_or(UiError::NotFound)?;
    let jobs = store
        .jobs_of_alerts(&[alert.id])
        .await
        .map_err(|e| UiError::internal(e).in_lang(lang))?;
    page(c, &viewer, "alert.html", view::detail(alert, &jobs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Claims, Role};
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
}
