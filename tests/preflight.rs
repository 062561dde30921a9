//! A real install's first minutes: `aiops serve` from any directory on the embedded rules and
//! playbooks, `aiops init` and `check` on what it wrote, and the cluster preflight
//! (`aiops check --cluster`, and at serve) against an unreachable server and the real control
//! plane (`tests/control_plane`) as a ServiceAccount with a full and a deliberately short role.

mod common;
mod control_plane;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{repo, run_cli};
use control_plane::{KubeEnv, TIMEOUT, printed_cluster_role_rules, service_account_kubeconfig};
use serde_json::{Value, json};

/// A daemon started by a test; killed (by PID) when dropped.
struct Daemon {
    child: Child,
    addr: std::net::SocketAddr,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// `aiops serve` in `cwd` with exactly `env` (plus a port-0 listener and quiet sqlx).
    async fn start(cwd: &Path, env: &[(&str, String)]) -> Daemon {
        let mut all: Vec<(String, String)> = vec![
            ("AIOPS_LISTEN".into(), "127.0.0.1:0".into()),
            ("AIOPS_LOG".into(), "info,sqlx=warn".into()),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let (child, addr, logs) = common::start(cwd, &all).await;
        Daemon { child, addr, logs }
    }

    /// `aiops serve` in `dir` against the cluster of `kubeconfig`, its SQLite store in `dir`.
    async fn with_kubeconfig(dir: &Path, kubeconfig: &Path) -> Daemon {
        let store = format!("sqlite://{}?mode=rwc", dir.join("aiops.db").display());
        Daemon::start(
            dir,
            &[
                ("AIOPS_KUBECONFIG", kubeconfig.display().to_string()),
                ("AIOPS_DATABASE_URL", store),
            ],
        )
        .await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn ready(&self) -> (u16, Value) {
        let (status, body) = self.get("/-/ready").await;
        (status, serde_json::from_str(&body).unwrap())
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Polls `/-/ready` until its `cluster.status` is `want`; returns the whole body.
    async fn wait_cluster_status(&self, want: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (status, body) = self.ready().await;
            assert_eq!(
                status, 200,
                "readiness never depends on the cluster: {body}"
            );
            if body["cluster"]["status"] == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "cluster status never became {want:?}: {body}\nlogs:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn env_map(pairs: &[(&'static str, String)]) -> HashMap<&'static str, String> {
    pairs.iter().cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// Embedded defaults and `aiops init`

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_from_an_empty_directory_uses_the_embedded_rules_and_repairs_an_alert() {
    let cwd = tempfile::tempdir().unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        cwd.path().join("aiops.db").display()
    );
    let daemon = Daemon::start(
        cwd.path(),
        &[
            ("AIOPS_DATABASE_URL", db.clone()),
            (
                "AIOPS_CLUSTER_STATE_FILE",
                repo()
                    .join("tests/fixtures/cluster-state.yaml")
                    .display()
                    .to_string(),
            ),
        ],
    )
    .await;
    let (status, body) = daemon.ready().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rules"], 5, "{body}");
    assert_eq!(body["playbooks"], 5, "{body}");
    assert_eq!(body["cluster"]["status"], "not configured", "{body}");
    assert!(
        daemon.log_text().contains(r#""rules_from":"embedded""#),
        "{}",
        daemon.log_text()
    );

    // A real Alertmanager payload whose alerts ask for a restart of prod/demo.
    let r = reqwest::Client::new()
        .post(format!("http://{}/webhook/alertmanager", daemon.addr))
        .header("content-type", "application/json")
        .body(common::fixture("am-0.25-firing-grouped-3.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let store = aiops::store::Store::connect(&db, &aiops::store::Options::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = store.jobs().await.unwrap();
        if let Some(job) = jobs.iter().find(|j| j.playbook == "restart") {
            assert_eq!(job.rule, "restart", "the shipped rule matched: {job:#?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no restart job: {jobs:#?}\nlogs:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn check_in_an_empty_directory_says_the_embedded_set_is_used() {
    let cwd = tempfile::tempdir().unwrap();
    let (status, out, err) = run_cli(cwd.path(), &["check"], &HashMap::new());
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("rules: embedded (5 rules)\n"), "{out}");
    assert!(out.contains("playbooks: embedded (5 playbooks)\n"), "{out}");
}

#[test]
fn a_configured_rules_directory_that_does_not_exist_is_an_error_not_a_fallback() {
    let cwd = tempfile::tempdir().unwrap();
    let missing = cwd.path().join("rulez");
    let (status, out, err) = run_cli(
        cwd.path(),
        &["check"],
        &env_map(&[("AIOPS_RULES_DIR", missing.display().to_string())]),
    );
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("rules directory {}", missing.display())),
        "{err}"
    );
    assert!(!out.contains("rules: embedded"), "{out}");
}

#[test]
fn init_writes_a_set_that_check_passes_from_another_directory_and_never_overwrites_it() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("team-ops");
    let (status, out, err) = run_cli(
        base.path(),
        &["init", dir.to_str().unwrap()],
        &HashMap::new(),
    );
    assert!(status.success(), "{out}{err}");
    let dir = dir.canonicalize().unwrap();
    for f in [
        "aiops.yaml",
        "rules/auto-repair.yaml",
        "playbooks/restart.rhai",
        "playbooks/cleanup.rhai",
    ] {
        assert!(dir.join(f).is_file(), "{f} written: {out}");
    }
    let settings = std::fs::read_to_string(dir.join("aiops.yaml")).unwrap();
    assert!(settings.contains("#listen: 127.0.0.1:9095"), "{settings}");

    // From an empty directory elsewhere, with only the written settings file.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = dir.join("aiops.yaml");
    let (status, out, err) = run_cli(
        elsewhere.path(),
        &["--config", config.to_str().unwrap(), "check"],
        &HashMap::new(),
    );
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains(&format!(
            "rules: {} (5 rules)\n",
            dir.join("rules").display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "playbooks: {} (5 playbooks)\n",
            dir.join("playbooks").display()
        )),
        "{out}"
    );

    // A team's edit survives a second init; --force is the only way over it.
    std::fs::write(dir.join("playbooks/restart.rhai"), "success(\"ours\");").unwrap();
    let (status, _, err) = run_cli(
        base.path(),
        &["init", dir.to_str().unwrap()],
        &HashMap::new(),
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "{} already exists (use --force to overwrite)",
            dir.join("aiops.yaml").display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("playbooks/restart.rhai")).unwrap(),
        "success(\"ours\");"
    );
    let (status, _, err) = run_cli(
        base.path(),
        &["init", "--force", dir.to_str().unwrap()],
        &HashMap::new(),
    );
    assert!(status.success(), "{err}");
    assert_ne!(
        std::fs::read_to_string(dir.join("playbooks/restart.rhai")).unwrap(),
        "success(\"ours\");"
    );
}

// ---------------------------------------------------------------------------------------------
// Cluster preflight

#[test]
fn check_cluster_without_a_kubernetes_backend_fails_and_says_what_to_set() {
    let cwd = tempfile::tempdir().unwrap();
    let (status, out, err) = run_cli(cwd.path(), &["check", "--cluster"], &HashMap::new());
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("cluster: no Kubernetes backend configured: set cluster.kubeconfig (AIOPS_KUBECONFIG) or cluster.in_cluster (AIOPS_KUBE_IN_CLUSTER=true)"),
        "{err}"
    );
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A kubeconfig naming `server`, with a token (nothing ever answers, so it is never checked).
fn kubeconfig_for(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: not-a-real-token\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_named_by_url_in_check_and_at_serve_without_unreadiness() {
    let dir = tempfile::tempdir().unwrap();
    let server = format!("https://127.0.0.1:{}", closed_port());
    let kubeconfig = kubeconfig_for(dir.path(), &server);
    let env = [("AIOPS_KUBECONFIG", kubeconfig.display().to_string())];
    let (status, out, err) = run_cli(dir.path(), &["check", "--cluster"], &env_map(&env));
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("cluster:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with(&format!("cluster: API server {server} unreachable: ")),
        "{line}"
    );
    assert!(!out.contains("reachable"), "{out}");

    // serve: starts, stays ready, and says why the cluster is not usable.
    let daemon = Daemon::with_kubeconfig(dir.path(), &kubeconfig).await;
    let body = daemon.wait_cluster_status("unreachable").await;
    assert_eq!(body["cluster"]["server"], server, "{body}");
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(
        metrics.contains("aiops_cluster_preflight{check=\"reachable\"} 0"),
        "{metrics}"
    );
    let logs = daemon.log_text();
    assert!(
        logs.contains(&format!("cluster: API server {server} unreachable")),
        "{logs}"
    );
    assert!(
        !logs.contains(r#""message":"Kubernetes backend configured""#),
        "no claim of a working backend: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_printed_cluster_role_every_permission_is_granted() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("preflight-all").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(
        env,
        &ns.name,
        &printed_cluster_role_rules(&["manifests"]),
        &dir.path().join("kubeconfig"),
    )
    .await;
    let server = kube::config::Kubeconfig::read_from(&kubeconfig)
        .unwrap()
        .clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap();
    let (status, out, err) = run_cli(
        dir.path(),
        &["check", "--cluster"],
        &env_map(&[("AIOPS_KUBECONFIG", kubeconfig.display().to_string())]),
    );
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains(&format!(
            "cluster: API server {} reachable (Kubernetes v1.34.4)\n",
            server.trim_end_matches('/')
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "cluster: all 12 permissions the playbooks need are granted in every namespace\n"
        ),
        "{out}"
    );
    // The optional GitOps rights are not in this role (`manifests --gitops` adds them): told as
    // information, and the check still passes.
    assert!(out.contains(GITOPS_NOT_GRANTED), "{out}");
}

/// The preflight's line when the optional GitOps rights are missing.
const GITOPS_NOT_GRANTED: &str = "cluster: optional GitOps permissions not granted (get argoproj.io/applications, patch argoproj.io/applications, get helm.toolkit.fluxcd.io/helmreleases, patch helm.toolkit.fluxcd.io/helmreleases): without them `gitops: hold` on Argo CD and HelmRelease objects becomes skip (aiops manifests --gitops adds them; docs/gitops.md)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_role_is_reported_with_the_exact_rule_to_add_in_check_and_at_serve() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("preflight-short").await;
    let dir = tempfile::tempdir().unwrap();
    // The printed role, but Deployments, StatefulSets and DaemonSets may only be read.
    let short: Vec<Value> = printed_cluster_role_rules(&["manifests"])
        .into_iter()
        .map(|mut r| {
            if r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "deployments")
            {
                r["verbs"] = json!(["get"]);
            }
            r
        })
        .collect();
    let kubeconfig =
        service_account_kubeconfig(env, &ns.name, &short, &dir.path().join("kubeconfig")).await;
    let (status, out, err) = run_cli(
        dir.path(),
        &["check", "--cluster"],
        &env_map(&[("AIOPS_KUBECONFIG", kubeconfig.display().to_string())]),
    );
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(out.contains("reachable (Kubernetes v1.34.4)"), "{out}");
    let expected = "\
cluster: missing permission: patch apps/daemonsets (needed by restart (restart), set_memory (oom_handler, scale_memory))
cluster: missing permission: patch apps/deployments (needed by restart (restart), rollback (rollback), set_memory (oom_handler, scale_memory))
cluster: missing permission: patch apps/statefulsets (needed by restart (restart), set_memory (oom_handler, scale_memory))
cluster: add to the ClusterRole (rules:):
  - apiGroups: [\"apps\"]
    resources: [\"deployments\", \"statefulsets\", \"daemonsets\"]
    verbs: [\"patch\"]
"
    .to_string()
        + GITOPS_NOT_GRANTED;
    // Exactly these lines (stderr may carry log lines too).
    let report: String = err
        .lines()
        .filter(|l| l.starts_with("cluster:") || l.starts_with("  "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(report, expected, "{err}");

    // serve: ready, the detail and the metrics say what is missing.
    let daemon = Daemon::with_kubeconfig(dir.path(), &kubeconfig).await;
    let body = daemon.wait_cluster_status("missing permissions").await;
    assert_eq!(
        body["cluster"]["missing"],
        json!([
            "patch apps/daemonsets",
            "patch apps/deployments",
            "patch apps/statefulsets"
        ]),
        "{body}"
    );
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(
        metrics.contains(
            "aiops_cluster_permission_missing{resource=\"apps/deployments\",verb=\"patch\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiops_cluster_preflight{check=\"permissions\"} 0"),
        "{metrics}"
    );
    assert!(
        daemon
            .log_text()
            .contains("cluster: missing permission: patch apps/deployments"),
        "{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaling_playbook_needs_the_scale_subresource_which_the_printed_role_grants() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    common::files::write_definitions(
        dir.path(),
        &[(
            "scale.yaml",
            "rules:\n  - name: scale-up\n    matchers: ['auto_repair=\"scale_up\"']\n    playbook: scale_up\n",
        )],
        &[(
            "scale_up.rhai",
            "scale(target, 3);\nwait_rollout(target);\nsuccess(\"scaled\");\n",
        )],
    );
    let check = |kubeconfig: &Path| {
        let mut vars = common::files::definitions_env(
            &dir.path().join("rules"),
            &dir.path().join("playbooks"),
        );
        vars.insert("AIOPS_KUBECONFIG", kubeconfig.display().to_string());
        run_cli(dir.path(), &["check", "--cluster"], &vars)
    };
    let printed = printed_cluster_role_rules(&["manifests"]);

    // The printed role without its scale rule: the review asks for the subresource itself.
    let ns = env.namespace("preflight-scale").await;
    let short = control_plane::without_rule(&printed, "deployments/scale");
    let kubeconfig =
        service_account_kubeconfig(env, &ns.name, &short, &dir.path().join("short")).await;
    let (status, out, err) = check(&kubeconfig);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let report: String = err
        .lines()
        .filter(|l| l.starts_with("cluster:") || l.starts_with("  "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        report,
        "\
cluster: missing permission: patch apps/deployments/scale (needed by scale (scale_up))
cluster: missing permission: patch apps/statefulsets/scale (needed by scale (scale_up))
cluster: add to the ClusterRole (rules:):
  - apiGroups: [\"apps\"]
    resources: [\"deployments/scale\", \"statefulsets/scale\"]
    verbs: [\"patch\"]
",
        "{err}"
    );

    // The printed role grants it.
    let ns = env.namespace("preflight-scale-all").await;
    let kubeconfig =
        service_account_kubeconfig(env, &ns.name, &printed, &dir.path().join("all")).await;
    let (status, out, err) = check(&kubeconfig);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains(
            "cluster: all 6 permissions the playbooks need are granted in every namespace\n"
        ),
        "{out}"
    );
}
