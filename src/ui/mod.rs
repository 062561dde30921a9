//! The web console under `/ui`: server-rendered pages for people (see docs/console.md).
//!
//! Pages are HTML rendered here with minijinja (auto-escaped, as every `.html` template is),
//! with a little progressive-enhancement JavaScript served from the binary: no separate server,
//! no build step, no CDN. Everything a page shows comes from the store through the same access
//! rules as `/api`: a signed-in user is a [`Claims`] (role and apps), so another app's item is
//! invisible and answers 404 exactly as a missing one does.
//!
//! - [`session`]: the session cookie, the signed-in [`Viewer`], the language, CSRF-checked forms.
//! - `login`: sign-in, sign-out and their rate limit; `password`: argon2id hashes.
//! - One module per page group: `alerts` (the alert center), `repairs` (timelines), `catalog`
//!   (rules, playbooks and their evidence), `inbox` (approvals, maintenance, GitOps holds),
//!   `apps`. Each gives its routes, its templates ([`TEMPLATES`]), its words in both languages
//!   ([`i18n`]) and its CSS, so that no two page groups share a file.

pub mod i18n;
pub mod session;

mod alerts;
mod apps;
mod assets;
mod catalog;
mod inbox;
mod login;
pub mod password;
mod render;
mod repairs;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use minijinja::Environment;

use crate::auth::Claims;
use crate::config::{SecureCookie, Settings};
use crate::http::AppState;
pub use i18n::Lang;
pub use render::{UiError, page};
pub use session::{CsrfForm, Viewer};

/// Every template: name (the file's, `*.html` so that it is auto-escaped) and source.
const TEMPLATES: &[&[(&str, &str)]] = &[
    render::TEMPLATES,
    login::TEMPLATES,
    alerts::TEMPLATES,
    repairs::TEMPLATES,
    catalog::TEMPLATES,
    inbox::TEMPLATES,
    apps::TEMPLATES,
];

/// The console's compiled templates and settings; one per daemon, shared by every request.
pub struct Console {
    env: Environment<'static>,
    /// Language of a browser that has not chosen one (`notify.language`).
    pub default_lang: Lang,
    /// How long a sign-in lasts.
    pub session_ttl: std::time::Duration,
    /// When the session cookie says `Secure`.
    pub secure_cookie: SecureCookie,
    /// Whether `external_url` is https (then `auto` means Secure).
    pub external_https: bool,
    /// The browser `Origin` of `external_url` (`scheme://host[:port]`), which a form posted
    /// through a proxy that rewrites `Host` carries.
    pub external_origin: Option<String>,
    /// Failed sign-ins per user name (set by `login`).
    pub(crate) logins: login::Limiter,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// Compiles every template; `None` when `ui.enabled` is off.
    ///
    /// A template that does not compile is a bug of this binary, found by the tests, so it
    /// panics with the template's name rather than being reported to the operator.
    pub fn from_settings(settings: &Settings) -> Option<Arc<Console>> {
        if !settings.ui.enabled {
            return None;
        }
        let mut env = Environment::new();
        for (name, source) in TEMPLATES.iter().flat_map(|t| t.iter()) {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("console template {name}: {e:#}"));
        }
        i18n::install(&mut env);
        render::install(&mut env);
        Some(Arc::new(Console {
            env,
            default_lang: Lang::from(settings.notify.language),
            session_ttl: settings.ui.session_ttl.0,
            secure_cookie: settings.ui.secure_cookie,
            external_https: settings
                .external_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
            external_origin: settings
                .external_url
                .as_deref()
                .and_then(|u| reqwest::Url::parse(u).ok())
                .map(|u| u.origin().ascii_serialization()),
            logins: login::Limiter::default(),
        }))
    }

    /// The template environment (pages render through [`page`]).
    pub(crate) fn env(&self) -> &Environment<'static> {
        &self.env
    }
}

/// The `/ui` routes, with the console's security headers on every answer. Without a console
/// (`ui.enabled: false`) there are none, and `/ui` paths answer 404 like any unknown path.
pub fn routes(state: &AppState) -> Router<AppState> {
    if state.console.is_none() {
        return Router::new();
    }
    Router::new()
        .route(
            "/ui",
            axum::routing::get(|| async { axum::response::Redirect::to("/ui/alerts") }),
        )
        .merge(session::routes())
        .merge(login::routes())
        .merge(assets::routes())
        .merge(alerts::routes())
        .merge(repairs::routes())
        .merge(catalog::routes())
        .merge(inbox::routes())
        .merge(apps::routes())
        .layer(axum::middleware::map_response(security_headers))
}

/// What every console answer says about itself: no framing (clickjacking), scripts and styles
/// only from the binary (so an injected tag would not run), no MIME sniffing, no referrer to
/// other sites, and no caching of pages (they show what one user may see).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// A signed-in user's claims, for the access checks shared with `/api`.
pub fn claims(viewer: &Viewer) -> &Claims {
    &viewer.claims
}
