//! Rendering a page: the layout every page extends, what every page's context holds, and the
//! console's errors as pages.
//!
//! A page handler builds a typed view (a `Serialize` struct) and calls [`page`]; the template
//! `extends "layout.html"` and fills `title` and `content`. Every context also has `lang`
//! (which `t()` reads), `langs` (the switcher), `user` (`name`, `role`), `csrf` (for forms) and
//! `path` (this page, for the switcher to come back to).

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::Environment;
use serde::Serialize;

use super::{Console, Lang, Viewer};

/// Templates of this module.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("error.html", include_str!("templates/error.html")),
];

/// A language in the switcher.
#[derive(Serialize)]
struct LangLink {
    code: &'static str,
    name: &'static str,
    current: bool,
}

fn langs(current: Lang) -> Vec<LangLink> {
    Lang::ALL
        .into_iter()
        .map(|l| LangLink {
            code: l.code(),
            name: l.native_name(),
            current: l == current,
        })
        .collect()
}

/// The signed-in user, as the layout shows them.
#[derive(Serialize)]
struct UserView<'a> {
    name: &'a str,
    role: &'static str,
}

/// A serializable value as a template value.
fn ser(v: impl Serialize) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// Renders `template` for `viewer` with `view` (the page's own variables).
pub fn page(
    c: &Console,
    viewer: &Viewer,
    template: &str,
    view: impl Serialize,
) -> Result<Response, UiError> {
    let ctx = minijinja::context! {
        lang => viewer.lang.code(),
        langs => ser(langs(viewer.lang)),
        user => ser(UserView { name: &viewer.name, role: viewer.claims.role.as_str() }),
        csrf => &viewer.csrf,
        path => &viewer.path,
        ..ser(&view)
    };
    render(c.env(), template, ctx, viewer.lang)
}

/// Renders `template` for a visitor who is not signed in (the login page).
pub fn anonymous_page(
    c: &Console,
    lang: Lang,
    path: &str,
    template: &str,
    view: impl Serialize,
) -> Result<Response, UiError> {
    let ctx = minijinja::context! {
        lang => lang.code(),
        langs => ser(langs(lang)),
        path => path,
        ..ser(&view)
    };
    render(c.env(), template, ctx, lang)
}

fn render(
    env: &Environment<'static>,
    template: &str,
    ctx: minijinja::Value,
    lang: Lang,
) -> Result<Response, UiError> {
    let html = env
        .get_template(template)
        .and_then(|t| t.render(ctx))
        .map_err(|e| {
            // A template error is a bug of this binary; the page says only that it failed.
            tracing::error!(template, error = %format!("{e:#}"), "console page failed to render");
            UiError::Internal { lang }
        })?;
    Ok(Html(html).into_response())
}

/// Filters every template may use.
pub(super) fn install(env: &mut Environment<'static>) {
    env.add_filter("datetime", datetime);
    env.add_filter("duration_ms", duration_ms);
}

/// Epoch milliseconds as `2026-11-30 17:08:53 UTC` (the page's script shows it in the
/// browser's time zone when it can; the server does not know it).
pub fn datetime(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// Milliseconds as a short duration: `850ms`, `42s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Why a console request was not answered with its page. Each becomes a page in the
/// request's language (or, for [`UiError::SignIn`], a redirect to the login page).
#[derive(Debug)]
pub enum UiError {
    /// Not signed in (or the session ended): go to the login page, then come back to `next`.
    SignIn {
        /// This request's path and query.
        next: String,
        /// The page language.
        lang: Lang,
    },
    /// Missing, or another app's (never told apart).
    NotFound,
    /// Signed in, but the role does not allow it.
    Forbidden {
        /// What is not allowed, in the page language.
        message: String,
        /// The page language.
        lang: Lang,
    },
    /// A form or query that cannot be read.
    BadRequest {
        /// What is wrong.
        message: String,
        /// The page language.
        lang: Lang,
    },
    /// A form without this session's CSRF token, or from another origin.
    Csrf {
        /// The page language.
        lang: Lang,
    },
    /// Too many failed sign-ins: try again after this many seconds.
    Throttled {
        /// Seconds to wait.
        retry_after: u64,
        /// The page language.
        lang: Lang,
    },
    /// The store failed (logged; the page says only that).
    Internal {
        /// The page language.
        lang: Lang,
    },
}

impl UiError {
    /// A store (or other internal) error: logged here, shown as a plain failure.
    pub fn internal(e: impl std::fmt::Display) -> UiError {
        tracing::error!(error = %e, "console request failed");
        UiError::Internal {
            lang: Lang::default(),
        }
    }

    /// The same error in language `lang`.
    pub fn in_lang(self, lang: Lang) -> UiError {
        match self {
            UiError::Internal { .. } => UiError::Internal { lang },
            other => other,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            UiError::SignIn { .. } => StatusCode::SEE_OTHER,
            UiError::NotFound => StatusCode::NOT_FOUND,
            UiError::Forbidden { .. } | UiError::Csrf { .. } => StatusCode::FORBIDDEN,
            UiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            UiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            UiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The error page's variables.
#[derive(Serialize)]
struct ErrorView<'a> {
    lang: &'static str,
    title: &'static str,
    detail: &'a str,
    back: &'static str,
}

/// The error page: a template of its own, compiled once, needing no state (an error can come
/// from an extractor, before any handler has the console).
static ERROR_ENV: std::sync::LazyLock<Environment<'static>> = std::sync::LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_template("error.html", include_str!("templates/error.html"))
        .expect("the error page compiles");
    env
});

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (lang, title_key, detail) = match &self {
            UiError::SignIn { next, .. } => {
                let to = format!(
                    "/ui/login?next={}",
                    percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
                );
                let mut r = Redirect::to(&to).into_response();
                *r.status_mut() = StatusCode::SEE_OTHER;
                return r;
            }
            UiError::NotFound => (
                Lang::default(),
                "common.error.not_found",
                Lang::default()
                    .word("common.error.not_found.detail")
                    .unwrap_or_default()
                    .to_string(),
            ),
            UiError::Forbidden { message, lang } => {
                (*lang, "common.error.forbidden", message.clone())
            }
            UiError::BadRequest { message, lang } => {
                (*lang, "common.error.bad_request", message.clone())
            }
            UiError::Csrf { lang } => (
                *lang,
                "common.error.csrf",
                lang.word("common.error.csrf.detail")
                    .unwrap_or_default()
                    .to_string(),
            ),
            UiError::Throttled { retry_after, lang } => {
                (*lang, "common.error.throttled", format!("{retry_after} s"))
            }
            UiError::Internal { lang } => (
                *lang,
                "common.error.internal",
                lang.word("common.error.internal.detail")
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        let view = ErrorView {
            lang: lang.code(),
            title: lang.word(title_key).unwrap_or(title_key),
            detail: &detail,
            back: lang.word("common.back").unwrap_or("Back"),
        };
        let html = ERROR_ENV
            .get_template("error.html")
            .and_then(|t| t.render(ser(&view)))
            .unwrap_or_else(|_| "error".into());
        let mut resp = (status, Html(html)).into_response();
        if let UiError::Throttled { retry_after, .. } = self
            && let Ok(v) = retry_after.to_string().parse()
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_way_people_say_them() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(42_000), "42s");
        assert_eq!(duration_ms(200_000), "3m 20s");
        assert_eq!(duration_ms(7_500_000), "2h 5m");
        assert_eq!(duration_ms(273_600_000), "3d 4h");
        assert_eq!(duration_ms(-5), "0ms");
    }

    #[test]
    fn times_are_shown_in_utc_with_the_zone_named() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00 UTC");
    }
}
