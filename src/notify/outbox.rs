//! The enqueue side of notifications: an event becomes one row per channel in the outbox
//! table, routed and rendered inside the store transaction of the state change that causes it
//! (see the parent module for the whole path of a message).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    ApprovalLinks, Error, Event, EventKind, MAX_GROUPED_ALERTS, NotifySettings, Result, Seen,
    channel::ChannelKind, route, template,
};
use crate::store::{self, JobState, NewNotification, NotificationState, OccurrenceJob, WriteTx};

/// The enqueue side: routing and templates, shared by the executor, the pipeline, the
/// playbook host API and (later) the deploy module.
pub struct Outbox {
    router: route::Router,
    templates: template::Templates,
    dedup_window_ms: i64,
    group_wait_ms: i64,
    group_interval_ms: i64,
    wake: Arc<tokio::sync::Notify>,
    /// Signs approval links; `None` without `external_url` (messages then say how else).
    links: Option<Arc<dyn ApprovalLinks>>,
    /// The channels that get signed links (email and webhook: they have no buttons).
    link_channels: std::collections::BTreeSet<String>,
}

/// One alert occurrence that resolved: what an `alert_recovered` message is about.
#[derive(Clone, Copy, Debug)]
pub struct Resolved<'a> {
    /// The alert's labels (routing, app, namespace).
    pub labels: &'a BTreeMap<String, String>,
    /// Its annotations (summary, runbook).
    pub annotations: &'a BTreeMap<String, String>,
    /// Its generatorURL.
    pub generator_url: &'a str,
    /// Its fingerprint.
    pub fingerprint: &'a str,
    /// Its `startsAt` (epoch ms): with the fingerprint, which occurrence.
    pub starts_at: i64,
}

/// A guard's refusal of one firing alert: what a `no_action` message lists.
#[derive(Clone, Debug)]
pub struct Refused<'a> {
    /// The alert's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// Its generatorURL.
    pub generator_url: &'a str,
    /// The rule that matched.
    pub rule: &'a str,
    /// The target, `namespace/Kind/name`, when it could be resolved.
    pub target: Option<String>,
    /// The reason code (`pipeline::Refusal::as_str`).
    pub reason: &'a str,
    /// The guard's words.
    pub detail: &'a str,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// Builds the outbox from resolved settings.
    pub fn new(settings: &NotifySettings) -> Result<Outbox> {
        Ok(Outbox {
            router: route::Router::new(settings),
            templates: template::Templates::new(settings.language, &settings.templates)
                .map_err(|e| Error::Invalid(e.to_string()))?,
            dedup_window_ms: store::ms(settings.dedup_window.0),
            group_wait_ms: store::ms(settings.no_action.group_wait.0),
            group_interval_ms: store::ms(settings.no_action.group_interval.0),
            wake: Arc::new(tokio::sync::Notify::new()),
            links: None,
            link_channels: settings
                .channels
                .iter()
                .filter(|(_, c)| matches!(c.kind, ChannelKind::Email(_) | ChannelKind::Webhook(_)))
                .map(|(name, _)| name.clone())
                .collect(),
        })
    }

    /// Signs the approval links of `approval_requested` messages with `links` (email and
    /// webhook channels get links of their own; see `crate::approval::links`).
    pub fn with_approval_links(mut self, links: Arc<dyn ApprovalLinks>) -> Outbox {
        self.links = Some(links);
        self
    }

    /// `event` as `channel` receives it: with that channel's own signed links when it asks
    /// for an approval and the channel decides by link; `None` when it is the shared text.
    fn for_channel(&self, event: &Event, channel: &str) -> Option<Event> {
        let prompt = event.approval.as_ref()?;
        let links = self.links.as_ref()?;
        if !self.link_channels.contains(channel) {
            return None;
        }
        let expires = chrono::DateTime::parse_from_rfc3339(&prompt.expires_at).ok()?;
        let (approve_url, reject_url) =
            links.links(prompt.job_id, channel, expires.timestamp_millis());
        let mut own = event.clone();
        own.approval = Some(super::ApprovalPrompt {
            approve_url,
            reject_url,
            ..prompt.clone()
        });
        Some(own)
    }

    /// Woken after every commit that enqueued something, so the dispatcher sends at once.
    pub fn wake_handle(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Tells the dispatcher new rows are committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether any channel is configured at all.
    pub fn is_configured(&self) -> bool {
        self.router.has_channels()
    }

    /// Whether `name` is something a chain step or `notify()` may name.
    pub fn knows(&self, name: &str) -> bool {
        self.router.knows(name)
    }

    /// Renders the event for its channels and writes one row per channel in `tx`. `explicit`
    /// are the names a rule's chain (or a playbook) gave: channels, routes, or `default`; the
    /// `notifications` of the apps registered in the event's namespace are added to them.
    /// Returns how many rows are pending (suppressed duplicates not counted). The caller
    /// commits, then calls [`Outbox::wake`].
    pub async fn enqueue(
        &self,
        tx: &mut WriteTx,
        event: &Event,
        explicit: &[String],
        now: i64,
    ) -> store::Result<usize> {
        // The companion module's app records name the channels of each app: an event about
        // an app's namespace goes to them too (unknown names are ignored with a warning).
        let mut targets = explicit.to_vec();
        if !event.namespace.is_empty() {
            targets.extend(tx.app_notification_targets(&event.namespace).await?);
        }
        let channels = self
            .router
            .channels_for(event.kind, &event.labels, &targets);
        if channels.is_empty() {
            return Ok(0);
        }
        let app = event.app.clone();
        let event = &with_display_name(tx, event).await?;
        let (subject, body) = self.templates.render(event);
        let event_json = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
        let mut pending = 0;
        for channel in &channels {
            let own = self.for_channel(event, channel).map(|e| {
                let (subject, body) = self.templates.render(&e);
                let json = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
                (subject, body, json)
            });
            let (subject, body, event_json) = match &own {
                Some((s, b, j)) => (s, b, j),
                None => (&subject, &body, &event_json),
            };
            let dedup_key = dedup_key(event.kind.as_str(), channel, subject, body);
            let retry_key = uuid::Uuid::new_v4().to_string();
            let (id, state) = tx
                .insert_notification(
                    &NewNotification {
                        event: event.kind.as_str(),
                        channel,
                        job_id: event.job_id,
                        namespace: Some(&event.namespace)
                            .filter(|s| !s.is_empty())
                            .map(|s| s.as_str()),
                        // The app's name, not its display name: API access is per app name.
                        app: Some(&app).filter(|s| !s.is_empty()).map(|s| s.as_str()),
                        dedup_key: &dedup_key,
                        retry_key: &retry_key,
                        subject,
                        body,
                        event_json,
                    },
                    now,
                    now - self.dedup_window_ms,
                )
                .await?;
            if state == NotificationState::Pending {
                pending += 1;
            } else {
                tracing::info!(notification = id, channel = %channel, event = event.kind.as_str(), "identical message sent to this channel within the dedup window: suppressed");
            }
        }
        Ok(pending)
    }

    /// An alert fired: `alert_fired` to the routes that opt in to it and to the channels of
    /// the apps in the alert's namespace, as [`Outbox::enqueue`] would. Returns the
    /// notifications queued.
    ///
    /// Why not `enqueue` with an [`Event`] at once: the intake calls this for every new firing
    /// alert, and most go nowhere (routes rarely take `alert_fired`, most namespaces have no
    /// app with channels). Building the event first (its labels copied, its time formatted)
    /// was a tenth of the intake writer's work in a storm; here it is built only when a
    /// channel may take it.
    pub async fn alert_fired(
        &self,
        tx: &mut WriteTx,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        generator_url: &str,
        now: i64,
    ) -> store::Result<usize> {
        let namespace = labels.get("namespace").map_or("", String::as_str);
        if !self.router.any_route_takes(EventKind::AlertFired)
            && (namespace.is_empty() || tx.app_notification_targets(namespace).await?.is_empty())
        {
            return Ok(0);
        }
        let event = Event::for_alert(EventKind::AlertFired, labels, annotations, generator_url);
        self.enqueue(tx, &event, &[], now).await
    }

    /// Whether any route opted in to `no_action`: the intake then serialises its groups
    /// (`WriteTx::lock_no_action_groups`) before it decides anything.
    pub fn groups_no_action(&self) -> bool {
        self.router.any_route_takes(EventKind::NoAction)
    }

    /// A guard refused to act on a firing alert: joins (or opens) the `no_action` group of
    /// that reason on each channel whose label route takes `no_action` (opt-in; explicit and
    /// app channels are not used: nobody asked them for refusals). A group is sent
    /// `group_wait` after it opens, and no sooner than `group_interval` after the previous
    /// message of that reason to that channel, listing the alerts that joined it meanwhile.
    /// Returns how many groups were opened.
    pub async fn no_action(
        &self,
        tx: &mut WriteTx,
        refused: &Refused<'_>,
        now: i64,
    ) -> store::Result<usize> {
        let channels = self
            .router
            .channels_for(EventKind::NoAction, refused.labels, &[]);
        if channels.is_empty() {
            return Ok(0);
        }
        let mut first = Event::for_alert(
            EventKind::NoAction,
            refused.labels,
            refused.annotations,
            refused.generator_url,
        );
        let seen = Seen {
            problem: first.problem.clone(),
            target: refused.target.clone().unwrap_or_default(),
            namespace: first.namespace.clone(),
            labels: compact_labels(refused.labels),
            rule: refused.rule.to_string(),
            detail: refused.detail.to_string(),
        };
        first.reason = refused.reason.to_string();
        first.rule = refused.rule.to_string();
        first.target = seen.target.clone();
        first.alerts = vec![seen.clone()];
        first.alert_count = 1;
        let group_key = format!("no_action:{}", refused.reason);
        // The text of a new group, rendered once for every channel that needs one.
        let mut opening: Option<(String, String, String)> = None;
        let mut opened = 0;
        for channel in &channels {
            if let Some((id, json)) = tx.open_group(channel, &group_key, now).await? {
                // A group written by this code parses; if not, the alert opens a new group.
                if let Ok(mut group) = serde_json::from_str::<Event>(&json) {
                    group.alert_count += 1;
                    if group.alerts.len() < MAX_GROUPED_ALERTS {
                        group.alerts.push(seen.clone());
                    }
                    let (subject, body) = self.templates.render(&group);
                    let json = serde_json::to_string(&group).unwrap_or_else(|_| "{}".into());
                    if tx.update_group(id, &subject, &body, &json, now).await? {
                        continue;
                    }
                }
            }
            if opening.is_none() {
                let event = with_display_name(tx, &first).await?;
                let (subject, body) = self.templates.render(&event);
                let json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                opening = Some((subject, body, json));
            }
            let Some((subject, body, event_json)) = &opening else {
                continue;
            };
            let last = tx.group_last_due(channel, &group_key).await?;
            let due = (now + self.group_wait_ms)
                .max(last.map_or(i64::MIN, |l| l + self.group_interval_ms));
            let retry_key = uuid::Uuid::new_v4().to_string();
            let id = tx
                .insert_group(
                    &NewNotification {
                        event: EventKind::NoAction.as_str(),
                        channel,
                        job_id: None,
                        namespace: Some(&first.namespace)
                            .filter(|s| !s.is_empty())
                            .map(|s| s.as_str()),
                        app: Some(&first.app)
                            .filter(|s| !s.is_empty())
                            .map(|s| s.as_str()),
                        dedup_key: &group_key,
                        retry_key: &retry_key,
                        subject,
                        body,
                        event_json,
                    },
                    due,
                    now,
                )
                .await?;
            tracing::info!(notification = id, channel = %channel, reason = refused.reason, due_ms = due, "no_action group opened");
            opened += 1;
        }
        Ok(opened)
    }

    /// An alert occurrence resolved, or a repair of one ended: when the occurrence has
    /// resolved, had a repair (a job that ran, dry runs aside), and none of its repairs is
    /// still active, enqueues `alert_recovered` about the last repair. Called from both
    /// sides (the resolve's transaction, and the transaction that ends a repair) because
    /// either may come first; the store's lock on the occurrence makes exactly one of them
    /// see both, so the message goes once. Returns how many rows are pending.
    pub async fn recovered(
        &self,
        tx: &mut WriteTx,
        alert: &Resolved<'_>,
        now: i64,
    ) -> store::Result<usize> {
        if !self.is_configured() {
            return Ok(0);
        }
        let jobs = tx
            .occurrence_jobs(alert.fingerprint, alert.starts_at)
            .await?;
        let ran: Vec<&OccurrenceJob> = jobs.iter().filter(|j| j.started_at.is_some()).collect();
        let Some(last) = ran.last() else {
            return Ok(0);
        };
        if jobs.iter().any(|j| !j.state.is_terminal()) {
            return Ok(0);
        }
        let Some(ended) = tx
            .occurrence_end(alert.fingerprint, alert.starts_at)
            .await?
        else {
            return Ok(0);
        };
        let mut event = Event::for_alert(
            EventKind::AlertRecovered,
            alert.labels,
            alert.annotations,
            alert.generator_url,
        );
        let started = last.started_at.unwrap_or(ended);
        event.target = last.target_key.clone();
        if event.app.is_empty() {
            event.app = last
                .target_key
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
        }
        event.action = last.playbook.clone();
        event.job_id = Some(last.id);
        event.result = match (last.state, &last.outcome, &last.error) {
            (JobState::Succeeded, Some(o), _) if !o.is_empty() => format!("succeeded: {o}"),
            (state, _, Some(e)) if state != JobState::Succeeded && !e.is_empty() => {
                format!("{}: {e}", state.as_str())
            }
            (state, _, _) => state.as_str().to_string(),
        };
        event.repair_at = rfc3339(started);
        event.minutes_after_repair = (ended - started).max(0) / 60_000;
        let ttr = std::time::Duration::from_secs(
            u64::try_from((ended - alert.starts_at) / 1000).unwrap_or(0),
        );
        event.duration = humantime::format_duration(ttr).to_string();
        // Whoever the chain told of the repair hears of the recovery too, besides label routes.
        self.enqueue(tx, &event, &last.routes, now).await
    }

    /// Enqueues in a transaction of its own and wakes the dispatcher: for events that are not
    /// part of a state change (a playbook's `notify()`, a deploy).
    pub async fn enqueue_now(
        &self,
        store: &store::Store,
        event: &Event,
        explicit: &[String],
    ) -> Result<usize> {
        let mut tx = store.begin_write().await?;
        let n = self
            .enqueue(&mut tx, event, explicit, store::now_ms())
            .await?;
        tx.commit().await?;
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }

    /// For the deploy module: how a deployment ended (`kind` is [`EventKind::DeploySuccess`]
    /// or [`EventKind::DeployFailed`]), to the routes matching `labels` (at least `app` and
    /// `namespace`) and to `explicit` channels or routes.
    pub async fn deploy_finished(
        &self,
        store: &store::Store,
        kind: EventKind,
        labels: &BTreeMap<String, String>,
        message: &str,
        explicit: &[String],
    ) -> Result<usize> {
        debug_assert!(matches!(
            kind,
            EventKind::DeploySuccess | EventKind::DeployFailed
        ));
        let mut event = Event::for_alert(kind, labels, &BTreeMap::new(), "");
        event.message = message.to_string();
        event.problem.clear();
        self.enqueue_now(store, &event, explicit).await
    }

    /// The templates, for `aiops notify test`.
    pub fn templates(&self) -> &template::Templates {
        &self.templates
    }
}

/// `event` with the registered app's `display_name` as its `app`, when the deploy module
/// knows the app (same name and namespace); routing keeps reading the labels.
async fn with_display_name(tx: &mut WriteTx, event: &Event) -> store::Result<Event> {
    let mut event = event.clone();
    if !event.app.is_empty()
        && !event.namespace.is_empty()
        && let Some(name) = tx.app_display_name(&event.namespace, &event.app).await?
    {
        event.app = name;
    }
    Ok(event)
}

/// `{k="v", …}` without `alertname` (already the message's subject), as Alertmanager prints
/// label sets.
fn compact_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// A stable key for "the same text to the same channel" (FNV-1a, 64 bits, hex).
pub(super) fn dedup_key(event: &str, channel: &str, subject: &str, body: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [event, channel, subject, body] {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
