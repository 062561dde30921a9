//! The integration tests that need no Kubernetes control plane, in one test binary.
//!
//! Each `tests/NAME.rs` listed below is a module here (run one with
//! `cargo test --test suite NAME::`), sharing `tests/common` and the fake API server
//! `tests/fakeapi`. They were one binary each; every binary links every dependency (~210 MB in a
//! debug build), so 39 of them took ~8 GB of disk and as many links per `cargo test`, and a full
//! CI machine's disk broke a link (`ld terminated with signal 7 [Bus error]`). The tests change
//! nothing process-wide (no environment or working-directory changes, ports from port 0, a
//! store per test). What they do share now across files is what the tests of one file always
//! shared: the library's process-wide limits, which bind only the daemons run on the test's
//! runtime (`TestApp::spawn_app`: two git fetches at a time, and sign-in checks bounded by the
//! cores), and the two test threads, so a file's timing bounds now run beside other files'
//! tests as they ran beside their own.
//!
//! A filter is a substring of `FILE::test_name`: `intake::` also runs `hardening_intake::`.
//!
//! The tests that use the real control plane (`tests/control_plane`: one per test binary, torn
//! down when the binary exits) stay binaries of their own: chart, preflight, readme,
//! real_cluster, real_cluster_deploy and real_cluster_gitops. Sharing one control plane between
//! them would let one file's cluster-wide objects meet another's.

mod common;
mod fakeapi;

mod api;
mod api_apps;
mod api_repairs;
mod approvals;
mod approvals_chat;
mod cli;
mod console;
mod console_alerts;
mod console_auth;
mod console_browser;
mod console_catalog;
mod console_inbox;
mod console_repairs;
mod deploy_apply;
mod deploy_onboarding;
mod deploy_render;
mod deploy_steps;
mod e2e;
mod fakeapi_selftest;
mod gitops_holds;
mod guards;
mod hardening_http;
mod hardening_intake;
mod hardening_sandbox;
mod image;
mod intake;
mod job_spec_migration;
mod kb;
mod kube_requests;
mod maintenance;
mod manifests;
mod monitor;
mod notify;
mod notify_channels;
mod playbooks;
mod repairs;
mod replay;
mod sandbox;
mod shadow;
