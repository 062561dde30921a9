//! The companion deploy module: one app spec → the app's Kubernetes objects, its monitoring
//! (ServiceMonitor, PrometheusRule, Grafana dashboard) and the Alertmanager route back to the
//! daemon, so a new app is repaired by the shipped rules from its first minute.
//!
//! - [`spec`]: the app spec (YAML or JSON) and its validation.
//! - [`render`]: minijinja templates (embedded; a directory overrides them) → objects.
//! - [`steps`]: a deployment in recorded steps (DNS, detection, namespace, build, app,
//!   ingress, TLS, monitoring, auto-repair), run by `aiops deploy` or the daemon's worker.
//! - [`apply`]: server-side apply (field manager `aiops`), the Job and rollout waits.
//! - [`build`]: a git app's image, built in the cluster by a Kaniko Job.
//! - [`detect`]: which framework a source (directory, upload, git URL) is, from its files.
//! - [`dns`]: whether the app's domain resolves to the ingress before a deploy.
//! - [`catalog`]: the frameworks, plans, source types and spec fields (`GET /api/templates`).
//! - [`grafana`]: the dashboard pushed through Grafana's HTTP API, into a folder per app.
//!
//! Independent of the alert pipeline: nothing here imports `pipeline`, `executor` or
//! `playbook`. The link is data: the PrometheusRule's `auto_repair` labels are the values the
//! rules in `rules/` match (a test loads those rules and checks every label).

pub mod apply;
pub mod build;
pub mod catalog;
pub mod detect;
pub mod dns;
pub mod grafana;
pub mod render;
pub mod spec;
pub mod steps;

pub use render::{Manifest, Options, Rendered, render};
pub use spec::AppSpec;
