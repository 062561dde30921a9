//! Pushes an app's dashboard (the `dashboard.json` of its render) to Grafana through its HTTP
//! API, into a folder of the app's own, with a service-account token.
//!
//! Why the API and not only the ConfigMap the render also makes: the ConfigMap needs Grafana's
//! dashboard sidecar watching the app's namespace, which many Grafanas (managed ones, those
//! outside the cluster) do not have. The API works for any Grafana the daemon can reach.
//!
//! The calls are Grafana's documented ones: `GET /api/folders/{uid}` and `POST /api/folders`
//! (ensure the folder), `GET /api/dashboards/uid/{uid}` (the current version) and
//! `POST /api/dashboards/db` with `overwrite: false` and that version, so an edit made in
//! Grafana meanwhile is reported (412 `version-mismatch`), never overwritten. A dashboard equal
//! to the one Grafana has (ignoring `id` and `version`, which Grafana sets) in the same folder
//! is not sent again: a re-deploy of an unchanged app makes no new version.
//! A dashboard with the app's uid found outside the app's folder is someone else's (a uid like
//! the app's name collides easily): it is reported ([`Error::NotOurs`]), never overwritten or
//! moved.
//!
//! The dashboard stays opaque JSON here: it is the template's, and Grafana's to read.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::secret::Secret;

/// Longest uid Grafana accepts (folders and dashboards).
pub const MAX_UID: usize = 40;

/// Why a push failed. Messages never include the token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Grafana URL or the HTTP client cannot be used.
    #[error("Grafana settings: {0}")]
    Settings(String),
    /// The rendered dashboard is not one Grafana can take (not a JSON object, no uid…).
    #[error("dashboard: {0}")]
    Dashboard(String),
    /// Grafana could not be reached or did not answer in time.
    #[error("Grafana unreachable: {0}")]
    Unreachable(String),
    /// 401/403: the token is wrong, expired, or its service account lacks the permission.
    #[error(
        "Grafana refused the service-account token ({status}) for {action}: check monitoring.grafana.token and the account's role (Editor, or folders:create and dashboards:write)"
    )]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// What was being done.
        action: &'static str,
    },
    /// 412 `version-mismatch`: someone saved the dashboard after it was read.
    #[error(
        "dashboard {uid} was changed in Grafana since version {version} was read ({message}); not overwritten: deploy again to push over it, or keep the edit in the template"
    )]
    VersionMismatch {
        /// The dashboard.
        uid: String,
        /// The version read.
        version: i64,
        /// Grafana's message.
        message: String,
    },
    /// 412 `name-exists`: another dashboard in the folder has this title.
    #[error(
        "another dashboard in folder {folder} is titled {title:?} ({message}); rename one of them"
    )]
    NameExists {
        /// The folder.
        folder: String,
        /// The title.
        title: String,
        /// Grafana's message.
        message: String,
    },
    /// 409 on creating the folder: a folder with its title (or uid) exists that is not ours.
    #[error("cannot create folder {uid} ({title:?}): {message}")]
    FolderConflict {
        /// The folder uid.
        uid: String,
        /// Its title.
        title: String,
        /// Grafana's message.
        message: String,
    },
    /// A dashboard with the app's uid exists outside the app's folder: someone else's (a uid
    /// like the app's name collides easily), so it is neither overwritten nor moved.
    #[error(
        "dashboard {uid} already exists in {} rather than aiops's folder {folder}; not overwritten: move or delete it in Grafana, or give the app's dashboard template another uid",
        their_folder.as_deref().map_or_else(|| "the General folder".to_string(), |f| format!("folder {f}"))
    )]
    NotOurs {
        /// The dashboard.
        uid: String,
        /// The folder it is in (`None`: General).
        their_folder: Option<String>,
        /// The app's folder.
        folder: String,
    },
    /// Any other answer Grafana should not give to these calls.
    #[error("Grafana answered {status} to {action}: {message}")]
    Unexpected {
        /// The status.
        status: u16,
        /// What was being done.
        action: &'static str,
        /// Grafana's message, or what was wrong with the answer.
        message: String,
    },
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Settings(_) => "settings",
            Error::Dashboard(_) => "dashboard",
            Error::Unreachable(_) => "unreachable",
            Error::Unauthorized { .. } => "unauthorized",
            Error::VersionMismatch { .. } => "version_mismatch",
            Error::NameExists { .. } => "name_exists",
            Error::FolderConflict { .. } => "folder_conflict",
            Error::NotOurs { .. } => "not_ours",
            Error::Unexpected { .. } => "unexpected",
        }
    }
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The dashboard did not exist; Grafana made version `version`.
    Created {
        /// The dashboard's uid.
        uid: String,
        /// Its version now.
        version: i64,
        /// Its path in Grafana (`/d/uid/slug`).
        url: String,
    },
    /// It existed and differed; `previous` became `version`.
    Updated {
        /// The dashboard's uid.
        uid: String,
        /// The version it had.
        previous: i64,
        /// Its version now.
        version: i64,
        /// Its path in Grafana.
        url: String,
    },
    /// Grafana already has this dashboard in this folder: nothing was sent.
    Unchanged {
        /// The dashboard's uid.
        uid: String,
        /// Its version, unchanged.
        version: i64,
    },
}

/// Whether the app's folder existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderState {
    /// It was there.
    Existing,
    /// It was created now.
    Created,
}

/// The folder uid of app `app`: `aiops-<app>`, shortened with a hash when that would pass
/// Grafana's 40 characters (app names may have 63). Never the dashboard's uid (the app name):
/// older Grafanas keep folders and dashboards in one table, where a uid is unique across both.
pub fn folder_uid(app: &str) -> String {
    let uid = format!("aiops-{app}");
    if uid.len() <= MAX_UID {
        return uid;
    }
    // FNV-1a 64: stable across releases, so the folder stays the same one.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in app.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let hash = format!("{h:016x}");
    format!("aiops-{}-{}", &app[..MAX_UID - 6 - 1 - 8], &hash[..8])
}

/// What `GET /api/dashboards/uid/{uid}` answers, as far as a push reads it.
#[derive(Deserialize)]
struct Current {
    dashboard: Value,
    #[serde(default)]
    meta: CurrentMeta,
}

#[derive(Default, Deserialize)]
struct CurrentMeta {
    #[serde(default, rename = "folderUid")]
    folder_uid: Option<String>,
}

/// What `POST /api/dashboards/db` answers on success.
#[derive(Deserialize)]
struct Saved {
    version: i64,
    #[serde(default)]
    url: String,
}

/// Grafana's error body.
#[derive(Default, Deserialize)]
struct Refusal {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// A client of one Grafana, with the service-account token it sends as `Bearer`.
#[derive(Clone)]
pub struct Grafana {
    http: reqwest::Client,
    base: reqwest::Url,
    token: Secret,
}

impl std::fmt::Debug for Grafana {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grafana")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish()
    }
}

impl Grafana {
    /// A client of the Grafana at `base_url` (a path prefix such as `/grafana` allowed).
    pub fn new(base_url: &str, token: Secret, timeout: Duration) -> Result<Grafana> {
        let base = reqwest::Url::parse(&format!("{}/", base_url.trim_end_matches('/')))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| Error::Settings(format!("{base_url:?} is not an http(s) URL")))?;
        // No redirects: one could carry the token to another host.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Settings(format!("HTTP client: {e}")))?;
        Ok(Grafana { http, base, token })
    }

    /// From the settings (the token already read from its reference): `None` when no Grafana
    /// is configured.
    pub fn from_settings(s: &crate::config::GrafanaSettings) -> Option<Result<Grafana>> {
        let url = s.url.as_deref()?;
        Some(match &s.resolved_token {
            Some(token) => Grafana::new(url, token.clone(), s.timeout.0),
            None => Err(Error::Settings(
                "monitoring.grafana.url is set but no token (token, token_env or token_file)"
                    .into(),
            )),
        })
    }

    /// Pushes app `app`'s rendered dashboard into its folder (titled `folder_title`, created
    /// when missing), with `message` as the version's note. Idempotent: the same dashboard
    /// again is [`Pushed::Unchanged`].
    pub async fn push_app(
        &self,
        app: &str,
        folder_title: &str,
        dashboard_json: &str,
        message: &str,
    ) -> Result<Pushed> {
        let folder = folder_uid(app);
        self.ensure_folder(&folder, folder_title).await?;
        self.push_dashboard(&folder, dashboard_json, message).await
    }

    /// Makes sure folder `uid` exists (created with `title` if not).
    pub async fn ensure_folder(&self, uid: &str, title: &str) -> Result<FolderState> {
        check_uid(uid, "folder")?;
        let action = "reading the app's folder";
        let resp = self
            .send(self.http.get(self.url(&["api", "folders", uid])), action)
            .await?;
        match resp.status().as_u16() {
            200 => return Ok(FolderState::Existing),
            404 => {}
            _ => return Err(refused(resp, action).await),
        }
        let action = "creating the app's folder";
        let resp = self
            .send(
                self.http
                    .post(self.url(&["api", "folders"]))
                    .json(&json!({"uid": uid, "title": title})),
                action,
            )
            .await?;
        match resp.status().as_u16() {
            200 => Ok(FolderState::Created),
            409 => Err(Error::FolderConflict {
                uid: uid.into(),
                title: title.into(),
                message: refusal(resp).await.message,
            }),
            _ => Err(refused(resp, action).await),
        }
    }

    /// Creates or updates the dashboard `dashboard_json` (its `uid` names it) in folder
    /// `folder`, against the version Grafana has now.
    pub async fn push_dashboard(
        &self,
        folder: &str,
        dashboard_json: &str,
        message: &str,
    ) -> Result<Pushed> {
        let mut dashboard: Value = serde_json::from_str(dashboard_json)
            .map_err(|e| Error::Dashboard(format!("not JSON: {e}")))?;
        let Some(obj) = dashboard.as_object_mut() else {
            return Err(Error::Dashboard("not a JSON object".into()));
        };
        let uid = obj
            .get("uid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Dashboard("it has no uid".into()))?;
        check_uid(&uid, "dashboard")?;
        let title = obj
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Grafana sets these; what the template says of them is not the dashboard's content.
        obj.remove("id");
        obj.remove("version");

        let current = self.current(&uid).await?;
        let previous = match current {
            Some((mut theirs, their_folder)) => {
                if their_folder.as_deref() != Some(folder) {
                    return Err(Error::NotOurs {
                        uid,
                        their_folder,
                        folder: folder.to_string(),
                    });
                }
                let version = theirs.get("version").and_then(Value::as_i64).unwrap_or(0);
                let id = theirs.get("id").cloned().unwrap_or(Value::Null);
                if let Some(t) = theirs.as_object_mut() {
                    t.remove("id");
                    t.remove("version");
                }
                if theirs == dashboard {
                    return Ok(Pushed::Unchanged { uid, version });
                }
                Some((version, id))
            }
            None => None,
        };
        let body = {
            let obj = dashboard.as_object_mut().expect("checked above");
            match &previous {
                Some((version, id)) => {
                    obj.insert("id".into(), id.clone());
                    obj.insert("version".into(), json!(version));
                }
                None => {
                    obj.insert("id".into(), Value::Null);
                }
            }
            json!({
                "dashboard": dashboard,
                "folderUid": folder,
                "overwrite": false,
                "message": message,
            })
        };
        let action = "saving the dashboard";
        let resp = self
            .send(
                self.http
                    .post(self.url(&["api", "dashboards", "db"]))
                    .json(&body),
                action,
            )
            .await?;
        match resp.status().as_u16() {
            200 => {
                let saved: Saved = resp.json().await.map_err(|e| Error::Unexpected {
                    status: 200,
                    action,
                    message: format!("unreadable answer: {}", e.without_url()),
                })?;
                Ok(match previous {
                    Some((previous, _)) => Pushed::Updated {
                        uid,
                        previous,
                        version: saved.version,
                        url: saved.url,
                    },
                    None => Pushed::Created {
                        uid,
                        version: saved.version,
                        url: saved.url,
                    },
                })
            }
            412 => {
                let r = refusal(resp).await;
                Err(match r.status.as_str() {
                    "version-mismatch" => Error::VersionMismatch {
                        uid,
                        version: previous.map_or(0, |(v, _)| v),
                        message: r.message,
                    },
                    "name-exists" => Error::NameExists {
                        folder: folder.into(),
                        title,
                        message: r.message,
                    },
                    other => Error::Unexpected {
                        status: 412,
                        action,
                        message: format!("{other}: {}", r.message),
                    },
                })
            }
            _ => Err(refused(resp, action).await),
        }
    }

    /// The dashboard Grafana has under `uid` and its folder's uid, `None` when it has none.
    async fn current(&self, uid: &str) -> Result<Option<(Value, Option<String>)>> {
        let action = "reading the current dashboard";
        let resp = self
            .send(
                self.http.get(self.url(&["api", "dashboards", "uid", uid])),
                action,
            )
            .await?;
        match resp.status().as_u16() {
            200 => {
                let c: Current = resp.json().await.map_err(|e| Error::Unexpected {
                    status: 200,
                    action,
                    message: format!("unreadable answer: {}", e.without_url()),
                })?;
                Ok(Some((c.dashboard, c.meta.folder_uid)))
            }
            404 => Ok(None),
            _ => Err(refused(resp, action).await),
        }
    }

    /// `base` with `segments` appended, each percent-encoded.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        action: &'static str,
    ) -> Result<reqwest::Response> {
        let resp = req
            .bearer_auth(self.token.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| Error::Unreachable(format!("{action}: {}", e.without_url())))?;
        match resp.status().as_u16() {
            status @ (401 | 403) => Err(Error::Unauthorized { status, action }),
            _ => Ok(resp),
        }
    }
}

/// Grafana's error body (empty when unreadable).
async fn refusal(resp: reqwest::Response) -> Refusal {
    resp.json().await.unwrap_or_default()
}

/// An answer no call here expects.
async fn refused(resp: reqwest::Response, action: &'static str) -> Error {
    let status = resp.status().as_u16();
    let message = refusal(resp).await.message;
    Error::Unexpected {
        status,
        action,
        message,
    }
}

fn check_uid(uid: &str, what: &str) -> Result<()> {
    if uid.is_empty() || uid.len() > MAX_UID {
        return Err(Error::Dashboard(format!(
            "{what} uid {uid:?} must have 1 to {MAX_UID} characters (Grafana's limit)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_uid_fits_grafana_and_differs_from_the_dashboard_uid() {
        assert_eq!(folder_uid("shop"), "aiops-shop");
        let long = "a".repeat(63);
        let uid = folder_uid(&long);
        assert_eq!(uid.len(), MAX_UID, "{uid}");
        assert_ne!(
            uid,
            folder_uid(&"a".repeat(62)),
            "distinct apps, distinct folders"
        );
        assert_eq!(uid, folder_uid(&long), "stable");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let g = Grafana::new(
            "http://grafana.test/",
            Secret::new("glsa_secret-token-value"),
            Duration::from_secs(1),
        )
        .unwrap();
        let shown = format!("{g:?}");
        assert!(!shown.contains("secret-token-value"), "{shown}");
        assert!(Grafana::new("ftp://x", Secret::new("t"), Duration::from_secs(1)).is_err());
    }
}
