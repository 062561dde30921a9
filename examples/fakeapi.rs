//! The fake Kubernetes API server of the tests (tests/fakeapi), runnable on its own for
//! `scripts/demo.sh`: a Deployment `prod/web` whose pods were OOMKilled, served on 127.0.0.1.
//!
//! This is a fake, not a conformant API server (see tests/fakeapi/mod.rs): it exists so a
//! newcomer can watch a whole repair without a cluster. It writes a kubeconfig that reaches it,
//! prints every change aiops makes, and exits on SIGTERM or Ctrl-C.
//!
//! Usage: `cargo run --example fakeapi -- KUBECONFIG_PATH`

#[path = "../tests/fakeapi/mod.rs"]
mod fakeapi;

use std::time::Duration;

use fakeapi::FakeApi;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(kubeconfig) = std::env::args().nth(1) else {
        eprintln!("usage: fakeapi KUBECONFIG_PATH");
        std::process::exit(2);
    };
    let api = FakeApi::start().await;
    api.add_deployment(
        "prod",
        "web",
        2,
        &[("app", "web:1", Some("256Mi"), Some("512Mi"))],
    );
    // The pods restarted after an OOM kill, as `kubectl describe pod` would show.
    for pod in api.pods("prod") {
        let name = pod.metadata.name.unwrap_or_default();
        api.edit("Pod", "prod", &name, |v| {
            v["status"]["containerStatuses"] = json!([{
                "name": "app", "ready": true, "restartCount": 3, "image": "web:1", "imageID": "web:1",
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                "state": {"running": {}}
            }]);
        });
    }
    api.write_kubeconfig(std::path::Path::new(&kubeconfig));
    println!(
        "fake API server on {}: Deployment prod/web, 2 pods last terminated OOMKilled, memory limit {}",
        api.url(),
        limit(&api)
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
        }
        let log = api.recorded();
        for r in log.iter().skip(seen).filter(|r| r.method != "GET") {
            let path = r.path_query.split('?').next().unwrap_or("");
            if path.ends_with("/events") {
                let reason = r
                    .body
                    .as_ref()
                    .and_then(|b| b["reason"].as_str())
                    .unwrap_or("");
                let message = r
                    .body
                    .as_ref()
                    .and_then(|b| b["message"].as_str())
                    .unwrap_or("");
                println!("cluster: {} {path}: event {reason}: {message}", r.method);
            } else {
                println!(
                    "cluster: {} {path} (memory limit now {})",
                    r.method,
                    limit(&api)
                );
            }
        }
        seen = log.len();
    }
}

fn limit(api: &FakeApi) -> String {
    api.deployment("prod", "web")
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.resources)
        .and_then(|r| r.limits)
        .and_then(|l| l.get("memory").map(|q| q.0.clone()))
        .unwrap_or_else(|| "none".into())
}
