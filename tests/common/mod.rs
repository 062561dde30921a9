//! Shared support for the integration tests, one submodule per concern:
//!
//! - [`app`]: a daemon for one test ([`TestApp`]): `aiops serve` as a process
//!   ([`TestApp::spawn`]) or on the test's runtime ([`TestApp::spawn_app`]), HTTP, its store,
//!   waits on its jobs and metrics;
//! - [`db`]: a store per test on SQLite or PostgreSQL, and [`both_backends!`];
//! - [`payload`]: webhook payloads and the recorded Alertmanager fixtures;
//! - [`api`]: API tokens and authorised calls;
//! - [`stand_ins`]: recording HTTP and SMTP servers for the services the daemon calls;
//! - [`process`]: the binary as a child process (`serve`, one-shot commands);
//! - [`programs`]: other programs a test starts (found on PATH, stopped by PID);
//! - [`dnsmasq`]: Debian's dnsmasq as a test's DNS server;
//! - [`git`], [`git_http`]: the git CLI, test repositories, and smart HTTP serving them;
//! - [`in_process`]: the daemon on the test's runtime;
//! - [`wait`]: waiting on a condition with a deadline;
//! - [`files`]: the repository's files.
//!
//! Each test binary (tests/suite.rs and the control-plane ones) compiles this module whole
//! (`mod common;`) and uses part of it, so a helper one binary leaves unused is used by another:
//! `dead_code` is allowed here, once, for that reason. The names the tests use most are re-exported at this level.

#![allow(dead_code)]

pub mod api;
pub mod app;
pub mod console;
pub mod db;
pub mod dnsmasq;
pub mod files;
pub mod git;
pub mod git_http;
pub mod in_process;
pub mod payload;
pub mod process;
pub mod programs;
pub mod stand_ins;
pub mod wait;

// The names most tests use, at the paths they have always had (`common::TestApp`,
// `common::run_cli` …). A binary that uses some of them leaves the others unused.
#[allow(unused_imports)]
pub use app::{Spawn, TestApp};
#[allow(unused_imports)]
pub use db::{Db, TestDb, count_rows, cutoffs, in_ci, postgres_available, raw_db};
#[allow(unused_imports)]
pub use files::repo;
#[allow(unused_imports)]
pub use payload::{fixture, minutes_ago, payload};
#[allow(unused_imports)]
pub use process::{run_cli, start};
