//! Delivery: claim due rows from the outbox, send them, record every attempt, and retry by a
//! named policy.
//!
//! - [`RetryPolicy`]: exponential backoff with ±20 % jitter on retryable errors (5xx, 429,
//!   timeouts, connection errors); a wait the API asked for (Telegram's `retry_after`,
//!   `Retry-After`) is honoured exactly; other 4xx are final; `max_attempts` bounds the rest.
//! - A per-channel rate limit (governor): a message over the limit is put back for when the
//!   limit allows it, without counting an attempt and without holding up other channels.
//! - Rows are claimed with a lease ([`crate::store::Store::claim_notifications`]), so two
//!   replicas never send the same row, and a row claimed by a replica that died is sent again
//!   after the lease (LINE's retry key and the webhook's Idempotency-Key make that a no-op
//!   where the API allows).
//! - Messages to one channel go in order; channels are served concurrently, so a slow channel
//!   delays only itself — and never a repair, which only wrote a row.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, watch};

pub use super::redact::{MIN_FRAGMENT, Redactor, redact};
use super::{ApprovalPrompt, Error, Message, Notifier, NotifySettings};
use crate::metrics::Metrics;
use crate::store::{self, AttemptEnd, Notification, Store};

/// When to try again after a failed attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay (a retry-after from the API may exceed it: the API knows best).
    pub max: Duration,
    /// Jitter as a fraction of the delay, both ways.
    pub jitter: f64,
}

impl RetryPolicy {
    /// From `notify.retry`.
    pub fn from_settings(s: &NotifySettings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: s.retry.max_attempts,
            initial: s.retry.initial_backoff.0,
            max: s.retry.max_backoff.0,
            jitter: 0.2,
        }
    }

    /// The wait before attempt `attempts + 1`, after `attempts` attempts ended with `err`;
    /// `None` means give up. `random` is uniform in [0, 1).
    pub fn next_delay(&self, attempts: u32, err: &Error, random: f64) -> Option<Duration> {
        if !err.is_retryable() || attempts >= self.max_attempts {
            return None;
        }
        if let Some(wait) = err.retry_after() {
            return Some(wait);
        }
        let exp = attempts.saturating_sub(1).min(30);
        let base = self
            .initial
            .saturating_mul(1u32 << exp)
            .min(self.max)
            .as_secs_f64();
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * random.clamp(0.0, 1.0);
        Some(Duration::from_secs_f64(base * factor).min(self.max))
    }
}

/// The dispatcher's "now" in epoch milliseconds: tokio's monotonic clock from a wall-clock
/// base, plus an offset tests move with [`Clock::advance`]. (A paused tokio clock cannot drive
/// these tests: it auto-advances while sqlx's SQLite worker thread runs a query, which fires
/// the pool's acquire timeout.)
#[derive(Clone, Debug)]
pub struct Clock {
    base_ms: i64,
    start: tokio::time::Instant,
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            base_ms: store::now_ms(),
            start: tokio::time::Instant::now(),
            offset_ms: Arc::default(),
        }
    }
}

impl Clock {
    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.base_ms
            + store::ms(self.start.elapsed())
            + self.offset_ms.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Moves this clock (and its clones) forward.
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(store::ms(d), std::sync::atomic::Ordering::SeqCst);
    }
}

/// The one field of a stored event the dispatcher reads: the approval prompt, which chat
/// channels render as buttons. Other fields are the templates' business (already rendered into
/// the row's subject and body), so they are ignored here.
#[derive(Default, serde::Deserialize)]
struct StoredEvent {
    #[serde(default)]
    approval: Option<ApprovalPrompt>,
}

/// The approval prompt of a stored event, if it has one. A row whose JSON cannot be read (it
/// never happens: the outbox wrote it) is still sent, without buttons.
fn approval_of(event_json: &str) -> Option<ApprovalPrompt> {
    serde_json::from_str::<StoredEvent>(event_json)
        .ok()
        .and_then(|e| e.approval)
}

/// The delivery loop of this process.
pub struct Dispatcher {
    store: Store,
    notifiers: BTreeMap<String, Arc<dyn Notifier>>,
    limiters: BTreeMap<String, Arc<DefaultDirectRateLimiter>>,
    redactor: Redactor,
    policy: RetryPolicy,
    metrics: Metrics,
    owner: String,
    lease: Duration,
    poll: Duration,
    wake: Arc<Notify>,
    clock: Clock,
}

impl Dispatcher {
    /// A dispatcher for the configured channels; `wake` is the outbox's handle.
    pub fn new(
        store: Store,
        settings: &NotifySettings,
        notifiers: BTreeMap<String, Arc<dyn Notifier>>,
        metrics: Metrics,
        owner: &str,
        wake: Arc<Notify>,
    ) -> Dispatcher {
        let limiters = settings
            .channels
            .iter()
            .map(|(name, c)| {
                let rate = NonZeroU32::new(c.rate_per_minute).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(c.rate_per_minute.min(5)).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::per_minute(rate).allow_burst(burst);
                (name.clone(), Arc::new(RateLimiter::direct(quota)))
            })
            .collect();
        for name in settings.channels.keys() {
            for result in ["sent", "retry", "failed"] {
                metrics.notifications.with_label_values(&[name, result]);
            }
        }
        Dispatcher {
            store,
            notifiers,
            limiters,
            redactor: Redactor::new(settings.channels.values().flat_map(|c| c.kind.secrets())),
            policy: RetryPolicy::from_settings(settings),
            metrics,
            owner: owner.to_string(),
            lease: settings.lease.0,
            poll: settings.poll_interval.0,
            wake,
            clock: Clock::default(),
        }
    }

    /// Replaces the clock (tests build one under a paused tokio clock).
    pub fn with_clock(mut self, clock: Clock) -> Dispatcher {
        self.clock = clock;
        self
    }

    /// Sends everything due now. Returns how many rows were handled.
    pub async fn run_once(&self) -> Result<usize, store::Error> {
        let now = self.clock.now_ms();
        let rows = self
            .store
            .claim_notifications(
                &self.owner,
                now,
                now + store::ms(self.lease),
                32,
                &self.notifiers.keys().cloned().collect::<Vec<_>>(),
            )
            .await?;
        let n = rows.len();
        let mut by_channel: BTreeMap<String, Vec<Notification>> = BTreeMap::new();
        for r in rows {
            by_channel.entry(r.channel.clone()).or_default().push(r);
        }
        let sends = by_channel.into_values().map(|rows| async move {
            for row in rows {
                if let Err(e) = self.deliver(row).await {
                    tracing::error!(error = %e, "recording a notification attempt failed; it is retried after its lease");
                }
            }
        });
        futures_util::future::join_all(sends).await;
        Ok(n)
    }

    async fn deliver(&self, row: Notification) -> Result<(), store::Error> {
        let channel = row.channel.as_str();
        let Some(notifier) = self.notifiers.get(channel) else {
            let detail =
                format!("channel {channel} is not configured (removed from notify.channels?)");
            tracing::error!(notification = row.id, channel, "{detail}");
            self.count(channel, "failed", Some("invalid"));
            self.store
                .finish_attempt(
                    row.id,
                    &self.owner,
                    self.clock.now_ms(),
                    AttemptEnd::Failed,
                    None,
                    None,
                    &detail,
                )
                .await?;
            return Ok(());
        };
        if let Some(limiter) = self.limiters.get(channel)
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let at = self.clock.now_ms() + store::ms(wait).max(1);
            tracing::debug!(
                notification = row.id,
                channel,
                wait_ms = store::ms(wait),
                "channel rate limit: deferred"
            );
            self.store
                .defer_notification(row.id, &self.owner, at)
                .await?;
            return Ok(());
        }
        let msg = Message {
            subject: row.subject.clone(),
            body: row.body.clone(),
            event_json: row.event_json.clone(),
            retry_key: row.retry_key.clone(),
            event: row.event.clone(),
            approval: approval_of(&row.event_json),
        };
        // The lease must outlive the send, or another replica could send the row too: renew it
        // now (the batch's earlier sends used up part of it) and bound the send by half of it.
        let start = self.clock.now_ms();
        if !self
            .store
            .renew_notification_lease(row.id, &self.owner, start, start + store::ms(self.lease))
            .await?
        {
            tracing::warn!(
                notification = row.id,
                channel,
                "lease lost before sending; another dispatcher has the row"
            );
            return Ok(());
        }
        let limit = self.lease / 2;
        let result = match tokio::time::timeout(limit, notifier.send(&msg)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                channel: "notifier",
            }),
        };
        let now = self.clock.now_ms();
        let attempts = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
        match result {
            Ok(receipt) => {
                let detail = self.redactor.redact(&receipt.detail);
                self.store
                    .finish_attempt(
                        row.id,
                        &self.owner,
                        now,
                        AttemptEnd::Sent,
                        Some(receipt.status),
                        None,
                        &detail,
                    )
                    .await?;
                self.count(channel, "sent", None);
                tracing::info!(notification = row.id, channel, event = %row.event, attempt = attempts, "notification sent");
            }
            Err(e) => {
                let e = self.redactor.error(e);
                let detail = e.to_string();
                let retry_after = e.retry_after().map(store::ms);
                let random: f64 = rand::random();
                match self.policy.next_delay(attempts, &e, random) {
                    Some(wait) => {
                        self.store
                            .finish_attempt(
                                row.id,
                                &self.owner,
                                now,
                                AttemptEnd::Retry(now.saturating_add(store::ms(wait))),
                                e.http_status(),
                                retry_after,
                                &detail,
                            )
                            .await?;
                        self.count(channel, "retry", Some(e.metric_label()));
                        tracing::warn!(notification = row.id, channel, event = %row.event, attempt = attempts, retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())), error = %detail, "notification attempt failed; will retry");
                    }
                    None => {
                        self.store
                            .finish_attempt(
                                row.id,
                                &self.owner,
                                now,
                                AttemptEnd::Failed,
                                e.http_status(),
                                retry_after,
                                &detail,
                            )
                            .await?;
                        self.count(channel, "failed", Some(e.metric_label()));
                        tracing::error!(notification = row.id, channel, event = %row.event, attempt = attempts, error = %detail, "notification failed; giving up");
                    }
                }
            }
        }
        Ok(())
    }

    fn count(&self, channel: &str, result: &str, reason: Option<&str>) {
        self.metrics
            .notifications
            .with_label_values(&[channel, result])
            .inc();
        if let Some(reason) = reason {
            self.metrics
                .notification_failures
                .with_label_values(&[channel, reason])
                .inc();
        }
    }

    /// Runs until `shutdown` becomes true, then sends what is due one last time.
    pub fn spawn(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    if let Err(e) = self.run_once().await {
                        tracing::error!(error = %e, "claiming notifications failed");
                    }
                    return;
                }
                let notified = self.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match self.run_once().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "claiming notifications failed"),
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(self.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Event, EventKind, Outbox, Receipt};
    use std::sync::Mutex;

    fn status(code: u16, retry_after: Option<u64>) -> Error {
        Error::Status {
            channel: "telegram",
            status: code,
            detail: "x".into(),
            retryable: code >= 500 || code == 429,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_stops_at_the_cap() {
        let p = policy();
        let e = status(503, None);
        assert_eq!(p.next_delay(1, &e, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(p.next_delay(2, &e, 0.5), Some(Duration::from_secs(10)));
        assert_eq!(p.next_delay(3, &e, 0.0), Some(Duration::from_secs(16)));
        assert_eq!(
            p.next_delay(3, &e, 0.999_999).map(|d| d.as_secs()),
            Some(23)
        );
        assert_eq!(p.next_delay(4, &e, 1.0), Some(Duration::from_secs(48)));
        assert_eq!(p.next_delay(5, &e, 0.5), None, "max_attempts reached");
        let long = RetryPolicy {
            max_attempts: 20,
            ..policy()
        };
        assert_eq!(long.next_delay(9, &e, 1.0), Some(Duration::from_secs(60)));
        assert_eq!(long.next_delay(19, &e, 0.0), Some(Duration::from_secs(48)));
    }

    #[test]
    fn a_retry_after_is_honoured_exactly_and_a_client_error_is_final() {
        let p = policy();
        assert_eq!(
            p.next_delay(1, &status(429, Some(90)), 0.9),
            Some(Duration::from_secs(90))
        );
        assert_eq!(p.next_delay(1, &status(400, None), 0.5), None);
        assert_eq!(p.next_delay(1, &status(403, Some(5)), 0.5), None);
    }

    /// A channel whose answers are scripted: the seam the dispatcher is tested through.
    struct Scripted {
        answers: Mutex<Vec<Result<Receipt, Error>>>,
        seen: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Notifier for Scripted {
        async fn send(&self, msg: &Message) -> Result<Receipt, Error> {
            self.seen.lock().unwrap().push(msg.retry_key.clone());
            self.answers.lock().unwrap().remove(0)
        }
    }

    async fn setup(
        answers: Vec<Result<Receipt, Error>>,
    ) -> (Store, Outbox, Dispatcher, Arc<Scripted>, Clock) {
        let store = Store::connect("sqlite::memory:", &store::Options::default())
            .await
            .unwrap();
        let mut settings: NotifySettings = serde_yaml::from_str(
            "channels:\n  tg: {type: telegram, bot_token: tok, chat_id: '1'}\nroutes:\n  - channels: [tg]\n",
        )
        .unwrap();
        settings.resolve(&|_| None).unwrap();
        let outbox = Outbox::new(&settings).unwrap();
        let scripted = Arc::new(Scripted {
            answers: Mutex::new(answers),
            seen: Mutex::new(Vec::new()),
        });
        let mut notifiers: BTreeMap<String, Arc<dyn Notifier>> = BTreeMap::new();
        notifiers.insert("tg".into(), scripted.clone());
        let clock = Clock::default();
        let d = Dispatcher::new(
            store.clone(),
            &settings,
            notifiers,
            Metrics::new(),
            "test",
            outbox.wake_handle(),
        )
        .with_clock(clock.clone());
        (store, outbox, d, scripted, clock)
    }

    async fn enqueue(store: &Store, outbox: &Outbox, now: i64, text: &str) -> usize {
        let mut tx = store.begin_write().await.unwrap();
        let event = Event {
            kind: EventKind::Escalation,
            message: text.into(),
            reason: text.into(),
            ..Event::default()
        };
        let n = outbox.enqueue(&mut tx, &event, &[], now).await.unwrap();
        tx.commit().await.unwrap();
        n
    }

    fn ok() -> Result<Receipt, Error> {
        Ok(Receipt {
            status: 200,
            detail: "ok".into(),
        })
    }

    #[tokio::test]
    async fn a_429_is_retried_after_the_wait_the_api_asked_for_with_the_same_key() {
        let (store, outbox, d, scripted, clock) =
            setup(vec![Err(status(429, Some(30))), ok()]).await;
        enqueue(&store, &outbox, clock.now_ms(), "db down").await;
        assert_eq!(d.run_once().await.unwrap(), 1);
        clock.advance(Duration::from_secs(29));
        assert_eq!(d.run_once().await.unwrap(), 0, "not before retry_after");
        clock.advance(Duration::from_secs(1));
        assert_eq!(d.run_once().await.unwrap(), 1);
        let n = &store.notifications().await.unwrap()[0];
        assert_eq!((n.state, n.attempts), (store::NotificationState::Sent, 2));
        let attempts = store.notification_attempts(n.id).await.unwrap();
        let results: Vec<_> = attempts
            .iter()
            .map(|a| (a.result.as_str(), a.http_status, a.retry_after_ms))
            .collect();
        assert_eq!(
            results,
            [
                ("retry", Some(429), Some(30_000)),
                ("sent", Some(200), None)
            ]
        );
        let seen = scripted.seen.lock().unwrap();
        assert_eq!(seen[0], seen[1], "one logical message keeps its retry key");
    }

    #[tokio::test]
    async fn a_5xx_backs_off_and_a_4xx_is_not_retried() {
        let (store, outbox, d, _s, clock) =
            setup(vec![Err(status(502, None)), Err(status(400, None))]).await;
        enqueue(&store, &outbox, clock.now_ms(), "x").await;
        d.run_once().await.unwrap();
        // 5 s ± 20 %: not due at 3.9 s, due by 6 s.
        clock.advance(Duration::from_millis(3900));
        assert_eq!(d.run_once().await.unwrap(), 0);
        clock.advance(Duration::from_millis(2100));
        assert_eq!(d.run_once().await.unwrap(), 1);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(d.run_once().await.unwrap(), 0, "a 400 is final");
        let n = &store.notifications().await.unwrap()[0];
        assert_eq!((n.state, n.attempts), (store::NotificationState::Failed, 2));
        assert!(
            n.last_error.as_deref().unwrap().contains("HTTP 400"),
            "{n:?}"
        );
    }

    #[tokio::test]
    async fn an_identical_message_within_the_dedup_window_is_sent_once() {
        let (store, outbox, d, scripted, clock) = setup(vec![ok(), ok()]).await;
        assert_eq!(enqueue(&store, &outbox, clock.now_ms(), "same").await, 1);
        assert_eq!(enqueue(&store, &outbox, clock.now_ms(), "same").await, 0);
        assert_eq!(enqueue(&store, &outbox, clock.now_ms(), "other").await, 1);
        d.run_once().await.unwrap();
        assert_eq!(scripted.seen.lock().unwrap().len(), 2);
        // After the window (10 minutes) the same text is news again.
        clock.advance(Duration::from_secs(601));
        assert_eq!(enqueue(&store, &outbox, clock.now_ms(), "same").await, 1);
        let states: Vec<_> = store
            .notifications()
            .await
            .unwrap()
            .iter()
            .map(|n| n.state)
            .collect();
        use store::NotificationState::*;
        assert_eq!(states, [Sent, Suppressed, Sent, Pending]);
    }
}
