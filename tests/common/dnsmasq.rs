//! Debian's `dnsmasq` as the DNS server of a test, on 127.0.0.1: it answers the records a test
//! gives it and nothing else (no upstream, no /etc/hosts, no configuration file). Shared by the
//! DNS checks of tests/deploy_onboarding.rs and the deployment of tests/real_cluster_deploy.rs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aiops::deploy::dns;

use super::programs::{Proc, require, start_listening};

/// dnsmasq serving the records it was started with; killed by PID on drop.
pub struct Dnsmasq {
    pub proc: Proc,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// dnsmasq at `bin` with `records` (its own options: `--host-record=NAME,ADDRESS`,
    /// `--cname=ALIAS,TARGET`, `--local=/DOMAIN/` …), listening on a free port of 127.0.0.1.
    pub async fn start(bin: &Path, records: &[&str]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("dnsmasq.pid");
        let (proc, port) = start_listening("dnsmasq", dir.path(), |port| {
            let mut cmd = Command::new(bin);
            cmd.args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--log-queries",
                "--log-facility=-",
            ])
            .args(records)
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", pid_file.display()));
            cmd
        })
        .await;
        Dnsmasq {
            proc,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
    }

    /// dnsmasq with `records` ([`Dnsmasq::start`]), or `None` (skipped, saying why) outside CI
    /// when it is not installed; in CI its absence fails the test.
    pub async fn require(records: &[&str]) -> Option<Dnsmasq> {
        let bin = require(&["dnsmasq"], "apt-get install dnsmasq-base")?.remove(0);
        Some(Dnsmasq::start(&bin, records).await)
    }

    /// Resolver options asking this server only, once, with a short timeout.
    pub fn options(&self) -> dns::Options {
        dns::Options {
            nameserver: Some(self.addr),
            timeout: Duration::from_secs(2),
            attempts: 1,
        }
    }
}
