//! aiops: turns Prometheus Alertmanager alerts into safe, verified, rate-limited repairs.
//!
//! The path of one alert: [`http`] authenticates and bounds the webhook, [`alert`] parses it,
//! [`pipeline`] records it in the [`store`], deduplicates, matches [`rules`] and applies the
//! guards, and [`executor`] workers run the job through its states. See docs/architecture.md §1.
//!
//! [`app`] builds these services from [`config::Settings`], once, for `aiops serve` ([`daemon`])
//! and every command of the binary.

#![warn(missing_docs)]

pub mod alert;
pub mod app;
pub mod approval;
pub mod auth;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod decision;
pub mod definitions;
pub mod deploy;
pub mod duration;
pub mod embedded;
pub mod executor;
pub mod gitops;
pub mod http;
pub mod job;
pub mod k8s_name;
pub mod kb;
pub mod maintenance;
pub mod manifests;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod pipeline;
pub mod playbook;
pub mod preflight;
pub mod quantity;
pub mod rbac;
pub mod replay;
pub mod rules;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod ui;

/// Every binary linking this crate (the daemon, `aiops test-playbook`, tests, benches) counts
/// the memory each playbook run holds, so `playbook.max_memory` holds wherever a playbook
/// runs: see [`playbook::limits`].
#[global_allocator]
static ALLOCATOR: playbook::limits::CountingAlloc = playbook::limits::CountingAlloc;
