//! The Helm chart (`charts/aiops`): `helm lint` passes, `helm template` renders objects that
//! deserialize into their Kubernetes types and settings the daemon accepts, refuses value sets
//! that cannot run safely, grants exactly the rules `aiops manifests` grants, and — installed
//! into the real control plane of `tests/control_plane` — its Deployment becomes available and
//! its ServiceAccount holds exactly those rights.
//!
//! helm is built from the Go module proxy by `.ci/run` (cached under
//! `~/.cache/aiops/helm/VERSION`); `AIOPS_HELM` names another binary. Without one, outside CI
//! the tests say so and skip; in CI (`CI=true`) that is a failure.

mod control_plane;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use aiops::config::Settings;
use control_plane::{KubeEnv, TIMEOUT, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The helm version `.ci/run` builds.
const HELM_VERSION: &str = "v3.22.0";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The helm binary: `AIOPS_HELM`, the one `.ci/run` caches, or `helm` on PATH.
fn helm() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("AIOPS_HELM") {
        return Some(PathBuf::from(path));
    }
    let cached = std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(format!(".cache/aiops/helm/{HELM_VERSION}/helm")))
        .ok()
        .filter(|p| p.exists());
    cached.or_else(|| {
        Command::new("helm")
            .arg("version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("helm"))
    })
}

/// helm, or `None` (skip) outside CI.
fn helm_or_skip() -> Option<PathBuf> {
    let found = helm();
    if found.is_none() {
        assert!(
            !in_ci(),
            "helm is required in CI (.ci/run builds it from the Go module proxy)"
        );
        eprintln!(
            "skipping: no helm (set AIOPS_HELM, or build it: GOBIN=~/.cache/aiops/helm/{HELM_VERSION} go install helm.sh/helm/v3/cmd/helm@{HELM_VERSION})"
        );
    }
    found
}

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/aiops")
}

/// `helm template RELEASE charts/aiops --namespace NS --set ...`: stdout, or stderr on failure.
fn template(helm: &Path, release: &str, ns: &str, sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(helm);
    cmd.args(["template", release])
        .arg(chart())
        .args(["--namespace", ns]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("running helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The rendered documents, as JSON values (comments and empty documents dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The one document of `kind` (and name ending in `suffix`), as its k8s-openapi type; checks
/// nothing was dropped in deserializing (k8s-openapi ignores unknown fields).
fn one<T: DeserializeOwned + serde::Serialize>(docs: &[Value], kind: &str, suffix: &str) -> T {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"].as_str().unwrap().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} *{suffix} expected");
    let typed: T = serde_json::from_value(found[0].clone()).unwrap();
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        found[0],
        "fields lost in {kind}"
    );
    typed
}

/// The rules as a set of `group/resource:verb`.
fn grants(rules: &[PolicyRule]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    set.insert(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    set
}

/// The ClusterRole rules of `aiops manifests`.
fn manifests_rules() -> Vec<PolicyRule> {
    let yaml = aiops::manifests::render(&aiops::manifests::Options::default()).unwrap();
    let docs = documents(&yaml);
    let role: ClusterRole = one(&docs, "ClusterRole", "");
    role.rules.unwrap()
}

/// The settings file of the chart's ConfigMap, loaded as `serve` loads it.
fn settings(docs: &[Value]) -> Settings {
    let cm: ConfigMap = one(docs, "ConfigMap", "-config");
    let text = cm.data.unwrap()["aiops.yaml"].clone();
    Settings::from_yaml(&text, Path::new("aiops.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn helm_lint_passes_on_the_chart_with_its_defaults_and_with_postgresql() {
    let Some(helm) = helm_or_skip() else { return };
    for sets in [
        vec![],
        vec![
            "replicaCount=3",
            "database.postgres.existingSecret=aiops-db",
            "jwt.existingSecret=aiops-jwt",
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
        ],
    ] {
        let mut cmd = Command::new(&helm);
        cmd.args(["lint", "--strict"]).arg(chart());
        for s in &sets {
            cmd.args(["--set", s]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "helm lint {sets:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_default_values_render_one_replica_on_sqlite_kept_on_a_persistent_volume_claim() {
    let Some(helm) = helm_or_skip() else { return };
    let docs = documents(&template(&helm, "ops", "monitoring", &[]).unwrap());
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount"
        ]
        .map(String::from)
        .into()
    );
    for doc in &docs {
        if !doc["kind"].as_str().unwrap().starts_with("Cluster") {
            assert_eq!(doc["metadata"]["namespace"], "monitoring", "{doc}");
        }
    }
    let deploy: Deployment = one(&docs, "Deployment", "ops-aiops");
    let spec = deploy.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("ops-aiops"));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(),
        ["ALL"]
    );
    let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(probe(&c.liveness_probe), "/-/healthy");
    assert_eq!(probe(&c.readiness_probe), "/-/ready");
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 9095);
    assert!(
        c.resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()
            .contains_key("memory")
    );
    // No database URL from a Secret: the settings' SQLite file, on the claim.
    let env = c.env.as_deref().unwrap();
    assert!(!env.iter().any(|e| e.name == "AIOPS_DATABASE_URL"));
    let s = settings(&docs);
    assert_eq!(
        s.database_url.expose(),
        "sqlite:///var/lib/aiops/aiops.db?mode=rwc"
    );
    assert!(s.cluster.in_cluster);
    assert_eq!(s.rules_dir.as_deref(), Some(Path::new("/etc/aiops/rules")));
    assert_eq!(
        s.playbooks_dir.as_deref(),
        Some(Path::new("/etc/aiops/playbooks"))
    );
    let mounts: Vec<(String, String)> = c
        .volume_mounts
        .as_deref()
        .unwrap()
        .iter()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    assert!(
        mounts.contains(&("data".into(), "/var/lib/aiops".into())),
        "{mounts:?}"
    );
    assert!(mounts.contains(&("tmp".into(), "/tmp".into())));
    let token_file = s.webhook_token_file.clone().unwrap();
    assert!(
        mounts
            .iter()
            .any(|(n, p)| n == "webhook-token" && token_file.parent() == Some(Path::new(p))),
        "{token_file:?} not under the token's mount: {mounts:?}"
    );
    let volumes = pod.volumes.unwrap();
    let data = volumes.iter().find(|v| v.name == "data").unwrap();
    let pvc: PersistentVolumeClaim = one(&docs, "PersistentVolumeClaim", "-data");
    assert_eq!(
        data.persistent_volume_claim.as_ref().unwrap().claim_name,
        pvc.metadata.name.unwrap()
    );
    let token = volumes.iter().find(|v| v.name == "webhook-token").unwrap();
    assert_eq!(
        token.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("aiops-webhook-token")
    );
    // The shipped rules and playbooks, one ConfigMap each.
    let rules: ConfigMap = one(&docs, "ConfigMap", "-rules");
    let shipped = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/auto-repair.yaml"),
    )
    .unwrap();
    assert_eq!(rules.data.unwrap()["auto-repair.yaml"], shipped);
    let playbooks: ConfigMap = one(&docs, "ConfigMap", "-playbooks");
    let names: BTreeSet<String> = playbooks.data.unwrap().into_keys().collect();
    assert_eq!(
        names,
        [
            "cleanup.rhai",
            "oom_handler.rhai",
            "restart.rhai",
            "rollback.rhai",
            "scale_memory.rhai"
        ]
        .map(String::from)
        .into()
    );
    let svc: Service = one(&docs, "Service", "ops-aiops");
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 9095);
}

#[test]
fn three_replicas_with_postgresql_share_the_store_named_by_a_secret() {
    let Some(helm) = helm_or_skip() else { return };
    let docs = documents(
        &template(
            &helm,
            "aiops",
            "ops",
            &[
                "replicaCount=3",
                "database.postgres.existingSecret=aiops-db",
                "jwt.existingSecret=aiops-jwt",
            ],
        )
        .unwrap(),
    );
    assert!(!kinds(&docs).contains("PersistentVolumeClaim"));
    let deploy: Deployment = one(&docs, "Deployment", "aiops");
    let spec = deploy.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    let from_secret = |name: &str| {
        let e = c
            .env
            .as_deref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .unwrap();
        assert!(e.value.is_none());
        let r = e.value_from.clone().unwrap().secret_key_ref.unwrap();
        (r.name, r.key)
    };
    assert_eq!(
        from_secret("AIOPS_DATABASE_URL"),
        ("aiops-db".into(), "url".into())
    );
    assert_eq!(
        from_secret("AIOPS_JWT_SECRET"),
        ("aiops-jwt".into(), "secret".into())
    );
    assert!(
        !c.volume_mounts
            .as_deref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/var/lib/aiops")
    );
    // The settings name no SQLite file: the URL is the Secret's alone.
    let cm: ConfigMap = one(&docs, "ConfigMap", "-config");
    assert!(!cm.data.unwrap()["aiops.yaml"].contains("sqlite"));
}

#[test]
fn three_replicas_without_postgresql_are_refused_with_the_reason() {
    let Some(helm) = helm_or_skip() else { return };
    let err = template(&helm, "aiops", "ops", &["replicaCount=3"]).unwrap_err();
    assert!(
        err.contains(
            "replicaCount 3 needs the PostgreSQL store (database.postgres.existingSecret): SQLite has one writer, and each SQLite pod would act on every alert"
        ),
        "{err}"
    );
    let err = template(&helm, "aiops", "ops", &["webhookToken.existingSecret="]).unwrap_err();
    assert!(
        err.contains("webhookToken.existingSecret is required"),
        "{err}"
    );
}

#[test]
fn the_chart_and_aiops_manifests_grant_the_same_cluster_role_rules() {
    let Some(helm) = helm_or_skip() else { return };
    let docs = documents(&template(&helm, "aiops", "ops", &[]).unwrap());
    let role: ClusterRole = one(&docs, "ClusterRole", "");
    let chart = role.rules.unwrap();
    assert_eq!(chart, manifests_rules());
    assert_eq!(grants(&chart), grants(&manifests_rules()));
    // rbac.extraRules adds to them, for a team's own playbooks.
    let docs = documents(
        &template(
            &helm,
            "aiops",
            "ops",
            &[
                "rbac.extraRules[0].apiGroups[0]=",
                "rbac.extraRules[0].resources[0]=configmaps",
                "rbac.extraRules[0].verbs[0]=get",
            ],
        )
        .unwrap(),
    );
    let role: ClusterRole = one(&docs, "ClusterRole", "");
    let extra = grants(&role.rules.unwrap());
    assert_eq!(
        extra
            .difference(&grants(&manifests_rules()))
            .collect::<Vec<_>>(),
        ["/configmaps:get"]
    );
}

/// The ClusterRole rules of `aiops manifests --deploy-role`.
fn deploy_role_rules() -> Vec<PolicyRule> {
    let docs = documents(&aiops::manifests::render_deploy_role(&[]).unwrap());
    let role: ClusterRole = one(&docs, "ClusterRole", "");
    role.rules.unwrap()
}

#[test]
fn a_daemon_that_runs_deployments_gets_the_worker_setting_and_the_deploy_role_bound_to_its_account()
{
    let Some(helm) = helm_or_skip() else { return };
    // Off by default: no deploy role, no worker.
    let docs = documents(&template(&helm, "aiops", "ops", &[]).unwrap());
    assert!(!settings(&docs).deploy.worker);
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"].as_str().unwrap().ends_with("-deploy")),
        "no deploy role by default"
    );

    // deployWorker: the setting, the role of `aiops manifests --deploy-role`, and a binding to
    // the daemon's ServiceAccount beside the subjects rbac.deployRole names.
    let docs = documents(
        &template(
            &helm,
            "aiops",
            "ops",
            &[
                "deployWorker=true",
                "settings.deploy.poll=5s",
                "rbac.deployRole.subjects[0].kind=ServiceAccount",
                "rbac.deployRole.subjects[0].name=deployer",
                "rbac.deployRole.subjects[0].namespace=ci",
            ],
        )
        .unwrap(),
    );
    let s = settings(&docs);
    assert!(s.deploy.worker);
    assert_eq!(
        s.deploy.poll.0,
        std::time::Duration::from_secs(5),
        "the team's own deploy settings are kept"
    );
    let role: ClusterRole = one(&docs, "ClusterRole", "-deploy");
    assert_eq!(role.metadata.name.as_deref(), Some("aiops-ops-deploy"));
    assert_eq!(role.rules.unwrap(), deploy_role_rules());
    let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding", "-deploy");
    assert_eq!(binding.role_ref.name, "aiops-ops-deploy");
    let sa: ServiceAccount = one(&docs, "ServiceAccount", "");
    let subjects: Vec<(String, String, Option<String>)> = binding
        .subjects
        .unwrap()
        .into_iter()
        .map(|s| (s.kind, s.name, s.namespace))
        .collect();
    assert_eq!(
        subjects,
        [
            (
                "ServiceAccount".to_string(),
                "deployer".to_string(),
                Some("ci".to_string())
            ),
            (
                "ServiceAccount".to_string(),
                sa.metadata.name.unwrap(),
                Some("ops".to_string())
            ),
        ]
    );

    // Never the namespace's default account: without an account of its own, it is refused.
    let refused = template(
        &helm,
        "aiops",
        "ops",
        &["deployWorker=true", "serviceAccount.create=false"],
    )
    .unwrap_err();
    assert!(
        refused.contains("name that account (serviceAccount.name)"),
        "{refused}"
    );
    // An account named by the team is bound instead; no other subjects is fine too.
    let docs = documents(
        &template(
            &helm,
            "aiops",
            "ops",
            &[
                "deployWorker=true",
                "serviceAccount.create=false",
                "serviceAccount.name=aiops-daemon",
                "rbac.deployRole.subjects=null",
            ],
        )
        .unwrap(),
    );
    let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding", "-deploy");
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(subjects[0].name, "aiops-daemon");
    // rbac.create=false: the team binds roles itself; the worker is still on.
    let docs = documents(
        &template(
            &helm,
            "aiops",
            "ops",
            &["deployWorker=true", "rbac.create=false"],
        )
        .unwrap(),
    );
    assert!(settings(&docs).deploy.worker);
    assert!(
        !kinds(&docs).contains("ClusterRoleBinding"),
        "no binding with rbac.create=false"
    );
}

#[test]
fn two_releases_or_two_namespaces_never_share_a_cluster_role_or_binding() {
    let Some(helm) = helm_or_skip() else { return };
    let mut names = BTreeSet::new();
    for (release, ns) in [
        ("aiops", "team-a"),
        ("aiops", "team-b"),
        ("other", "team-a"),
    ] {
        let docs = documents(&template(&helm, release, ns, &[]).unwrap());
        let role: ClusterRole = one(&docs, "ClusterRole", "");
        let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding", "");
        let name = role.metadata.name.unwrap();
        assert_eq!(binding.role_ref.name, name);
        assert_eq!(binding.metadata.name.as_deref(), Some(name.as_str()));
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(subject.namespace.as_deref(), Some(ns));
        let sa: ServiceAccount = one(&docs, "ServiceAccount", "");
        assert_eq!(sa.metadata.name.as_deref(), Some(subject.name.as_str()));
        assert!(names.insert(name.clone()), "{name} used twice");
    }
}

#[test]
fn a_change_of_rules_playbooks_or_settings_rolls_the_pods() {
    let Some(helm) = helm_or_skip() else { return };
    let annotations = |sets: &[&str]| {
        let docs = documents(&template(&helm, "aiops", "ops", sets).unwrap());
        let deploy: Deployment = one(&docs, "Deployment", "");
        deploy
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()
    };
    let base = annotations(&[]);
    for key in ["checksum/config", "checksum/rules", "checksum/playbooks"] {
        assert_eq!(base[key].len(), 64, "{key}: {base:?}");
    }
    let rules = annotations(&["rules.files.mine\\.yaml=rules: []"]);
    assert_ne!(rules["checksum/rules"], base["checksum/rules"]);
    assert_eq!(rules["checksum/playbooks"], base["checksum/playbooks"]);
    let playbooks = annotations(&["playbooks.files.mine\\.rhai=true"]);
    assert_ne!(playbooks["checksum/playbooks"], base["checksum/playbooks"]);
    assert_eq!(playbooks["checksum/rules"], base["checksum/rules"]);
    let settings = annotations(&["settings.jobs.workers=2"]);
    assert_ne!(settings["checksum/config"], base["checksum/config"]);
}

#[test]
fn notification_channels_take_their_secrets_by_reference_only() {
    let Some(helm) = helm_or_skip() else { return };
    let docs = documents(
        &template(
            &helm,
            "aiops",
            "ops",
            &[
                "notify.config.channels.oncall.type=telegram",
                "notify.config.channels.oncall.bot_token_env=TG_TOKEN",
                "notify.config.channels.oncall.chat_id=-100123",
                "notify.config.routes[0].channels[0]=oncall",
                "notify.secretEnv[0].name=TG_TOKEN",
                "notify.secretEnv[0].secretName=aiops-telegram",
                "notify.secretEnv[0].key=token",
            ],
        )
        .unwrap(),
    );
    let deploy: Deployment = one(&docs, "Deployment", "");
    let c = &deploy.spec.unwrap().template.spec.unwrap().containers[0];
    let var = c
        .env
        .as_deref()
        .unwrap()
        .iter()
        .find(|e| e.name == "TG_TOKEN")
        .unwrap();
    assert!(var.value.is_none());
    let r = var.value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (r.name.as_str(), r.key.as_str()),
        ("aiops-telegram", "token")
    );
    // The settings parse with the channel, and resolve its token from that variable.
    let cm: ConfigMap = one(&docs, "ConfigMap", "-config");
    let text = cm.data.unwrap()["aiops.yaml"].clone();
    assert!(text.contains("bot_token_env: TG_TOKEN"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aiops.yaml");
    std::fs::write(&file, &text).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n-0123456789abcdef").unwrap();
    let token_path = token.display().to_string();
    let s = Settings::load_with(Some(&file), |k| match k {
        "TG_TOKEN" => Some("123:abc".into()),
        "AIOPS_WEBHOOK_TOKEN_FILE" => Some(token_path.clone()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}\n{text}"));
    s.check_listen_is_safe().unwrap();
    assert!(format!("{:?}", s.notify).contains("oncall"));
}

#[test]
fn the_service_monitor_carries_the_labels_kube_prometheus_stack_selects_on() {
    let Some(helm) = helm_or_skip() else { return };
    let docs = documents(
        &template(
            &helm,
            "aiops",
            "ops",
            &[
                "serviceMonitor.enabled=true",
                "serviceMonitor.labels.release=kube-prometheus-stack",
                "networkPolicy.enabled=true",
                "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.team=monitoring",
            ],
        )
        .unwrap(),
    );
    let sm = docs.iter().find(|d| d["kind"] == "ServiceMonitor").unwrap();
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let svc: Service = one(&docs, "Service", "");
    let selector = svc.spec.unwrap().selector.unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(selector.get(k).map(String::as_str), v.as_str(), "{k}");
    }
    let np: k8s_openapi::api::networking::v1::NetworkPolicy = one(&docs, "NetworkPolicy", "");
    let ingress = &np.spec.unwrap().ingress.unwrap()[0];
    assert_eq!(
        ingress.from.as_ref().unwrap()[0]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["team"],
        "monitoring"
    );
}

// ---------------------------------------------------------------------------------------------
// Installed into the real control plane.

/// Applies every document server-side, as `helm install` would create them (kinds discovered
/// from the API server, so a kind it does not serve fails here).
async fn apply_all(client: &kube::Client, docs: &[Value]) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::core::GroupVersionKind;
    use kube::discovery::{Scope, pinned_kind};
    for doc in docs {
        let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                doc["apiVersion"].as_str().unwrap().to_string(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().unwrap());
        let (resource, caps) = pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{gvk:?} is not served: {e}"));
        let name = doc["metadata"]["name"].as_str().unwrap();
        let api: kube::Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => kube::Api::namespaced_with(
                client.clone(),
                doc["metadata"]["namespace"].as_str().unwrap(),
                &resource,
            ),
            Scope::Cluster => kube::Api::all_with(client.clone(), &resource),
        };
        api.patch(
            name,
            &PatchParams::apply("aiops-chart-test").force(),
            &Patch::Apply(doc),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", gvk.kind));
    }
}

/// Whether the API server's RBAC allows `user` to `verb` `group/resource` in `ns`.
async fn allowed(
    client: &kube::Client,
    user: &str,
    ns: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    // The groups the API server gives a ServiceAccount's token: those of its own namespace
    // (`system:serviceaccount:NS:NAME`), not of the namespace asked about.
    let account_ns = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, _)| ns)
        .expect("a ServiceAccount's user name");
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(client.clone());
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{account_ns}"), "system:authenticated"],
            "resourceAttributes": {"namespace": ns, "group": group, "resource": resource, "verb": verb}
        }
    }))
    .unwrap();
    api.create(&Default::default(), &review)
        .await
        .unwrap()
        .status
        .is_some_and(|s| s.allowed)
}

/// Waits until the API server's RBAC knows `user`'s bindings (its first grant is allowed),
/// then checks that it may do every `group/resource:verb` of `grants` in `ns`, and none of
/// `denied`.
async fn assert_may_exactly(
    client: &kube::Client,
    user: &str,
    ns: &str,
    grants: &BTreeSet<String>,
    denied: &[(&str, &str, &str)],
) {
    let split = |grant: &str| {
        let (gr, verb) = grant.split_once(':').unwrap();
        let (group, resource) = gr.split_once('/').unwrap();
        (group.to_string(), resource.to_string(), verb.to_string())
    };
    let (group, resource, verb) = split(grants.iter().next().unwrap());
    wait_until("RBAC to know the chart's bindings", TIMEOUT, || async {
        allowed(client, user, ns, &group, &resource, &verb).await
    })
    .await;
    for grant in grants {
        let (group, resource, verb) = split(grant);
        assert!(
            allowed(client, user, ns, &group, &resource, &verb).await,
            "{user} cannot {grant} in {ns}"
        );
    }
    for (group, resource, verb) in denied {
        assert!(
            !allowed(client, user, ns, group, resource, verb).await,
            "{user} may {group}/{resource}:{verb} in {ns}, which the chart must not grant"
        );
    }
}

/// Binds claim `pvc` to volume `pv` as the persistent-volume controller does.
async fn bind(
    pvcs: &kube::Api<PersistentVolumeClaim>,
    pvs: &kube::Api<k8s_openapi::api::core::v1::PersistentVolume>,
    pvc: &str,
    pv: &str,
) {
    use kube::api::{Patch, PatchParams};
    let params = PatchParams::default();
    pvcs.patch(
        pvc,
        &params,
        &Patch::Merge(json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"volumeName": pv}
        })),
    )
    .await
    .unwrap();
    pvcs.patch_status(
        pvc,
        &params,
        &Patch::Merge(json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}})),
    )
    .await
    .unwrap();
    pvs.patch_status(
        pv,
        &params,
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_chart_installs_on_a_real_control_plane_and_its_deployment_becomes_available()
{
    let Some(helm) = helm_or_skip() else { return };
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("chart-install").await;
    let client = env.client().await;
    use kube::api::{Api, PostParams};

    // What the operator creates first: the webhook token's Secret, and (no provisioner in the
    // test cluster) a volume the chart's claim binds to.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &ns.name);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "aiops-webhook-token"},
                "stringData": {"token": "0123456789abcdef0123456789abcdef"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let pv_name = format!("{}-data", ns.name);
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    pvs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "hostPath": {"path": format!("/tmp/{pv_name}")},
                "claimRef": {"namespace": ns.name, "name": "aiops-data"}
            }
        }))
        .unwrap(),
    )
    .await
    .unwrap();

    let yaml = tokio::task::spawn_blocking({
        let (helm, ns) = (helm.clone(), ns.name.clone());
        move || template(&helm, "aiops", &ns, &[]).unwrap()
    })
    .await
    .unwrap();
    let docs = documents(&yaml);
    apply_all(&client, &docs).await;

    // The claim binds, the pod is scheduled and Ready (the fake kubelet), the Deployment is
    // available. The test control plane runs no persistent-volume controller, so the test binds
    // the claim to its volume as that controller would (volumeName, the bind-completed
    // annotation the scheduler checks, both statuses Bound).
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    bind(&pvcs, &pvs, "aiops-data", &pv_name).await;
    wait_until("the SQLite claim to be bound", TIMEOUT, || async {
        pvcs.get("aiops-data")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.phase)
            .as_deref()
            == Some("Bound")
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    wait_until("the aiops Deployment to be available", TIMEOUT, || async {
        let Ok(d) = deployments.get("aiops").await else {
            return false;
        };
        let status = d.status.unwrap_or_default();
        status.available_replicas == Some(1)
            && status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
    })
    .await;
    for cm in ["aiops-config", "aiops-rules", "aiops-playbooks"] {
        Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
            .get(cm)
            .await
            .unwrap_or_else(|e| panic!("ConfigMap {cm}: {e}"));
    }
    Api::<ServiceAccount>::namespaced(client.clone(), &ns.name)
        .get("aiops")
        .await
        .unwrap();
    let role_name = format!("aiops-{}", ns.name);
    let role = Api::<ClusterRole>::all(client.clone())
        .get(&role_name)
        .await
        .unwrap();
    assert_eq!(role.rules.unwrap(), manifests_rules());

    // The pod's identity may do exactly what `aiops manifests`' ClusterRole grants, in any
    // namespace, and nothing else this test asks.
    let user = format!("system:serviceaccount:{}:aiops", ns.name);
    assert_may_exactly(
        &client,
        &user,
        "default",
        &grants(&manifests_rules()),
        &[
            ("", "secrets", "get"),
            ("apps", "deployments", "delete"),
            ("apps", "deployments", "update"),
            ("", "pods", "create"),
            ("rbac.authorization.k8s.io", "clusterroles", "create"),
        ],
    )
    .await;

    // Cluster-scoped leftovers of this test: the namespace guard removes the rest.
    use kube::api::DeleteParams;
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&role_name, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(&role_name, &DeleteParams::default())
        .await;
    let _ = pvs.delete(&pv_name, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_deploy_worker_the_daemons_account_may_apply_an_apps_objects_and_nothing_more() {
    let Some(helm) = helm_or_skip() else { return };
    let Some(env) = KubeEnv::get().await else {
        return;
    };
    let ns = env.namespace("chart-deploy").await;
    let client = env.client().await;
    use kube::api::{Api, DeleteParams};

    // The chart's identity objects, as `helm install --set deployWorker=true` creates them.
    let docs = documents(&template(&helm, "aiops", &ns.name, &["deployWorker=true"]).unwrap());
    let identity: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
                .contains(&d["kind"].as_str().unwrap())
        })
        .collect();
    assert_eq!(identity.len(), 5, "account, two roles, two bindings");
    apply_all(&client, &identity).await;

    // Both roles' grants, in an app's namespace (the deploy role's are cluster-wide, for
    // namespaces it creates), and still nothing beyond them.
    let user = format!("system:serviceaccount:{}:aiops", ns.name);
    let both: BTreeSet<String> = grants(&deploy_role_rules())
        .union(&grants(&manifests_rules()))
        .cloned()
        .collect();
    assert_may_exactly(
        &client,
        &user,
        "app-shop",
        &both,
        &[
            ("", "secrets", "get"),
            ("", "namespaces", "delete"),
            ("apps", "deployments", "delete"),
            ("rbac.authorization.k8s.io", "clusterroles", "create"),
        ],
    )
    .await;

    // Cluster-scoped leftovers of this test: the namespace guard removes the account.
    for name in [
        format!("aiops-{}", ns.name),
        format!("aiops-{}-deploy", ns.name),
    ] {
        let _ = Api::<ClusterRoleBinding>::all(client.clone())
            .delete(&name, &DeleteParams::default())
            .await;
        let _ = Api::<ClusterRole>::all(client.clone())
            .delete(&name, &DeleteParams::default())
            .await;
    }
}
