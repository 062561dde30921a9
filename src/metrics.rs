//! The Prometheus registry and the daemon's typed metric families.
//!
//! Label values are bounded sets chosen by the code (status, reason, state) or by the operator
//! (rule names); nothing from an alert's free-form labels becomes a metric label.

use crate::rules::Mode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The `mode` label of a decision no rule made (`skipped`/`no_rule`).
pub const NO_MODE: &str = "none";

/// All metric families, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Alerts received, by the alert's own status.
    pub alerts_received: IntCounterVec,
    /// Alerts already seen (same fingerprint, status, startsAt).
    pub alerts_duplicate: IntCounter,
    /// Alerts not recorded because a value cannot be stored or is out of range, by reason
    /// (`nul`, `too_long`, `time_out_of_range`).
    pub alerts_rejected: IntCounterVec,
    /// Rule matches, by rule name.
    pub rule_matches: IntCounterVec,
    /// Refusals by guards, by reason and the refusing rule's trust mode. Count with
    /// [`Metrics::refusal`].
    pub guard_refusals: IntCounterVec,
    /// Decisions on recorded firing alerts, by verdict, reason (one per matching rule, or
    /// `skipped`/`no_rule`; the same codes as `/api/alerts`) and the rule's trust mode (`none`
    /// when no rule matched). Count with [`Metrics::decision`].
    pub alert_decisions: IntCounterVec,
    /// Job state transitions, by the state entered and the job's trust mode.
    pub jobs: JobCounter,
    /// Real (not shadow) jobs queued or waiting: the lane `jobs.queue_capacity` answers 503 for.
    pub queue_depth: IntGauge,
    /// Webhooks refused with 503 because the queue was full.
    pub queue_full: IntCounter,
    /// Webhook requests by HTTP status code.
    pub webhook_requests: IntCounterVec,
    /// Webhook handling time.
    pub webhook_duration: Histogram,
    /// Webhooks written per intake transaction (group commit); its `_count` is the number of
    /// commits.
    pub intake_batch: Histogram,
    /// Escalations of real jobs recorded, by kind (playbook, notify, human); a shadow chain's
    /// show only in `aiops_jobs_total{mode="shadow"}`.
    pub escalations: IntCounterVec,
    /// Rule/playbook reloads, by result.
    pub reloads: IntCounterVec,
    /// API tokens refused, by reason (expired, signature, …).
    pub api_auth_failures: IntCounterVec,
    /// Rows removed by retention, by table family.
    pub pruned: IntCounterVec,
    /// Notification attempts, by channel and result (sent, retry, failed).
    pub notifications: IntCounterVec,
    /// Failed notification attempts, by channel and reason (`notify::Error::metric_label`).
    pub notification_failures: IntCounterVec,
    /// Connections closed at accept, by reason (`limit`: over http.max_connections;
    /// `accept_error`: the kernel refused, e.g. out of file descriptors).
    pub http_connections_rejected: IntCounterVec,
    /// Connections or requests cut by a timeout, by kind (`header`, `body`, `write`, `idle`).
    pub http_timeouts: IntCounterVec,
    /// Connections open now.
    pub http_connections_open: IntGauge,
    /// Requests answered 429 unread because their client address used up its failed-auth budget.
    pub http_auth_throttled: IntCounter,
    /// Cluster preflight, by check (`reachable`, `permissions`): 1 passed, 0 failed.
    pub cluster_preflight: IntGaugeVec,
    /// 1 for each permission the playbooks need and the cluster refuses, by verb and resource
    /// (`group/resource`, core resources bare).
    pub cluster_permission_missing: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        }
        let cv = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let alerts_received = cv(
            "aiops_alerts_received_total",
            "Alerts received, by the alert's own status.",
            &["status"],
        );
        let alerts_rejected = cv(
            "aiops_alerts_rejected_total",
            "Alerts not recorded because a value cannot be stored or is out of range, by reason.",
            &["reason"],
        );
        // Every reason at zero from the start, so `increase()` sees the first rejection.
        for reason in crate::alert::Problem::LABELS {
            alerts_rejected.with_label_values(&[reason]);
        }
        let rule_matches = cv(
            "aiops_rule_matches_total",
            "Alerts matched, by rule.",
            &["rule"],
        );
        let guard_refusals = cv(
            "aiops_guard_refusals_total",
            "Repairs refused by a guard, by reason and the rule's trust mode (shadow, approve, auto).",
            &["reason", "mode"],
        );
        let alert_decisions = cv(
            "aiops_alert_decisions_total",
            "Decisions on firing alerts, by verdict (job, refused, skipped), reason code and the rule's trust mode (none when no rule matched).",
            &["verdict", "reason", "mode"],
        );
        // The pairs that are no guard's start at zero here; each guard's reason is started with
        // its `refused` verdict where the guards' reasons are known (daemon start-up, through
        // `Metrics::publish_refusal`).
        for (verdict, reason) in crate::decision::NOT_REFUSALS {
            if verdict == crate::decision::Verdict::Skipped {
                alert_decisions.with_label_values(&[verdict.as_str(), reason, NO_MODE]);
            } else {
                for mode in Mode::ALL {
                    alert_decisions.with_label_values(&[verdict.as_str(), reason, mode.as_str()]);
                }
            }
        }
        let jobs = JobCounter(cv(
            "aiops_jobs_total",
            "Job state transitions, by the state entered and the job's trust mode (shadow, approve, auto).",
            &["state", "mode"],
        ));
        let webhook_requests = cv(
            "aiops_webhook_requests_total",
            "Webhook requests, by HTTP status code.",
            &["code"],
        );
        let escalations = cv(
            "aiops_escalations_total",
            "Escalations of real (not shadow) repairs recorded, by kind.",
            &["kind"],
        );
        let reloads = cv(
            "aiops_reloads_total",
            "Rule and playbook reloads, by result.",
            &["result"],
        );
        let api_auth_failures = cv(
            "aiops_api_auth_failures_total",
            "API requests refused for their token, by reason.",
            &["reason"],
        );
        let pruned = cv(
            "aiops_pruned_rows_total",
            "Rows removed by retention, by table family.",
            &["table"],
        );
        let notifications = cv(
            "aiops_notifications_total",
            "Notification attempts, by channel and result (sent, retry, failed).",
            &["channel", "result"],
        );
        let notification_failures = cv(
            "aiops_notification_failures_total",
            "Failed notification attempts, by channel and reason.",
            &["channel", "reason"],
        );
        let http_connections_rejected = cv(
            "aiops_http_connections_rejected_total",
            "Connections closed at accept, by reason (limit, accept_error).",
            &["reason"],
        );
        let http_timeouts = cv(
            "aiops_http_timeouts_total",
            "Connections or requests cut by a timeout, by kind (header, body, write, idle).",
            &["kind"],
        );
        let http_connections_open = reg(
            &registry,
            IntGauge::new("aiops_http_connections_open", "HTTP connections open now.")
                .expect("valid metric"),
        );
        let http_auth_throttled = reg(
            &registry,
            IntCounter::new(
                "aiops_http_auth_throttled_total",
                "Requests answered 429 unread: their client address used up its failed-authentication budget.",
            )
            .expect("valid metric"),
        );
        // Every series at zero, so dashboards and `increase()` see the first event.
        for reason in ["limit", "accept_error"] {
            http_connections_rejected.with_label_values(&[reason]);
        }
        for kind in ["header", "body", "write", "idle"] {
            http_timeouts.with_label_values(&[kind]);
        }
        let alerts_duplicate = reg(
            &registry,
            IntCounter::new(
                "aiops_alerts_duplicate_total",
                "Alerts already recorded (re-sends).",
            )
            .expect("valid metric"),
        );
        let queue_full = reg(
            &registry,
            IntCounter::new(
                "aiops_queue_full_total",
                "Webhooks answered 503 because the job queue was full.",
            )
            .expect("valid metric"),
        );
        let queue_depth = reg(
            &registry,
            IntGauge::new(
                "aiops_queue_depth",
                "Real (not shadow) jobs queued or waiting.",
            )
            .expect("valid metric"),
        );
        let webhook_duration = reg(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "aiops_webhook_request_duration_seconds",
                    "Time to answer a webhook.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )
            .expect("valid metric"),
        );
        let intake_batch = reg(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "aiops_intake_batch_webhooks",
                    "Webhooks with new alerts written per intake transaction (group commit).",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
            )
            .expect("valid metric"),
        );
        let gv = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let cluster_preflight = gv(
            "aiops_cluster_preflight",
            "Cluster preflight result by check (reachable, permissions): 1 passed, 0 failed.",
            &["check"],
        );
        let cluster_permission_missing = gv(
            "aiops_cluster_permission_missing",
            "1 for each permission the configured playbooks need that the cluster refuses.",
            &["verb", "resource"],
        );
        Metrics {
            registry,
            cluster_preflight,
            cluster_permission_missing,
            alerts_received,
            alerts_duplicate,
            alerts_rejected,
            rule_matches,
            guard_refusals,
            alert_decisions,
            jobs,
            queue_depth,
            queue_full,
            webhook_requests,
            webhook_duration,
            intake_batch,
            escalations,
            reloads,
            api_auth_failures,
            pruned,
            notifications,
            notification_failures,
            http_connections_rejected,
            http_timeouts,
            http_connections_open,
            http_auth_throttled,
        }
    }

    /// Counts one decision on a firing alert in `aiops_alert_decisions_total`; `mode` is the
    /// matching rule's, `None` for `skipped`/`no_rule`.
    pub fn decision(&self, verdict: crate::decision::Verdict, reason: &str, mode: Option<Mode>) {
        self.alert_decisions
            .with_label_values(&[verdict.as_str(), reason, mode.map_or(NO_MODE, Mode::as_str)])
            .inc();
    }

    /// Counts one guard's refusal by a rule of `mode`: in `aiops_guard_refusals_total` and as a
    /// `refused` decision. The mode keeps a shadow rule's refusals apart, so an alert on real
    /// repairs' refusals (`mode!="shadow"`) never fires because of a rule being watched.
    pub fn refusal(&self, reason: &str, mode: Mode) {
        self.guard_refusals
            .with_label_values(&[reason, mode.as_str()])
            .inc();
        self.decision(crate::decision::Verdict::Refused, reason, Some(mode));
    }

    /// Publishes a guard's `reason` at zero for every mode, in both refusal families.
    pub fn publish_refusal(&self, reason: &str) {
        for mode in Mode::ALL {
            self.guard_refusals
                .with_label_values(&[reason, mode.as_str()]);
            self.alert_decisions
                .with_label_values(&["refused", reason, mode.as_str()]);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

/// `aiops_jobs_total{state, mode}`: every job transition, labelled with the job's trust mode.
///
/// One family with a `mode` label rather than a separate shadow family, so a dashboard that
/// sums by `state` still sees every job and one that means real repairs says `mode!="shadow"`;
/// a wrapper rather than the bare vector, so no caller can count a transition without its mode.
#[derive(Clone)]
pub struct JobCounter(IntCounterVec);

impl JobCounter {
    /// Counts `n` jobs of `mode` entering `state`.
    pub fn entered_by(&self, state: &str, mode: Mode, n: u64) {
        self.0.with_label_values(&[state, mode.as_str()]).inc_by(n);
    }

    /// Counts one job of `mode` entering `state`.
    pub fn entered(&self, state: &str, mode: Mode) {
        self.entered_by(state, mode, 1);
    }

    /// Publishes `state` at zero for every mode, so `increase()` sees the first transition.
    pub fn publish(&self, state: &str) {
        for mode in Mode::ALL {
            self.0.with_label_values(&[state, mode.as_str()]);
        }
    }

    /// The count of `mode` jobs that entered `state` (tests and the queue gauge's checks).
    pub fn get(&self, state: &str, mode: Mode) -> u64 {
        self.0.with_label_values(&[state, mode.as_str()]).get()
    }
}
