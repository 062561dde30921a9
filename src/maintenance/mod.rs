//! Maintenance windows: while one is open, firing alerts it covers are refused with the
//! reason `maintenance` (no job, no action), and when it closes one summary of what it held
//! goes to each route.
//!
//! - this file: the window as written ([`WindowSpec`], from the settings file's `maintenance:`
//!   list or the body of `POST /api/maintenance`), the checked [`Window`] (scope and schedule),
//!   and [`Windows`], the in-memory set the guard reads (no query per alert);
//! - [`schedule`]: one-off and recurring schedules, time zones and daylight saving time;
//! - [`summary`]: the daemon task that refreshes the set and sends each occurrence's summary
//!   once across replicas.
//!
//! Scope: a window covers an alert when every field it gives matches: `namespace` (the
//! repair target's), `app` (the alert's `app` label, else the target's name: the `app` of
//! every message) and `rule` (the rule that matched). At least one is required.

pub mod schedule;
pub mod summary;

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::store::{self, Store, StoredWindow};
pub use schedule::{Occurrence, Schedule};

/// A window that cannot work, in words that name the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// No namespace, app or rule.
    #[error("give at least one of namespace, app and rule: a window must say what it holds")]
    Scope,
    /// A field that must not be empty is.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Not a valid namespace name.
    #[error("namespace: {0}")]
    Namespace(String),
    /// The schedule is wrong.
    #[error(transparent)]
    Schedule(#[from] schedule::Error),
    /// `every` and `cron` both given.
    #[error("give every or cron, not both")]
    EveryAndCron,
    /// A settings window without a name, or two with one name.
    #[error("{0}")]
    Name(String),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A window as written: in the settings file's `maintenance:` list, or as the JSON body of
/// `POST /api/maintenance` (where `created_by` is the token's subject, never the body's).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// A name for people; required in the settings file (it keys the window's summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Hold alerts whose repair target is in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Hold alerts of this app (the `app` label, else the target's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Hold alerts this rule matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// One-off: opens at (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// One-off: closes at (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Recurring, shorthand: `<days> HH:MM` (`sat 02:00`, `mon-fri 22:00`, `daily 03:30`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Recurring: a five-field cron pattern (`0 2 * * SAT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Recurring: how long each occurrence lasts (`2h`), elapsed time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Recurring: the IANA time zone `every`/`cron` are read in (`Asia/Taipei`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Why (shown in refusals and the summary). Required.
    #[serde(default)]
    pub reason: String,
    /// Who set it up (settings: default `settings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Which window: `settings:<name>` or `api:<id>` (the key of its summaries).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// From the settings file, by name.
    Settings(String),
    /// Created through the API, by row id.
    Stored(i64),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Settings(name) => write!(f, "settings:{name}"),
            Key::Stored(id) => write!(f, "api:{id}"),
        }
    }
}

/// What a window holds; every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// The target's namespace.
    pub namespace: Option<String>,
    /// The app (`app` label, else the target's name).
    pub app: Option<String>,
    /// The rule's name.
    pub rule: Option<String>,
}

impl Scope {
    /// Whether an alert with this target namespace, app and rule is covered.
    pub fn covers(&self, namespace: &str, app: &str, rule: &str) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.namespace, namespace) && ok(&self.app, app) && ok(&self.rule, rule)
    }

    /// `namespace=shop app=web`, for messages.
    pub fn describe(&self) -> String {
        [
            ("namespace", &self.namespace),
            ("app", &self.app),
            ("rule", &self.rule),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// A checked window.
#[derive(Clone, Debug)]
pub struct Window {
    /// Its key.
    pub key: Key,
    /// As written (stored windows: rebuilt from their row), for listings.
    pub spec: WindowSpec,
    /// What it holds.
    pub scope: Scope,
    /// When it is open.
    pub schedule: Schedule,
    /// When it was created (epoch ms); None for settings windows.
    pub created_at: Option<i64>,
    /// Ended early through the API at (epoch ms): nothing is open from then on.
    pub ended_at: Option<i64>,
}

fn non_empty(field: &'static str, v: &Option<String>) -> Result<Option<String>> {
    match v.as_deref().map(str::trim) {
        Some("") => Err(Error::Empty(field)),
        other => Ok(other.map(str::to_string)),
    }
}

impl Window {
    /// Checks a spec: scope, schedule, reason.
    pub fn compile(key: Key, spec: &WindowSpec) -> Result<Window> {
        let scope = Scope {
            namespace: non_empty("namespace", &spec.namespace)?,
            app: non_empty("app", &spec.app)?,
            rule: non_empty("rule", &spec.rule)?,
        };
        if scope == Scope::default() {
            return Err(Error::Scope);
        }
        if let Some(ns) = &scope.namespace {
            crate::k8s_name::namespace(ns).map_err(|e| Error::Namespace(format!("{ns:?} {e}")))?;
        }
        if spec.reason.trim().is_empty() {
            return Err(Error::Empty("reason"));
        }
        let once = (&spec.start, &spec.end);
        let recurring = spec.every.is_some()
            || spec.cron.is_some()
            || spec.duration.is_some()
            || spec.timezone.is_some();
        let schedule = match (once, recurring) {
            ((Some(start), Some(end)), false) => Schedule::once(start, end)?,
            ((None, None), true) => {
                let pattern = match (&spec.every, &spec.cron) {
                    (Some(_), Some(_)) => return Err(Error::EveryAndCron),
                    (Some(every), None) => schedule::every_to_cron(every)?,
                    (None, Some(cron)) => cron.clone(),
                    (None, None) => return Err(schedule::Error::Shape.into()),
                };
                let duration = spec
                    .duration
                    .as_deref()
                    .ok_or_else(|| schedule::Error::Duration("required".into()))?;
                let duration =
                    crate::duration::parse_duration(duration).map_err(schedule::Error::Duration)?;
                let timezone = spec.timezone.as_deref().ok_or_else(|| {
                    schedule::Error::TimeZone("(missing: give one, such as UTC)".into())
                })?;
                Schedule::recurring(&pattern, timezone, store::ms(duration))?
            }
            _ => return Err(schedule::Error::Shape.into()),
        };
        Ok(Window {
            key,
            spec: spec.clone(),
            scope,
            schedule,
            created_at: None,
            ended_at: None,
        })
    }

    /// A stored window, checked again (a time zone may have left the database since).
    pub fn from_stored(w: &StoredWindow) -> Result<Window> {
        let mut window = Window::compile(Key::Stored(w.id), &spec_of(w))?;
        window.created_at = Some(w.created_at);
        window.ended_at = w.ended_at;
        Ok(window)
    }

    /// A short name for people: the window's name, else `#<id>`.
    pub fn label(&self) -> String {
        match (&self.spec.name, &self.key) {
            (Some(name), _) => name.clone(),
            (None, Key::Stored(id)) => format!("#{id}"),
            (None, Key::Settings(name)) => name.clone(),
        }
    }

    /// The occurrence open at `now`, cut short where the window was ended.
    pub fn active_at(&self, now: i64) -> Option<Occurrence> {
        if self.ended_at.is_some_and(|e| e <= now) {
            return None;
        }
        self.schedule.active_at(now)
    }

    /// The next occurrence that opens after `now`, unless the window was ended.
    pub fn next_after(&self, now: i64) -> Option<Occurrence> {
        if self.ended_at.is_some() {
            return None;
        }
        self.schedule.next_after(now)
    }

    /// The occurrences that closed in `(from, to]`, oldest first: an occurrence ended early
    /// closes when it was ended.
    pub fn ended_between(&self, from: i64, to: i64) -> Vec<Occurrence> {
        let Some(ended) = self.ended_at else {
            return self.schedule.ended_between(from, to);
        };
        let mut out = self.schedule.ended_between(from, to.min(ended));
        if let Some(cut) = self.schedule.active_at(ended).filter(|o| o.start < ended)
            && from < ended
            && ended <= to
        {
            out.push(Occurrence {
                start: cut.start,
                end: ended,
            });
        }
        out
    }
}

/// The spec a stored row was created from.
fn spec_of(w: &StoredWindow) -> WindowSpec {
    let time = |ms: Option<i64>| ms.and_then(store::rfc3339::format);
    WindowSpec {
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        app: w.app.clone(),
        rule: w.rule.clone(),
        start: time(w.starts_at),
        end: time(w.ends_at),
        every: w.every.clone(),
        cron: w.cron.clone(),
        duration: w.duration_ms.map(schedule::human_ms),
        timezone: w.timezone.clone(),
        reason: w.reason.clone(),
        created_by: Some(w.created_by.clone()),
    }
}

/// The row to store for a window checked by [`Window::compile`].
pub fn stored_of(window: &Window, created_by: &str, now: i64) -> StoredWindow {
    let s = &window.spec;
    let (starts_at, ends_at, duration_ms, until_at) = match &window.schedule {
        Schedule::Once(o) => (Some(o.start), Some(o.end), None, Some(o.end)),
        Schedule::Recurring { duration_ms, .. } => (None, None, Some(*duration_ms), None),
    };
    StoredWindow {
        id: 0,
        name: s.name.clone(),
        namespace: window.scope.namespace.clone(),
        app: window.scope.app.clone(),
        rule: window.scope.rule.clone(),
        starts_at,
        ends_at,
        every: s.every.clone(),
        cron: s.cron.clone(),
        duration_ms,
        timezone: s.timezone.clone(),
        reason: s.reason.trim().to_string(),
        created_by: created_by.to_string(),
        created_at: now,
        ended_at: None,
        ended_by: None,
        until_at,
    }
}

/// Checks the settings file's `maintenance:` list: each window, and unique names. The
/// message names the entry (`maintenance[2] (db-upgrade): …`).
pub fn from_settings(specs: &[WindowSpec]) -> std::result::Result<Vec<Window>, String> {
    let mut out: Vec<Window> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = |e: &dyn std::fmt::Display| match &spec.name {
            Some(n) => format!("maintenance[{i}] ({n}): {e}"),
            None => format!("maintenance[{i}]: {e}"),
        };
        let name = match spec.name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                return Err(at(&Error::Name(
                    "name is required: it keys the window's summaries across restarts".into(),
                )));
            }
        };
        if out.iter().any(|w| w.key == Key::Settings(name.clone())) {
            return Err(at(&Error::Name(format!(
                "another window is already named {name:?}"
            ))));
        }
        let mut spec = spec.clone();
        spec.created_by.get_or_insert_with(|| "settings".into());
        out.push(Window::compile(Key::Settings(name), &spec).map_err(|e| at(&e))?);
    }
    Ok(out)
}

/// Why an alert is held: the window and its open occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The window's key.
    pub key: Key,
    /// The refusal's words: which window, why, until when.
    pub detail: String,
    /// The window's label, for messages that name it.
    pub label: String,
    /// When the open occurrence ends (epoch ms): a repair it holds may run from then.
    pub until: i64,
}

/// The windows the guard reads, shared by the intake, the API and the summary task: the
/// settings file's (fixed) and the stored ones (reloaded by [`Windows::refresh`], at once on
/// this replica after an API change, every `maintenance_refresh` on every replica).
#[derive(Clone, Debug, Default)]
pub struct Windows {
    settings: Arc<Vec<Window>>,
    stored: Arc<RwLock<Arc<Vec<Window>>>>,
}

/// How far back stored windows are kept in memory after they closed: the summary task still
/// reports their last occurrence (see [`summary::LOOKBACK_MS`]).
fn keep_since(now: i64) -> i64 {
    now - summary::LOOKBACK_MS
}

impl Windows {
    /// The set with the settings file's windows and no stored ones yet.
    pub fn new(settings: Vec<Window>) -> Windows {
        Windows {
            settings: Arc::new(settings),
            stored: Arc::default(),
        }
    }

    /// Reloads the stored windows. A row that no longer checks (say, a time zone renamed in
    /// the system's database) is skipped with an error in the log; the others stay in force.
    pub async fn refresh(&self, store: &Store) -> store::Result<()> {
        self.refresh_at(store, store::now_ms()).await
    }

    /// [`Windows::refresh`] as of `now`: `aiops replay` reloads the windows of its scratch
    /// store (the stored windows as they were) at each replayed alert's time.
    pub async fn refresh_at(&self, store: &Store, now: i64) -> store::Result<()> {
        let rows = store.maintenance_windows(keep_since(now)).await?;
        let windows = rows
            .iter()
            .filter_map(|w| match Window::from_stored(w) {
                Ok(window) => Some(window),
                Err(e) => {
                    tracing::error!(window = w.id, error = %e, "stored maintenance window no longer valid; ignored");
                    None
                }
            })
            .collect();
        *self
            .stored
            .write()
            .expect("maintenance lock is never poisoned") = Arc::new(windows);
        Ok(())
    }

    /// Every window: the settings file's, then the stored ones.
    pub fn all(&self) -> Vec<Window> {
        let stored = self
            .stored
            .read()
            .expect("maintenance lock is never poisoned")
            .clone();
        self.settings.iter().chain(stored.iter()).cloned().collect()
    }

    /// The windows as they are now, for one webhook's decisions.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            settings: self.settings.clone(),
            stored: self
                .stored
                .read()
                .expect("maintenance lock is never poisoned")
                .clone(),
        }
    }
}

/// The windows one webhook decides with (two `Arc` clones, no copy).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    settings: Arc<Vec<Window>>,
    stored: Arc<Vec<Window>>,
}

impl Snapshot {
    /// The first window open at `now` that covers this target namespace, app and rule.
    pub fn holding(&self, namespace: &str, app: &str, rule: &str, now: i64) -> Option<Hold> {
        self.settings
            .iter()
            .chain(self.stored.iter())
            .find_map(|w| {
                if !w.scope.covers(namespace, app, rule) {
                    return None;
                }
                let open = w.active_at(now)?;
                let until = store::rfc3339::format(open.end).unwrap_or_default();
                Some(Hold {
                    key: w.key.clone(),
                    label: w.label(),
                    until: open.end,
                    detail: format!(
                        "maintenance window {} ({}) until {until}: {}",
                        w.label(),
                        w.scope.describe(),
                        w.spec.reason.trim()
                    ),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> WindowSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_window_covers_an_alert_only_when_every_field_it_gives_matches() {
        let s = Scope {
            namespace: Some("shop".into()),
            app: None,
            rule: Some("restart".into()),
        };
        assert!(s.covers("shop", "web", "restart"));
        assert!(!s.covers("shop", "web", "rollback"));
        assert!(!s.covers("blog", "web", "restart"));
        assert_eq!(s.describe(), "namespace=shop rule=restart");
    }

    #[test]
    fn settings_windows_need_a_unique_name_a_scope_and_a_reason() {
        let ok = spec(
            "{name: a, namespace: shop, start: '2026-12-01T00:00:00Z', end: '2026-12-01T01:00:00Z', reason: upgrade}",
        );
        assert!(from_settings(std::slice::from_ref(&ok)).is_ok());
        let err = from_settings(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(
            err.starts_with("maintenance[1] (a): another window"),
            "{err}"
        );
        let mut unnamed = ok.clone();
        unnamed.name = None;
        assert!(
            from_settings(&[unnamed])
                .unwrap_err()
                .contains("name is required")
        );
        let mut no_scope = ok.clone();
        no_scope.namespace = None;
        assert_eq!(
            from_settings(&[no_scope]).unwrap_err(),
            format!("maintenance[0] (a): {}", Error::Scope)
        );
        let mut no_reason = ok.clone();
        no_reason.reason = " ".into();
        assert!(
            from_settings(&[no_reason])
                .unwrap_err()
                .contains("reason must not be empty")
        );
        let bad_ns = spec(
            "{name: b, namespace: Shop_1, every: sat 02:00, duration: 2h, timezone: UTC, reason: x}",
        );
        assert!(from_settings(&[bad_ns]).unwrap_err().contains("namespace:"));
    }

    #[test]
    fn a_bad_window_in_the_settings_file_stops_the_start_naming_the_entry() {
        let text = "maintenance:\n  - {name: db, namespace: shop, every: sat 02:00, duration: 2h, timezone: Asia/Taipe, reason: x}\n";
        let err =
            crate::config::Settings::parse_with(text, std::path::Path::new("a.yaml"), |_| None)
                .unwrap_err()
                .to_string();
        assert_eq!(
            err,
            "maintenance[0] (db): timezone: \"Asia/Taipe\" is not a known IANA time zone (Asia/Taipei, Europe/Berlin, UTC)"
        );
        let typo = "maintenance:\n  - {name: db, namespce: shop}\n";
        let err =
            crate::config::Settings::parse_with(typo, std::path::Path::new("a.yaml"), |_| None)
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("a.yaml:2:") && err.contains("namespce"),
            "{err}"
        );
    }

    #[test]
    fn a_window_is_one_off_or_recurring_never_both_nor_half() {
        let both = spec(
            "{rule: r, start: '2026-12-01T00:00:00Z', end: '2026-12-01T01:00:00Z', every: sat 02:00, duration: 1h, timezone: UTC, reason: x}",
        );
        assert!(matches!(
            Window::compile(Key::Stored(1), &both),
            Err(Error::Schedule(schedule::Error::Shape))
        ));
        let half = spec("{rule: r, start: '2026-12-01T00:00:00Z', reason: x}");
        assert!(Window::compile(Key::Stored(1), &half).is_err());
        let no_tz = spec("{rule: r, every: sat 02:00, duration: 1h, reason: x}");
        assert!(matches!(
            Window::compile(Key::Stored(1), &no_tz),
            Err(Error::Schedule(schedule::Error::TimeZone(_)))
        ));
        let twice = spec(
            "{rule: r, every: sat 02:00, cron: '0 2 * * 6', duration: 1h, timezone: UTC, reason: x}",
        );
        assert_eq!(
            Window::compile(Key::Stored(1), &twice).unwrap_err(),
            Error::EveryAndCron
        );
        let unknown: Result<WindowSpec, _> = serde_yaml::from_str("{rule: r, namespce: x}");
        assert!(unknown.is_err(), "unknown fields are errors");
    }

    #[test]
    fn a_window_ended_early_closes_its_open_occurrence_then_and_opens_no_more() {
        let s = spec("{rule: r, cron: '0 * * * *', duration: 30m, timezone: UTC, reason: x}");
        let mut w = Window::compile(Key::Stored(7), &s).unwrap();
        let t = |s: &str| schedule::parse_time("t", s).unwrap();
        w.ended_at = Some(t("2026-12-01T01:10:00Z"));
        assert_eq!(
            w.active_at(t("2026-12-01T01:05:00Z")).map(|o| o.start),
            Some(t("2026-12-01T01:00:00Z"))
        );
        assert_eq!(w.active_at(t("2026-12-01T01:15:00Z")), None);
        assert_eq!(w.active_at(t("2026-12-01T02:05:00Z")), None);
        assert_eq!(w.next_after(t("2026-12-01T01:15:00Z")), None);
        let ended = w.ended_between(t("2026-12-01T00:20:00Z"), t("2026-12-01T03:00:00Z"));
        assert_eq!(
            ended,
            vec![
                Occurrence {
                    start: t("2026-12-01T00:00:00Z"),
                    end: t("2026-12-01T00:30:00Z")
                },
                Occurrence {
                    start: t("2026-12-01T01:00:00Z"),
                    end: t("2026-12-01T01:10:00Z")
                },
            ]
        );
    }

    #[test]
    fn the_hold_names_the_first_open_window_that_covers_the_alert() {
        let t = |s: &str| schedule::parse_time("t", s).unwrap();
        let windows = Windows::new(
            from_settings(&[
                spec("{name: later, namespace: shop, start: '2026-12-02T00:00:00Z', end: '2026-12-02T01:00:00Z', reason: later}"),
                spec("{name: now, app: web, start: '2026-12-01T00:00:00Z', end: '2026-12-01T01:00:00Z', reason: db upgrade}"),
            ])
            .unwrap(),
        );
        let snap = windows.snapshot();
        let hold = snap
            .holding("shop", "web", "restart", t("2026-12-01T00:30:00Z"))
            .unwrap();
        assert_eq!(hold.key, Key::Settings("now".into()));
        assert_eq!(
            hold.detail,
            "maintenance window now (app=web) until 2026-12-01T01:00:00.000Z: db upgrade"
        );
        assert_eq!(
            snap.holding("shop", "api", "restart", t("2026-12-01T00:30:00Z")),
            None
        );
        assert_eq!(
            snap.holding("shop", "web", "restart", t("2026-12-01T01:00:00Z")),
            None
        );
    }
}
