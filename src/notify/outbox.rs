//! The enqueue side of notifications: an event becomes one row per channel in the outbox
//! table, routed and rendered inside the store transaction of the state change that causes it
//! (see the parent module for the whole path of a message).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Error, Event, EventKind, NotifySettings, Result, route, template};
use crate::store::{self, NewNotification, NotificationState, WriteTx};

/// The enqueue side: routing and templates, shared by the executor, the pipeline, the
/// playbook host API and (later) the deploy module.
pub struct Outbox {
    router: route::Router,
    templates: template::Templates,
    dedup_window_ms: i64,
    wake: Arc<tokio::sync::Notify>,
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
            wake: Arc::new(tokio::sync::Notify::new()),
        })
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
        let (subject, body) = self.templates.render(event);
        let event_json = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
        let mut pending = 0;
        for channel in &channels {
            let dedup_key = dedup_key(event.kind.as_str(), channel, &subject, &body);
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
                        app: Some(&event.app)
                            .filter(|s| !s.is_empty())
                            .map(|s| s.as_str()),
                        dedup_key: &dedup_key,
                        retry_key: &retry_key,
                        subject: &subject,
                        body: &body,
                        event_json: &event_json,
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

    /// For the deploy module: "APP deployed" to the routes matching `labels` (at least
    /// `app` and `namespace`) and to `explicit` channels or routes.
    pub async fn deploy_success(
        &self,
        store: &store::Store,
        labels: &BTreeMap<String, String>,
        message: &str,
        explicit: &[String],
    ) -> Result<usize> {
        let mut event = Event::for_alert(EventKind::DeploySuccess, labels, &BTreeMap::new(), "");
        event.message = message.to_string();
        event.problem.clear();
        self.enqueue_now(store, &event, explicit).await
    }

    /// The templates, for `aiops notify test`.
    pub fn templates(&self) -> &template::Templates {
        &self.templates
    }
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
