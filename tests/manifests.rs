//! `aiops manifests`: the rendered YAML is valid Kubernetes, minimal in its rights, and consistent
//! with the daemon's own settings.

use std::collections::BTreeSet;
use std::path::Path;

use aiops::config::Settings;
use aiops::manifests::{self, Options};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn options(namespace: &str) -> Options {
    Options {
        namespace: namespace.into(),
        ..Options::default()
    }
}

fn documents(yaml: &str) -> Vec<&str> {
    yaml.split("\n---\n").collect()
}

/// The one document of `kind`, as its k8s-openapi type.
fn document<T: DeserializeOwned>(yaml: &str, kind: &str) -> T {
    let docs: Vec<&str> = documents(yaml)
        .into_iter()
        .filter(|d| d.lines().any(|l| l == format!("kind: {kind}")))
        .collect();
    assert_eq!(docs.len(), 1, "one {kind} expected in:\n{yaml}");
    serde_yaml::from_str(docs[0]).unwrap_or_else(|e| panic!("{kind}: {e}\n{}", docs[0]))
}

fn deployment(yaml: &str) -> Deployment {
    document(yaml, "Deployment")
}

/// Deserializes `doc` as `T` and checks nothing was dropped: k8s-openapi ignores unknown fields,
/// so a misspelt key would otherwise pass unnoticed.
fn typed<T: DeserializeOwned + Serialize>(doc: &str) -> T {
    let typed: T = serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    let untyped: serde_json::Value = serde_yaml::from_str(doc).unwrap();
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        untyped,
        "fields lost in\n{doc}"
    );
    typed
}

/// The Alertmanager snippet at the end, uncommented.
fn alertmanager_snippet(yaml: &str) -> serde_yaml::Value {
    let start = yaml.find("# receivers:").expect("the receiver snippet");
    let text: String = yaml[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").or(l.strip_prefix("#")).unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_rendered_document_deserializes_into_its_kubernetes_type() {
    let yaml = manifests::render(&Options::default()).unwrap();
    let docs = documents(&yaml);
    assert_eq!(docs.len(), 8, "{yaml}");
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            let v: serde_yaml::Value = serde_yaml::from_str(d).unwrap();
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    // the Alertmanager snippet after the Service is comments, not a document
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Deployment",
            "Service",
        ]
    );
    let ns: Namespace = typed(docs[0]);
    let sa: ServiceAccount = typed(docs[1]);
    let role: ClusterRole = typed(docs[2]);
    let binding: ClusterRoleBinding = typed(docs[3]);
    let cm: ConfigMap = typed(docs[4]);
    let pvc: PersistentVolumeClaim = typed(docs[5]);
    let deploy: Deployment = typed(docs[6]);
    let svc: Service = typed(docs[7]);

    assert_eq!(
        ns.metadata.labels.unwrap()["app.kubernetes.io/name"],
        "aiops"
    );
    assert_eq!(sa.metadata.name.as_deref(), Some("aiops"));
    assert_eq!(role.metadata.name.as_deref(), Some("aiops-aiops"));
    assert_eq!(binding.metadata.name.as_deref(), Some("aiops-aiops"));
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "aiops-aiops");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "aiops")
    );
    assert_eq!(cm.metadata.name.as_deref(), Some("aiops-config"));
    assert_eq!(pvc.metadata.name.as_deref(), Some("aiops-data"));
    let pvc_spec = pvc.spec.unwrap();
    assert_eq!(pvc_spec.access_modes.unwrap(), ["ReadWriteOnce"]);

    let spec = deploy.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("aiops"));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some(manifests::DEFAULT_IMAGE));
    assert_eq!(
        c.args.as_deref().unwrap(),
        [
            "--log-format",
            "json",
            "--config",
            "/etc/aiops/aiops.yaml",
            "serve"
        ]
    );
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.container_port, port.name.as_deref()),
        (9095, Some("http"))
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(),
        ["ALL"]
    );

    let svc_port = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!(svc_port.port, 9095);
    assert_eq!(
        svc_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
    );
}

#[test]
fn the_cluster_role_grants_exactly_the_verbs_of_the_host_functions_and_events() {
    let yaml = manifests::render(&Options::default()).unwrap();
    let role: ClusterRole = document(&yaml, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role.rules.unwrap() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for group in rule.api_groups.unwrap() {
            for resource in rule.resources.as_ref().unwrap() {
                for verb in &rule.verbs {
                    granted.insert(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    let expected: BTreeSet<String> = [
        "apps/deployments:get",
        "apps/deployments:patch",
        "apps/statefulsets:get",
        "apps/statefulsets:patch",
        "apps/daemonsets:get",
        "apps/daemonsets:patch",
        "apps/replicasets:list",
        "apps/deployments/scale:patch",
        "apps/statefulsets/scale:patch",
        "/pods:list",
        "/pods:delete",
        "batch/jobs:list",
        "batch/jobs:delete",
        "/events:create",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(granted, expected);
    assert!(!granted.iter().any(|g| g.contains('*')));
    assert!(
        !granted
            .iter()
            .any(|g| g.ends_with(":update") || (g.ends_with(":create") && g != "/events:create"))
    );
    // every rule says which host function needs it
    let role_doc = documents(&yaml)
        .into_iter()
        .find(|d| d.contains("kind: ClusterRole\n"))
        .unwrap();
    let rules_text = &role_doc[role_doc.find("rules:").unwrap()..];
    for (i, line) in rules_text.lines().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            let above = rules_text.lines().nth(i - 1).unwrap();
            assert!(
                above.trim_start().starts_with('#'),
                "no comment above {line}"
            );
        }
    }
}

#[test]
fn the_probes_point_at_the_health_and_readiness_endpoints() {
    let yaml = manifests::render(&Options::default()).unwrap();
    let pod = deployment(&yaml).spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
        get.path.clone().unwrap()
    };
    assert_eq!(path(&c.liveness_probe), "/-/healthy");
    assert_eq!(path(&c.readiness_probe), "/-/ready");
}

#[test]
fn the_namespace_option_reaches_every_namespaced_object_and_the_alertmanager_url() {
    let yaml = manifests::render(&options("team-x")).unwrap();
    assert!(!yaml.contains("aiops.aiops.svc"), "{yaml}");
    let ns: Namespace = document(&yaml, "Namespace");
    assert_eq!(ns.metadata.name.as_deref(), Some("team-x"));
    let sa: ServiceAccount = document(&yaml, "ServiceAccount");
    let cm: ConfigMap = document(&yaml, "ConfigMap");
    let svc: Service = document(&yaml, "Service");
    let deploy = deployment(&yaml);
    for (kind, namespace) in [
        ("ServiceAccount", sa.metadata.namespace),
        ("ConfigMap", cm.metadata.namespace),
        ("Service", svc.metadata.namespace),
        ("Deployment", deploy.metadata.namespace),
    ] {
        assert_eq!(namespace.as_deref(), Some("team-x"), "{kind}");
    }
    let binding: ClusterRoleBinding = document(&yaml, "ClusterRoleBinding");
    assert_eq!(
        binding.subjects.unwrap()[0].namespace.as_deref(),
        Some("team-x")
    );
    // the secret-creation comments use it too
    assert!(
        yaml.contains("kubectl -n team-x create secret generic aiops-webhook-token --from-literal=token=$(openssl rand -hex 32)"),
        "{yaml}"
    );

    let url = "http://aiops.team-x.svc:9095/webhook/alertmanager";
    assert_eq!(
        manifests::output(&options("team-x"), true).unwrap(),
        format!("{url}\n")
    );
    let am = alertmanager_snippet(&yaml);
    let receiver = &am["receivers"][0];
    assert_eq!(receiver["name"], "aiops");
    let hook = &receiver["webhook_configs"][0];
    assert_eq!(hook["url"], url);
    assert_eq!(hook["send_resolved"], true);
    let auth = &hook["http_config"]["authorization"];
    assert_eq!(auth["type"], "Bearer");
    assert_eq!(
        auth["credentials_file"],
        "/etc/alertmanager/secrets/aiops-token"
    );
    let route = &am["route"]["routes"][0];
    assert_eq!(route["receiver"], "aiops");
    assert_eq!(route["matchers"][0], r#"auto_repair=~".+""#);
    assert_eq!(route["continue"], true);
}

#[test]
fn the_image_and_token_secret_options_are_used() {
    let opts = Options {
        image: "registry.example:5000/ops/aiops@sha256:0123".into(),
        token_secret: "am-token".into(),
        ..Options::default()
    };
    let yaml = manifests::render(&opts).unwrap();
    let pod = deployment(&yaml).spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(opts.image.as_str())
    );
    let token = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "token")
        .unwrap();
    assert_eq!(
        token.secret.unwrap().secret_name.as_deref(),
        Some("am-token")
    );
}

#[test]
fn the_config_map_holds_settings_the_daemon_accepts() {
    let yaml = manifests::render(&Options::default()).unwrap();
    let cm: ConfigMap = document(&yaml, "ConfigMap");
    let text = &cm.data.unwrap()["aiops.yaml"];
    let s = Settings::from_yaml(text, Path::new("aiops.yaml")).unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:9095");
    assert_eq!(
        s.webhook_token_file.as_deref(),
        Some(Path::new("/var/run/secrets/aiops/token"))
    );
    assert_eq!(s.rules_dir.as_deref(), Some(Path::new("/etc/aiops/rules")));
    assert_eq!(
        s.playbooks_dir.as_deref(),
        Some(Path::new("/etc/aiops/playbooks"))
    );

    // The whole load, as `serve` does it (the token file is the mounted Secret's; here a stand-in),
    // including the check that refuses a public address without a token.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("aiops.yaml");
    std::fs::write(&config, text).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-0123456789abcdef\n").unwrap();
    let token_path = token.display().to_string();
    let s = Settings::load_with(Some(&config), |k| {
        (k == "AIOPS_WEBHOOK_TOKEN_FILE").then(|| token_path.clone())
    })
    .unwrap();
    // The SQLite store lives on the PersistentVolumeClaim, not in the pod's emptyDir, so dedup,
    // cooldowns, budgets and the knowledge base survive a restart; the pod acts as itself.
    assert_eq!(
        s.database_url.expose(),
        "sqlite:///var/lib/aiops/aiops.db?mode=rwc"
    );
    assert!(s.cluster.in_cluster);
    assert_eq!(
        s.webhook_token.as_ref().unwrap().expose(),
        "s3cret-0123456789abcdef"
    );
    s.check_listen_is_safe().unwrap();

    // ...and the Deployment mounts what the settings point at.
    let pod = deployment(&yaml).spec.unwrap().template.spec.unwrap();
    let mounts: Vec<String> = pod.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.clone())
        .collect();
    for path in [
        "/var/run/secrets/aiops",
        "/etc/aiops/aiops.yaml",
        "/etc/aiops/rules",
        "/etc/aiops/playbooks",
        "/var/lib/aiops",
        "/tmp",
    ] {
        assert!(mounts.iter().any(|m| m == path), "{path} not in {mounts:?}");
    }
    let data = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        data.persistent_volume_claim.unwrap().claim_name,
        "aiops-data"
    );
}

#[test]
fn the_jwt_secret_and_the_database_url_come_from_optional_secrets() {
    let yaml = manifests::render(&Options::default()).unwrap();
    let pod = deployment(&yaml).spec.unwrap().template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    let from_secret = |name: &str| {
        let var = env
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert!(var.value.is_none(), "{name} must not be inline");
        let key = var
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .clone()
            .unwrap();
        (key.name, key.key, key.optional)
    };
    assert_eq!(
        from_secret("AIOPS_JWT_SECRET"),
        ("aiops-jwt".into(), "secret".into(), Some(true))
    );
    assert_eq!(
        from_secret("AIOPS_DATABASE_URL"),
        ("aiops-database".into(), "url".into(), Some(true))
    );
    assert!(
        yaml.contains("kubectl -n aiops create secret generic aiops-jwt --from-literal=secret=$(openssl rand -hex 32)"),
        "{yaml}"
    );
}

#[test]
fn two_namespaces_get_cluster_roles_and_bindings_that_do_not_collide() {
    let a = manifests::render(&options("team-a")).unwrap();
    let b = manifests::render(&options("team-b")).unwrap();
    for (yaml, ns) in [(&a, "team-a"), (&b, "team-b")] {
        let role: ClusterRole = document(yaml, "ClusterRole");
        let binding: ClusterRoleBinding = document(yaml, "ClusterRoleBinding");
        let name = format!("aiops-{ns}");
        assert_eq!(role.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(binding.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(binding.role_ref.name, name);
        assert_eq!(binding.subjects.unwrap()[0].namespace.as_deref(), Some(ns));
    }
}

#[test]
fn a_bad_namespace_is_a_clear_error() {
    let err = manifests::render(&options("Bad_NS"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"Bad_NS\""), "{err}");
    assert!(
        err.contains("'B', which is not a lowercase letter"),
        "{err}"
    );
    assert!(err.contains("DNS-1123 label"), "{err}");
    for bad in ["", "-x", "x-", &"a".repeat(64), "a.b"] {
        assert!(manifests::render(&options(bad)).is_err(), "{bad:?}");
    }
    assert!(manifests::output(&options("Bad_NS"), true).is_err());
}

#[test]
fn an_empty_image_or_a_bad_secret_name_is_a_clear_error() {
    let opts = Options {
        image: " ".into(),
        ..Options::default()
    };
    let err = manifests::render(&opts).unwrap_err().to_string();
    assert!(
        err.contains("invalid image") && err.contains("empty"),
        "{err}"
    );
    let opts = Options {
        image: "a b".into(),
        ..Options::default()
    };
    assert!(manifests::render(&opts).is_err());
    let opts = Options {
        token_secret: "Token".into(),
        ..Options::default()
    };
    let err = manifests::render(&opts).unwrap_err().to_string();
    assert!(err.contains("invalid token secret name"), "{err}");
}
