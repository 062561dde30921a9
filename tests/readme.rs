//! README.md's example commands do what README.md says.
//!
//! Every shell example of the README (fenced `sh` blocks, and `console` transcripts of `$ `
//! commands with their output) is either run by a test below, which then checks what the README
//! claims about it (the output shown, the exit status, the effect: a file written, a daemon
//! answering, a repair recorded), or listed in [`EXAMPLES`] as an exception with the reason and
//! where its claim is verified instead. A new example in neither list fails
//! [`every_shell_example_in_the_readme_is_run_or_excepted_with_a_reason`] with what to do.
//!
//! How an example is run (each in a clean copy of the repository or an empty directory, with
//! `bash -euo pipefail`, `aiops` on PATH being the binary under test, port 9095 moved to a free
//! port, daemons "in another shell" started in the background and waited on) is in
//! `readme/harness.rs`. Examples that need the real control plane run when it is built, as in
//! tests/real_cluster.rs (`CI=true` makes its absence a failure).

mod common;
mod control_plane;
#[path = "readme/harness.rs"]
mod harness;

use std::time::Duration;

use common::stand_ins::{Answer, Smtp, StandIn};
use control_plane::{KubeEnv, client_from, printed_cluster_role_rules, service_account_kubeconfig};
use harness::{Example, Kind, block, blocking, blocks};
use serde_json::{Value, json};

/// How one README example is checked: by the test named, or not run, for a reason.
enum Check {
    /// Run by this test of this file.
    Run(&'static str),
    /// Not run here: why, and where what it claims is verified instead.
    Excepted {
        why: &'static str,
        verified_in: &'static str,
    },
}

/// Every shell example of the README, by a text only it contains (its first command, as a
/// rule), and how it is checked.
const EXAMPLES: &[(&str, Check)] = &[
    (
        "cargo run --release -- serve",
        Check::Run("the_quick_start_serves_on_the_embedded_defaults_from_an_empty_directory"),
    ),
    (
        "$ aiops check --cluster",
        Check::Run("the_preflight_transcript_is_what_check_prints_for_a_role_without_patch"),
    ),
    (
        "cargo test --test real_cluster",
        Check::Excepted {
            why: "it is a test of this suite: running it from here would run it twice",
            verified_in: "cargo test (.ci/run); the_smoke_test_the_readme_names_exists checks \
                          the name",
        },
    ),
    (
        "kubeconfig=$(scripts/kube-env up",
        Check::Run("the_control_plane_by_hand_restarts_the_deployment_the_alert_names"),
    ),
    (
        "aiops --config aiops.yaml notify test oncall-tg",
        Check::Run("the_notify_test_transcript_prints_the_telegram_answer_shown"),
    ),
    (
        "cargo run -- test-playbook oom_handler",
        Check::Run("the_test_playbook_example_ends_in_success"),
    ),
    (
        "aiops token issue --sub alice",
        Check::Run("the_api_example_lists_repairs_with_a_token_it_minted"),
    ),
    (
        "aiops user add alice --role editor --apps shop,blog",
        Check::Excepted {
            why: "the first line asks for the password on a terminal, the second reads a \
                  secret file of the operator's machine",
            verified_in: "tests/console_auth.rs: signing_in_starts_a_session_that_signing_out_ends \
                          adds the user with the password on stdin and signs in at /ui/login; \
                          changing_a_password_signs_the_user_out_everywhere_and_removing_them_too \
                          runs user list and user remove",
        },
    ),
    (
        "aiops manifests --deploy-role --deploy-service-account ci/deployer",
        Check::Run("the_deploy_role_example_creates_the_role_and_both_bindings"),
    ),
    (
        "helm install aiops charts/aiops",
        Check::Excepted {
            why: "needs helm, a cluster with a storage provisioner (the claim binds a volume) \
                  and installs the same release name twice, as alternatives",
            verified_in: "tests/chart.rs: helm lint and helm template with both value sets, \
                          the rendered chart installed on the real control plane with its \
                          webhook-token Secret until its Deployment is available",
        },
    ),
    (
        "scripts/demo.sh",
        Check::Excepted {
            why: "it builds aiops and the fake API server with the release profile (minutes \
                  from scratch), which the test suite never does",
            verified_in: "tests/e2e.rs the_demo_script_shows_a_newcomer_the_whole_loop runs \
                          the same script on the debug binaries (AIOPS_BIN, FAKEAPI_BIN)",
        },
    ),
    (
        "cargo install --locked cargo-fuzz",
        Check::Excepted {
            why: "installs a cargo subcommand and builds the fuzz package in release",
            verified_in: ".ci/run installs the same cargo-fuzz and runs scripts/fuzz.sh on \
                          every target",
        },
    ),
];

/// The names of the tests in this file, for [`EXAMPLES`]'s `Run` entries to be checked against.
const TESTS: &str = include_str!("readme.rs");

#[test]
fn every_shell_example_in_the_readme_is_run_or_excepted_with_a_reason() {
    let mut problems = Vec::new();
    let mut used = vec![0usize; EXAMPLES.len()];
    for b in blocks() {
        match b.kind() {
            Err(e) => problems.push(e),
            Ok(Kind::Other) => {}
            Ok(_) => {
                let matching: Vec<usize> = (0..EXAMPLES.len())
                    .filter(|&i| b.body.contains(EXAMPLES[i].0))
                    .collect();
                for &i in &matching {
                    used[i] += 1;
                }
                match matching.len() {
                    1 => {}
                    0 => problems.push(format!(
                        "README.md line {}: a new shell example, run by no test and excepted \
                         nowhere:\n{}\nAdd it to EXAMPLES in tests/readme.rs: Check::Run with a \
                         test that runs it (harness::Example) and checks what the README says it \
                         does, or Check::Excepted with why it cannot run here and where its \
                         claim is verified instead",
                        b.line, b.body
                    )),
                    _ => problems.push(format!(
                        "README.md line {}: several EXAMPLES entries match this example; make \
                         their keys tell it apart",
                        b.line
                    )),
                }
            }
        }
    }
    for (i, (key, check)) in EXAMPLES.iter().enumerate() {
        if used[i] != 1 {
            problems.push(format!(
                "EXAMPLES entry {key:?} matches {} examples of README.md, not one: the README \
                 changed; update the entry",
                used[i]
            ));
        }
        match check {
            Check::Run(test)
                if !TESTS.contains(&format!("async fn {test}()"))
                    && !TESTS.contains(&format!("\nfn {test}()")) =>
            {
                problems.push(format!("EXAMPLES entry {key:?}: no test named {test}"))
            }
            Check::Excepted { why, verified_in } if why.is_empty() || verified_in.is_empty() => {
                problems.push(format!(
                    "EXAMPLES entry {key:?}: an exception says why and where"
                ))
            }
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_smoke_test_the_readme_names_exists() {
    let b = block("cargo test --test real_cluster");
    let name = b
        .body
        .split_whitespace()
        .last()
        .expect("a test name after cargo test --test real_cluster");
    let source = std::fs::read_to_string(common::repo().join("tests/real_cluster.rs")).unwrap();
    assert!(
        source.contains(&format!("async fn {name}()")),
        "README names {name}, which tests/real_cluster.rs does not have"
    );
}

/// `cargo run --release -- serve` "starts the daemon on its embedded defaults (127.0.0.1:9095,
/// SQLite ./aiops.db)": the built binary with the same arguments, from an empty directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_serves_on_the_embedded_defaults_from_an_empty_directory() {
    let b = block("cargo run --release -- serve");
    let ex = Example::in_empty_dir().skip(
        "cargo test",
        "the test suite itself, which .ci/run runs and this test is part of",
    );
    let port = ex.port;
    let (ex, ran) = blocking(move || {
        let ran = ex.run(&b);
        (ex, ran)
    })
    .await;
    ran.assert_success();
    // The daemon answers (the harness waited for /-/ready) with its store in ./aiops.db and
    // the rules embedded in the binary (the directory has none).
    let ready: Value = reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ex.path("aiops.db").is_file(),
        "no ./aiops.db\n{}",
        ran.report()
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
        .arg("check")
        .current_dir(ex.dir.path())
        .env_clear()
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("rules: embedded ("), "{said}\n{ready}");
    // The port was moved (harness); the default it stands for is the one the README names.
    let defaults = aiops::config::Settings::load_with(None, |_| None).unwrap();
    assert_eq!(defaults.listen.to_string(), "127.0.0.1:9095");
    assert_eq!(defaults.database_url.expose(), "sqlite://aiops.db?mode=rwc");
}

/// The transcript of `aiops check --cluster` on a cluster whose role lacks `patch` on
/// Deployments: the context is a ServiceAccount bound to the ClusterRole `aiops manifests`
/// prints, less that verb, on the real control plane. The API server's address in the transcript
/// (`https://127.0.0.1:6443`) is the test cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_transcript_is_what_check_prints_for_a_role_without_patch() {
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("readme-preflight").await;
    let mut rules = Vec::new();
    for rule in printed_cluster_role_rules(&["manifests"]) {
        let resources = rule["resources"].as_array().unwrap().clone();
        if !resources.iter().any(|r| r == "deployments") {
            rules.push(rule);
            continue;
        }
        let verbs: Vec<&Value> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| *v != "patch")
            .collect();
        rules.push(
            json!({"apiGroups": rule["apiGroups"], "resources": ["deployments"], "verbs": verbs}),
        );
        let others: Vec<&Value> = resources.iter().filter(|r| *r != "deployments").collect();
        rules.push(
            json!({"apiGroups": rule["apiGroups"], "resources": others, "verbs": rule["verbs"]}),
        );
    }
    let ex = Example::in_clean_copy();
    let kubeconfig =
        service_account_kubeconfig(env, &ns.name, &rules, &ex.path("sa-kubeconfig")).await;
    let written: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    let server = written["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("the kubeconfig's server")
        .to_string();
    let ex = ex.env("AIOPS_KUBECONFIG", kubeconfig.to_str().unwrap());
    let b = block("$ aiops check --cluster");
    let transcript = b.transcript();
    blocking(move || {
        for (command, shown) in transcript {
            let ran = ex.run_command(&command);
            // "It exits 1 when anything is missing".
            assert_eq!(ran.status.code(), Some(1), "{}", ran.report());
            let shown: Vec<String> = shown
                .iter()
                .map(|l| l.replace("https://127.0.0.1:6443", server.trim_end_matches('/')))
                .collect();
            assert_lines_in_order(&ran.stdout, &shown, &ran.report());
        }
    })
    .await;
}

/// The README's "By hand" control plane session, run as written: `scripts/kube-env up`, the
/// Deployment (kubectl when installed, else through the API: see the harness), `aiops serve` in
/// another shell, the alert posted with curl; before `scripts/kube-env down` the test waits, as
/// a user would, until the repair finished. Then the store says the restart succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_by_hand_restarts_the_deployment_the_alert_names() {
    // Only to decide, as tests/real_cluster.rs does, whether a control plane can run here: the
    // example starts its own.
    if KubeEnv::get().await.is_none() {
        return;
    }
    let b = block("kubeconfig=$(scripts/kube-env up");
    let ex = Example::in_clean_copy()
        // Never outlive the test, even if the example fails before its `down`.
        .env("KUBE_ENV_PARENT_PID", &std::process::id().to_string())
        .before(
            "scripts/kube-env down",
            "the repair of default/web to finish",
            r"aiops kb history default/web | grep -Eq '\] (succeeded|failed|escalated|interrupted|cancelled):'",
            Duration::from_secs(120),
        );
    let (ex, ran) = blocking(move || {
        let ran = ex.run(&b);
        (ex, ran)
    })
    .await;
    let supervisor = ex.path("target/kube-env/supervisor.pid");
    ran.assert_success();
    assert!(
        std::fs::read_to_string(&supervisor)
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok())
            // SAFETY: signal 0 only asks whether the process exists.
            .is_none_or(|pid| unsafe { libc::kill(pid, 0) } != 0),
        "scripts/kube-env down left the control plane running"
    );
    let history = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(["kb", "history", "default/web"])
        .current_dir(ex.dir.path())
        .env_clear()
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(
        history.contains("restart [restart] succeeded"),
        "{history}\n{}",
        ran.report()
    );
}

/// `TG_TOKEN=123:abc aiops --config aiops.yaml notify test oncall-tg` prints the answer the
/// transcript shows. aiops.yaml is the README's `notify:` example as written, with every
/// outbound URL pointed at a stand-in (Telegram's and LINE's `api_url`, the webhook's `url`,
/// the SMTP server); the other channels' secrets are left unset, as in the example's shell, so
/// they must not stop this channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_test_transcript_prints_the_telegram_answer_shown() {
    let telegram = StandIn::start().await;
    telegram.default_answer(Answer::new(
        200,
        r#"{"ok":true,"result":{"message_id":42,"date":0,"chat":{"id":-1001234567890,"type":"supergroup"}}}"#,
    ));
    let smtp = Smtp::start("250 OK").await;
    let config = blocks()
        .into_iter()
        .find(|b| b.lang == "yaml" && b.body.contains("oncall-tg:"))
        .expect("the README's notify: example (channel oncall-tg)");
    let mut config: Value = serde_yaml::from_str(&config.body).unwrap();
    for (_, ch) in config["notify"]["channels"].as_object_mut().unwrap() {
        match ch["type"].as_str().unwrap() {
            "telegram" | "line" => ch["api_url"] = json!(telegram.url),
            "webhook" => ch["url"] = json!(format!("{}/aiops", telegram.url)),
            "email" => ch["smtp_url"] = json!(format!("smtp://127.0.0.1:{}", smtp.port)),
            _ => {}
        }
    }
    let ex = Example::in_clean_copy();
    std::fs::write(
        ex.path("aiops.yaml"),
        serde_yaml::to_string(&config).unwrap(),
    )
    .unwrap();
    let b = block("aiops --config aiops.yaml notify test oncall-tg");
    blocking(move || {
        for (command, shown) in b.transcript() {
            let ran = ex.run_command(&command);
            ran.assert_success();
            assert_lines_in_order(&ran.stdout, &shown, &ran.report());
        }
    })
    .await;
    let sent = telegram.requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].path, "/bot123:abc/sendMessage");
    assert_eq!(sent[0].json()["chat_id"], json!("-1001234567890"));
}

/// "Try:" `cargo run -- test-playbook oom_handler …`: the playbook runs offline against the
/// described cluster and ends in success (exit 0).
#[test]
fn the_test_playbook_example_ends_in_success() {
    let b = block("cargo run -- test-playbook oom_handler");
    let ex = Example::in_clean_copy();
    let ran = ex.run(&b);
    ran.assert_success();
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("outcome: success")),
        "{}",
        ran.report()
    );
}

/// The API example: a secret exported, the daemon (in another shell) with it, a token issued
/// with it, and a listing with that token: `{"items": [...], "next_cursor": …}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_example_lists_repairs_with_a_token_it_minted() {
    let b = block("aiops token issue --sub alice");
    let ex = Example::in_empty_dir();
    let ran = blocking(move || ex.run(&b)).await;
    ran.assert_success();
    let listing: Value = serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("curl printed no JSON ({e})\n{}", ran.report()));
    assert!(listing["items"].is_array(), "{}", ran.report());
    assert!(listing.get("next_cursor").is_some(), "{}", ran.report());
}

/// `aiops manifests --deploy-role … | kubectl apply -f -` and the binding for alice, against
/// the real control plane: the ClusterRole holds exactly the printed rules, and both bindings
/// name it. kubectl is required here (the README does not make it optional).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_role_example_creates_the_role_and_both_bindings() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    if which("kubectl").is_none() {
        assert!(
            !common::in_ci(),
            "kubectl is required in CI for this example"
        );
        eprintln!(
            "skipping: no kubectl (tests/real_cluster_deploy.rs binds the printed role itself)"
        );
        return;
    }
    let client = client_from(&env.kubeconfig).await;
    // A cluster reused through AIOPS_TEST_KUBECONFIG may hold them from an earlier run, and
    // `kubectl create` refuses to create what exists.
    let dp = kube::api::DeleteParams::default();
    let _ = kube::Api::<ClusterRole>::all(client.clone())
        .delete("aiops-deploy", &dp)
        .await;
    for name in ["aiops-deploy:ci:deployer", "aiops-deploy-alice"] {
        let _ = kube::Api::<ClusterRoleBinding>::all(client.clone())
            .delete(name, &dp)
            .await;
    }
    let b = block("aiops manifests --deploy-role --deploy-service-account ci/deployer");
    let ex = Example::in_clean_copy().env("KUBECONFIG", env.kubeconfig.to_str().unwrap());
    let ran = blocking(move || ex.run(&b)).await;
    ran.assert_success();
    let role = kube::Api::<ClusterRole>::all(client.clone())
        .get("aiops-deploy")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(role.rules.unwrap()).unwrap(),
        json!(printed_cluster_role_rules(&["manifests", "--deploy-role"]))
    );
    let bindings = kube::Api::<ClusterRoleBinding>::all(client);
    for (name, subject) in [
        (
            "aiops-deploy:ci:deployer",
            json!({"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}),
        ),
        (
            "aiops-deploy-alice",
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}),
        ),
    ] {
        let binding = bindings.get(name).await.unwrap();
        assert_eq!(binding.role_ref.name, "aiops-deploy", "{name}");
        assert_eq!(
            serde_json::to_value(binding.subjects.unwrap()).unwrap(),
            json!([subject]),
            "{name}"
        );
    }
}

/// Asserts that `shown` appear in `output` as whole lines, in this order (other lines may come
/// between: the transcript's `...`, and log lines).
fn assert_lines_in_order(output: &str, shown: &[String], report: &str) {
    let mut lines = output.lines();
    for want in shown {
        assert!(
            lines.any(|l| l == want),
            "the README shows {want:?}, which the command did not print (in this order)\n{report}"
        );
    }
}

/// The path of `program` on PATH, if any.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
