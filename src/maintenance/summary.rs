//! The daemon's maintenance task: every `maintenance_refresh` it reloads the stored windows
//! (so replicas see a window another replica created within that time) and, for each
//! occurrence that closed, enqueues its summary once.
//!
//! Once across replicas: the summary's transaction first inserts the occurrence's row in
//! `maintenance_summaries` (primary key window and start); a replica that loses the race
//! inserts nothing and rolls back, having enqueued nothing. An occurrence that held no alert
//! is recorded and sends nothing: a window that held nothing has nothing to report, and a
//! weekly window would otherwise say so every week.
//!
//! One message per route: the held alerts are grouped by the channels their labels route
//! `maintenance_summary` to (and their namespace, for the channels of apps registered there),
//! and each group is one event listing its alerts, routed by the labels of its first alert,
//! which route to exactly that group's channels.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{Occurrence, Schedule, Window, Windows};
use crate::notify::route::Router;
use crate::notify::{Event, EventKind, HeldGroup, MAX_GROUPED_ALERTS, MaintenanceReport, Outbox};
use crate::store::{self, HeldAlert, Store};

/// How long after it closed an occurrence is still summarised: a daemon down (every replica)
/// for longer skips the summaries of what closed meanwhile.
pub const LOOKBACK_MS: i64 = 24 * 3_600_000;

/// How long after an occurrence closes its summary waits: an intake transaction that decided
/// just before the end has committed by then.
pub const GRACE_MS: i64 = 2_000;

/// The task's state: which occurrences this process already knows are summarised, so each
/// costs one transaction per process, not one per tick.
pub struct Summaries {
    windows: Windows,
    store: Store,
    outbox: Arc<Outbox>,
    router: Router,
    done: HashSet<(String, i64)>,
}

impl Summaries {
    /// Over the shared window set; `router` is built from the same notify settings as the
    /// outbox (it tells which channels each held alert routes to).
    pub fn new(windows: Windows, store: Store, outbox: Arc<Outbox>, router: Router) -> Summaries {
        Summaries {
            windows,
            store,
            outbox,
            router,
            done: HashSet::new(),
        }
    }

    /// Runs until aborted: refresh, then summaries, every `every` (the first at once).
    pub fn spawn(mut self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.windows.refresh(&self.store).await {
                    tracing::warn!(error = %e, "could not reload maintenance windows; keeping the ones loaded");
                }
                if let Err(e) = self.send_due(store::now_ms()).await {
                    tracing::warn!(error = %e, "maintenance summaries failed; retrying at the next tick");
                }
            }
        })
    }

    /// Enqueues the summary of every occurrence that closed in the lookback and has none yet.
    /// Returns how many messages were enqueued.
    pub async fn send_due(&mut self, now: i64) -> store::Result<usize> {
        let mut enqueued = 0;
        for window in self.windows.all() {
            let key = window.key.to_string();
            for occ in window.ended_between(now - LOOKBACK_MS, now - GRACE_MS) {
                if self.done.contains(&(key.clone(), occ.start)) {
                    continue;
                }
                enqueued += self.summarise(&window, &key, occ, now).await?;
                self.done.insert((key.clone(), occ.start));
            }
        }
        // Occurrences older than the lookback are never looked at again.
        self.done
            .retain(|(_, start)| *start > now - 2 * LOOKBACK_MS);
        if enqueued > 0 {
            self.outbox.wake();
        }
        Ok(enqueued)
    }

    async fn summarise(
        &self,
        window: &Window,
        key: &str,
        occ: Occurrence,
        now: i64,
    ) -> store::Result<usize> {
        let mut tx = self.store.begin_write().await?;
        if tx.maintenance_summary_claimed(key, occ.start).await? {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut seen = HashSet::new();
        let held: Vec<HeldAlert> = tx
            .maintenance_held(occ.start, occ.end)
            .await?
            .into_iter()
            .filter(|h| covers(window, h) && seen.insert(h.alert_event_id))
            .collect();
        let count = i64::try_from(held.len()).unwrap_or(i64::MAX);
        if !tx
            .claim_maintenance_summary(key, occ.start, occ.end, count, now)
            .await?
        {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut enqueued = 0;
        for group in self.route_groups(held) {
            let event = event(window, occ, &group, now);
            enqueued += self.outbox.enqueue(&mut tx, &event, &[], now).await?;
        }
        tx.commit().await?;
        tracing::info!(window = %key, start_ms = occ.start, end_ms = occ.end, held = count, messages = enqueued, "maintenance window closed");
        Ok(enqueued)
    }

    /// The held alerts grouped by the channels their labels route the summary to, and their
    /// namespace; in the order of their first alert.
    fn route_groups(&self, held: Vec<HeldAlert>) -> Vec<Vec<HeldAlert>> {
        let mut groups: Vec<(RouteKey, Vec<HeldAlert>)> = Vec::new();
        for h in held {
            let channels = self
                .router
                .channels_for(EventKind::MaintenanceSummary, &h.labels, &[]);
            let id = (channels, namespace_of(&h).to_string());
            match groups.iter_mut().find(|(k, _)| *k == id) {
                Some((_, list)) => list.push(h),
                None => groups.push((id, vec![h])),
            }
        }
        groups.into_iter().map(|(_, list)| list).collect()
    }
}

/// The channels a held alert's labels route the summary to, and its namespace (app channels).
type RouteKey = (Vec<String>, String);

fn namespace_of(h: &HeldAlert) -> &str {
    h.target_key
        .as_deref()
        .and_then(|k| k.split('/').next())
        .unwrap_or_default()
}

/// The app as the guard saw it: the `app` label, else the target's name.
fn app_of(h: &HeldAlert) -> &str {
    h.labels
        .get("app")
        .map(String::as_str)
        .or_else(|| h.target_key.as_deref().and_then(|k| k.rsplit('/').next()))
        .unwrap_or_default()
}

/// Whether the window covers a refusal (another window open at the same time may have held
/// it; then both summaries list it).
fn covers(window: &Window, h: &HeldAlert) -> bool {
    window.scope.covers(namespace_of(h), app_of(h), &h.rule)
}

/// The summary of one route's share of an occurrence.
fn event(window: &Window, occ: Occurrence, held: &[HeldAlert], now: i64) -> Event {
    let first = &held[0];
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for h in held {
        let target = h.target_key.clone().unwrap_or_default();
        *counts.entry((h.alertname.clone(), target)).or_default() += 1;
    }
    let mut groups: Vec<HeldGroup> = counts
        .into_iter()
        .map(|((alertname, target), count)| HeldGroup {
            alertname,
            target,
            count,
        })
        .collect();
    // Most held first; the map's order (name, target) breaks ties.
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    let more = groups.len().saturating_sub(MAX_GROUPED_ALERTS);
    groups.truncate(MAX_GROUPED_ALERTS);
    let same_app = held.iter().all(|h| app_of(h) == app_of(first));
    let (timezone, local) = match &window.schedule {
        Schedule::Recurring { tz, .. } => (
            tz.iana_name().unwrap_or_default().to_string(),
            Some(tz.clone()),
        ),
        Schedule::Once(_) => (String::new(), None),
    };
    let time = |ms: i64| match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => match &local {
            Some(tz) => t
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            None => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
        Err(_) => ms.to_string(),
    };
    Event {
        kind: EventKind::MaintenanceSummary,
        app: window.scope.app.clone().unwrap_or_else(|| {
            if same_app {
                app_of(first).to_string()
            } else {
                String::new()
            }
        }),
        namespace: namespace_of(first).to_string(),
        rule: window.scope.rule.clone().unwrap_or_default(),
        reason: window.spec.reason.trim().to_string(),
        alertname: first.alertname.clone(),
        labels: first.labels.clone(),
        alert_count: held.len() as u64,
        at: jiff::Timestamp::from_millisecond(now)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default(),
        maintenance: Some(MaintenanceReport {
            window: window.label(),
            scope: window.scope.describe(),
            created_by: window.spec.created_by.clone().unwrap_or_default(),
            starts_at: time(occ.start),
            ends_at: time(occ.end),
            timezone,
            groups,
            more_groups: more as u64,
        }),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::{Key, WindowSpec};
    use crate::notify::config::Language;
    use crate::notify::template::Templates;

    fn held(id: i64, alertname: &str, target: &str, team: &str) -> HeldAlert {
        HeldAlert {
            alert_event_id: id,
            rule: "restart".into(),
            target_key: Some(target.into()),
            alertname: alertname.into(),
            labels: [("alertname", alertname), ("team", team)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn weekly() -> Window {
        let spec: WindowSpec = serde_yaml::from_str(
            "{name: weekly-db, namespace: shop, every: sat 02:00, duration: 2h, timezone: Asia/Taipei, reason: weekly database maintenance, created_by: ops}",
        )
        .unwrap();
        Window::compile(Key::Settings("weekly-db".into()), &spec).unwrap()
    }

    #[test]
    fn the_summary_lists_the_held_alerts_by_name_and_target_most_first_in_both_languages() {
        let w = weekly();
        let occ = w
            .schedule
            .active_at(schedule_ms("2026-12-04T18:30:00Z"))
            .unwrap();
        let alerts = [
            held(1, "OrdersDown", "shop/Deployment/orders", "a"),
            held(2, "ReplicasMismatch", "shop/Deployment/orders", "a"),
            held(3, "ReplicasMismatch", "shop/Deployment/orders", "a"),
        ];
        let e = event(&w, occ, &alerts, occ.end);
        let en = Templates::new(Language::En, &BTreeMap::new()).unwrap();
        let (subject, body) = en.render(&e);
        assert_eq!(
            subject,
            "[aiops] Maintenance window ended: weekly-db, 3 alerts held"
        );
        assert_eq!(
            body,
            "Window: weekly-db (namespace=shop)\n\
             From 2026-12-05T02:00:00+08:00 to 2026-12-05T04:00:00+08:00 (Asia/Taipei)\n\
             Reason: weekly database maintenance (set by ops)\n\
             Held 3 alerts, no repair attempted:\n\
             - ReplicasMismatch on shop/Deployment/orders: 2\n\
             - OrdersDown on shop/Deployment/orders: 1\n\
             Alerts still firing are acted on at their next re-send from Alertmanager."
        );
        let zh = Templates::new(Language::ZhTw, &BTreeMap::new()).unwrap();
        let (subject, body) = zh.render(&e);
        assert_eq!(subject, "[aiops] 維護時段結束：weekly-db，暫緩 3 個告警");
        assert!(
            body.contains(
                "時間：2026-12-05T02:00:00+08:00 至 2026-12-05T04:00:00+08:00（Asia/Taipei）"
            ),
            "{body}"
        );
        assert!(
            body.contains("- ReplicasMismatch（shop/Deployment/orders）：2 次"),
            "{body}"
        );
        // Routing reads the first alert's labels; the app is the one all of them share.
        assert_eq!(e.labels.get("team").map(String::as_str), Some("a"));
        assert_eq!((e.app.as_str(), e.namespace.as_str()), ("orders", "shop"));
    }

    #[test]
    fn a_long_summary_lists_the_first_groups_and_counts_the_rest() {
        let w = weekly();
        let occ = w.schedule.next_after(0).unwrap();
        let alerts: Vec<HeldAlert> = (0..25)
            .map(|i| held(i, "Down", &format!("shop/Deployment/app{i:02}"), "a"))
            .collect();
        let e = event(&w, occ, &alerts, occ.end);
        let report = e.maintenance.unwrap();
        assert_eq!(
            (report.groups.len(), report.more_groups),
            (MAX_GROUPED_ALERTS, 5)
        );
        assert_eq!(e.alert_count, 25);
        assert_eq!(e.app, "", "25 apps: none is the summary's");
    }

    #[test]
    fn only_refusals_inside_the_windows_scope_are_its_own() {
        let w = weekly();
        assert!(covers(&w, &held(1, "Down", "shop/Deployment/orders", "a")));
        assert!(!covers(&w, &held(2, "Down", "blog/Deployment/orders", "a")));
    }

    fn schedule_ms(s: &str) -> i64 {
        super::super::schedule::parse_time("t", s).unwrap()
    }
}
