//! The inbox, `/ui/inbox`: what waits for a person. Repairs waiting for approval in the
//! viewer's apps with Approve / Reject, the maintenance windows (open, upcoming, recently
//! ended; create one, end one) and the open GitOps holds (release one).
//!
//! Every write takes the same path as its chat or API twin, so the rules and the audit are
//! the same wherever a person clicks:
//! - Approve / Reject decide through [`approval::decide`] as `console:<user>` via `console`:
//!   the job's allow-list, the single conditional transition (two clicks run the job once),
//!   the `approvals` row and the audit row. A viewer's POST is refused (403) and audited.
//! - Windows are created and ended by [`crate::http::maintenance`]'s `create_window` and
//!   `end_window`, holds released by [`crate::http::gitops`]'s `release_hold`: the API's
//!   checks, validation and audit, with the console's route as the audited action.
//!
//! After a write the browser is sent back to the inbox (303, post-redirect-get) and the
//! outcome sentence is shown once in `#inbox-notice`; it travels in a short-lived cookie, not
//! in the URL, so a link cannot make the page claim an outcome that did not happen.

mod view;
mod words;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::session::{console, cookie, secure};
use super::{CsrfForm, Lang, UiError, Viewer, page};
use crate::approval::{self, Choice, Decider};
use crate::http::{ApiError, AppState, gitops, maintenance, respond};
use crate::store;
use view::MaintenanceForm;
use view::{HoldRow, WaitingRow, WindowRow};

/// Templates of this page group.
pub(super) const TEMPLATES: &[(&str, &str)] =
    &[("inbox.html", include_str!("templates/inbox.html"))];

/// Words of this page group: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = words::WORDS;

/// CSS of this page group, appended to /ui/static/console.css.
pub(super) const CSS: &str = include_str!("static/inbox.css");

/// The one-shot outcome of the last write, read and cleared by the next inbox page.
const NOTICE_COOKIE: &str = "aiops_inbox_notice";

/// At most this many waiting repairs on the page (the soonest to expire).
const WAITING_LIMIT: i64 = 200;

/// Routes of this page group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/inbox", get(inbox))
        .route("/ui/repairs/{id}/approve", post(approve))
        .route("/ui/repairs/{id}/reject", post(reject))
        .route("/ui/maintenance", post(create_window))
        .route("/ui/maintenance/{id}/end", post(end_window))
        .route("/ui/gitops/holds/{id}/release", post(release_hold))
}

/// The outcome sentence shown once at the top of the inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// Whether it went as asked (`ok`) or was refused (`bad`): the class, and a word.
    pub ok: bool,
    /// The sentence.
    pub text: String,
}

impl Notice {
    /// As the cookie holds it: `ok:` or `bad:`, then the sentence percent-encoded.
    fn encode(&self) -> String {
        let kind = if self.ok { "ok" } else { "bad" };
        format!(
            "{kind}:{}",
            utf8_percent_encode(&self.text, NON_ALPHANUMERIC)
        )
    }

    /// A cookie's value back into a notice (`None` for anything else).
    fn decode(value: &str) -> Option<Notice> {
        let (kind, text) = value.split_once(':')?;
        let ok = match kind {
            "ok" => true,
            "bad" => false,
            _ => return None,
        };
        let text = percent_decode_str(text).decode_utf8().ok()?.into_owned();
        Some(Notice { ok, text })
    }
}

/// The page's variables.
#[derive(Serialize)]
struct InboxView {
    notice: Option<Notice>,
    can_write: bool,
    /// `None`: an admin (every app; the form takes any namespace).
    apps: Option<Vec<String>>,
    waiting: Vec<WaitingRow>,
    windows: Vec<WindowRow>,
    holds: Vec<HoldRow>,
    form: MaintenanceForm,
}

/// Reads what the viewer sees into the page's view.
async fn build(
    st: &AppState,
    viewer: &Viewer,
    notice: Option<Notice>,
    form: MaintenanceForm,
) -> Result<InboxView, UiError> {
    let claims = &viewer.claims;
    let lang = viewer.lang;
    let internal = |e: store::Error| UiError::internal(e).in_lang(lang);
    let store = st.pipeline.store();
    let waiting = store
        .awaiting_approval(claims.visible_apps(), WAITING_LIMIT)
        .await
        .map_err(internal)?;
    let windows = maintenance::visible_windows(claims, st)
        .await
        .map_err(internal)?;
    let holds = store
        .holds_in(false, claims.visible_apps(), st.max_page)
        .await
        .map_err(internal)?;
    Ok(InboxView {
        notice,
        can_write: claims.can_write(),
        apps: claims.visible_apps().map(<[String]>::to_vec),
        waiting: view::waiting_rows(&waiting, &viewer.approver()),
        windows: view::window_rows(&windows, claims, store::now_ms()),
        holds: view::hold_rows(&holds, claims),
        form,
    })
}

/// `GET /ui/inbox`: the page, with the last write's outcome once.
async fn inbox(
    viewer: Viewer,
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let notice = cookie(&headers, NOTICE_COOKIE).and_then(Notice::decode);
    let view = build(&st, &viewer, notice.clone(), MaintenanceForm::default()).await?;
    let mut resp = page(c, &viewer, "inbox.html", view)?;
    if notice.is_some() {
        let clear = notice_cookie(&st, &headers, "", 0);
        resp.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(resp)
}

/// `Set-Cookie` of the notice (`max_age` 0 deletes it).
fn notice_cookie(st: &AppState, headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    let secure = match st.console.as_deref() {
        Some(c) if secure(c, headers) => "; Secure",
        _ => "",
    };
    HeaderValue::from_str(&format!(
        "{NOTICE_COOKIE}={value}; Path=/ui/inbox; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("a percent-encoded notice is a valid header value")
}

/// Back to the inbox (303), carrying `notice` for it to show once.
fn back_with(st: &AppState, headers: &HeaderMap, notice: &Notice) -> Response {
    let mut resp = Redirect::to("/ui/inbox").into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let v = notice_cookie(st, headers, &notice.encode(), 60);
    resp.headers_mut().insert(header::SET_COOKIE, v);
    resp
}

fn word(lang: Lang, key: &str) -> String {
    lang.word(key).unwrap_or(key).to_string()
}

/// A form without fields of its own (the CSRF token is read by [`CsrfForm`]).
#[derive(Debug, Deserialize)]
struct NoFields {}

async fn approve(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    form: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    decide(st, id, Choice::Approve, headers, form.viewer).await
}

async fn reject(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    form: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    decide(st, id, Choice::Reject, headers, form.viewer).await
}

/// Approve or Reject from the inbox: as a chat click, with the viewer as `console:<name>`.
async fn decide(
    st: AppState,
    id: i64,
    choice: Choice,
    headers: HeaderMap,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let lang = viewer.lang;
    let claims = &viewer.claims;
    let store = st.pipeline.store();
    let action = format!("POST /ui/repairs/{{id}}/{}", choice.as_str());
    // Refusals before any decision are audited as the API's are; a decision audits itself.
    let refuse = async |status: StatusCode| {
        let detail = serde_json::json!({ "error": "refused" });
        respond::audit(
            store,
            claims,
            &action,
            format!("repair {id}"),
            status,
            detail,
        )
        .await;
    };
    if !claims.can_write() {
        refuse(StatusCode::FORBIDDEN).await;
        return Err(UiError::Forbidden {
            message: word(lang, "inbox.viewer_cannot_decide"),
            lang,
        });
    }
    match store.job(id).await {
        Ok(Some(j)) if claims.can_see(&j.target_namespace) => {}
        Ok(_) => {
            refuse(StatusCode::NOT_FOUND).await;
            return Err(UiError::NotFound);
        }
        Err(e) => return Err(UiError::internal(e).in_lang(lang)),
    }
    let by = Decider {
        who: viewer.approver(),
        name: viewer.name.clone(),
        via: "console".into(),
    };
    let outcome = approval::decide(
        store,
        st.pipeline.outbox().map(|o| o.as_ref()),
        &st.pipeline.maintenance().snapshot(),
        id,
        choice,
        &by,
        store::now_ms(),
    )
    .await
    .map_err(|e| UiError::internal(e).in_lang(lang))?;
    let notice = Notice {
        ok: outcome.status() == 200,
        text: outcome.sentence(lang.into()),
    };
    Ok(back_with(&st, &headers, &notice))
}

/// An API refusal as the console answers it: a viewer's write is a 403 page and another
/// app's item a 404 page (as everywhere in the console); anything else is a notice.
fn refusal(e: &ApiError, viewer: &Viewer, conflict_key: &str) -> Result<Notice, UiError> {
    let lang = viewer.lang;
    match e.status() {
        StatusCode::FORBIDDEN if !viewer.claims.can_write() => Err(UiError::Forbidden {
            message: word(lang, "inbox.viewer_cannot_write"),
            lang,
        }),
        StatusCode::NOT_FOUND => Err(UiError::NotFound),
        StatusCode::CONFLICT => Ok(Notice {
            ok: false,
            text: word(lang, conflict_key),
        }),
        _ => Ok(Notice {
            ok: false,
            text: format!("{} {}", word(lang, "inbox.refused"), e.message()),
        }),
    }
}

/// `POST /ui/maintenance`: a new one-off window. A form that does not make a window is
/// answered with the page again (400), the notice saying why and the fields as typed.
async fn create_window(
    State(st): State<AppState>,
    headers: HeaderMap,
    CsrfForm { viewer, form }: CsrfForm<MaintenanceForm>,
) -> Result<Response, UiError> {
    let lang = viewer.lang;
    let spec = match form.spec(store::now_ms()) {
        Ok(spec) => spec,
        Err(e) => {
            let notice = Notice {
                ok: false,
                text: format!("{} {e}", word(lang, "inbox.refused")),
            };
            return again(&st, &viewer, notice, form).await;
        }
    };
    match maintenance::create_window(&viewer.claims, &st, spec, "POST /ui/maintenance").await {
        Ok(w) => {
            let text = format!("{} {}", word(lang, "inbox.created"), w.label());
            Ok(back_with(&st, &headers, &Notice { ok: true, text }))
        }
        Err(e) => {
            let notice = refusal(&e, &viewer, "inbox.refused")?;
            again(&st, &viewer, notice, form).await
        }
    }
}

/// The inbox again, with a refusal and the form as it was posted.
async fn again(
    st: &AppState,
    viewer: &Viewer,
    notice: Notice,
    form: MaintenanceForm,
) -> Result<Response, UiError> {
    let c = console(st)?;
    let view = build(st, viewer, Some(notice), form).await?;
    let mut resp = page(c, viewer, "inbox.html", view)?;
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    Ok(resp)
}

/// `POST /ui/maintenance/{id}/end`: ends a window now.
async fn end_window(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    CsrfForm { viewer, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    let lang = viewer.lang;
    let action = "POST /ui/maintenance/{id}/end";
    let notice = match maintenance::end_window(&viewer.claims, &st, id, action).await {
        Ok(w) => Notice {
            ok: true,
            text: format!("{} {}", word(lang, "inbox.ended"), w.label()),
        },
        Err(e) => refusal(&e, &viewer, "inbox.window_already_ended")?,
    };
    Ok(back_with(&st, &headers, &notice))
}

/// `POST /ui/gitops/holds/{id}/release`: releases a hold as `console:<name>`.
async fn release_hold(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    CsrfForm { viewer, .. }: CsrfForm<NoFields>,
) -> Result<Response, UiError> {
    let lang = viewer.lang;
    let action = "POST /ui/gitops/holds/{id}/release";
    let by = viewer.claims.sub.clone();
    let notice = match gitops::release_hold(&viewer.claims, &st, id, &by, action).await {
        Ok(h) => Notice {
            ok: true,
            text: format!("{} {}", word(lang, "inbox.released"), h.hold.target),
        },
        Err(e) => refusal(&e, &viewer, "inbox.hold_already_released")?,
    };
    Ok(back_with(&st, &headers, &notice))
}

#[cfg(test)]
mod tests;
