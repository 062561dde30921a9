//! `aiops render`: golden files per framework and plan, every object checked against its
//! Kubernetes type or its CRD's required fields, the alerts routed back to the shipped rules,
//! and the rules checked by promtool.
//!
//! The cases are `tests/golden/deploy/*.app.yaml`; each renders (through the binary) to the
//! `*.golden.yaml` beside it. `UPDATE_GOLDEN=1 cargo test --test suite deploy_render::` rewrites them;
//! review the diff before committing.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aiops::deploy::{AppSpec, Manifest, Rendered, render};
use common::{repo, run_cli};
use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let dir = repo().join("tests/golden/deploy");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".app.yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 6, "cases in {}", dir.display());
    v
}

fn rendered(case: &Path) -> (AppSpec, Rendered) {
    let spec = AppSpec::load(case).unwrap();
    let r = render(&spec, &aiops::deploy::Options::default()).unwrap();
    (spec, r)
}

#[test]
fn the_cases_cover_every_framework_and_every_plan() {
    let specs: Vec<AppSpec> = cases().iter().map(|c| AppSpec::load(c).unwrap()).collect();
    for fw in aiops::deploy::spec::Framework::ALL {
        assert!(
            specs.iter().any(|s| s.framework() == Some(fw)),
            "no case for {fw:?}"
        );
    }
    for plan in ["basic", "standard", "advanced", "professional"] {
        assert!(
            specs.iter().any(|s| s.plan.as_str() == plan),
            "no case for plan {plan}"
        );
    }
}

#[test]
fn render_prints_exactly_the_golden_file_of_each_case() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        let (status, stdout, stderr) = run_cli(
            dir.path(),
            &["render", case.to_str().unwrap()],
            &HashMap::new(),
        );
        assert!(status.success(), "{}: {stderr}", case.display());
        let golden = PathBuf::from(case.to_string_lossy().replace(".app.yaml", ".golden.yaml"));
        if update {
            std::fs::write(&golden, &stdout).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", golden.display()));
        if want != stdout {
            let line = want
                .lines()
                .zip(stdout.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| want.lines().count().min(stdout.lines().count()));
            failures.push(format!(
                "{}: differs at line {}:\n  golden: {:?}\n  now:    {:?}",
                golden.display(),
                line + 1,
                want.lines().nth(line),
                stdout.lines().nth(line)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(if the change is intended: UPDATE_GOLDEN=1 cargo test --test suite deploy_render::, then review the diff)",
        failures.join("\n")
    );
}

/// Deserializes into the k8s-openapi type and serializes back: a field the type does not know
/// (a typo like `readinesProbe`, a field at the wrong level) would be dropped, so the round
/// trip must give the object back unchanged.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(m: &Manifest) {
    let typed: T = serde_json::from_value(m.object.clone())
        .unwrap_or_else(|e| panic!("{} ({}): {e}", m.describe(), m.template));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        back,
        m.object,
        "{} ({}) lost or changed fields in its k8s-openapi type",
        m.describe(),
        m.template
    );
}

#[test]
fn every_core_object_is_its_kubernetes_type_without_losing_a_field() {
    use k8s_openapi::api::{apps, batch, core, networking};
    let mut seen = std::collections::BTreeSet::new();
    for case in cases() {
        let (_, r) = rendered(&case);
        for m in &r.objects {
            match m.kind() {
                "Namespace" => round_trip::<core::v1::Namespace>(m),
                "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(m),
                "ConfigMap" => round_trip::<core::v1::ConfigMap>(m),
                "Service" => round_trip::<core::v1::Service>(m),
                "Deployment" => round_trip::<apps::v1::Deployment>(m),
                "Job" => round_trip::<batch::v1::Job>(m),
                "NetworkPolicy" => round_trip::<networking::v1::NetworkPolicy>(m),
                "Ingress" => round_trip::<networking::v1::Ingress>(m),
                "Certificate" | "ServiceMonitor" | "PrometheusRule" => continue,
                other => panic!("{}: no check for kind {other}", case.display()),
            }
            seen.insert(m.kind().to_string());
        }
    }
    assert_eq!(seen.len(), 8, "every core kind was checked: {seen:?}");
}

/// Fields each custom resource's published CRD schema marks `required`, as JSON pointers
/// (`*` = every element of an array):
/// - ServiceMonitor, monitoring.coreos.com_servicemonitors.yaml (prometheus-operator 0.84.1,
///   example/prometheus-operator-crd/): `required: [spec]`; spec `required: [endpoints, selector]`.
/// - PrometheusRule, monitoring.coreos.com_prometheusrules.yaml (prometheus-operator 0.82.2):
///   `required: [spec]`; groups[] `required: [name]`; groups[].rules[] `required: [expr]`.
/// - Certificate, cert-manager.io_certificates (cert-manager v1 CRD): `required: [spec]`;
///   spec `required: [issuerRef, secretName]`; issuerRef `required: [name]`.
const CRD_REQUIRED: &[(&str, &[&str])] = &[
    (
        "ServiceMonitor",
        &["/spec", "/spec/endpoints", "/spec/selector"],
    ),
    (
        "PrometheusRule",
        &[
            "/spec",
            "/spec/groups/*/name",
            "/spec/groups/*/rules/*/expr",
        ],
    ),
    (
        "Certificate",
        &[
            "/spec",
            "/spec/issuerRef",
            "/spec/secretName",
            "/spec/issuerRef/name",
        ],
    ),
];

/// Every value at `pointer` (expanding `*` over arrays); a missing step yields nothing.
fn at<'a>(v: &'a Value, pointer: &str) -> Vec<&'a Value> {
    let mut current = vec![v];
    for step in pointer.split('/').skip(1) {
        let mut next = Vec::new();
        for c in current {
            if step == "*" {
                if let Some(a) = c.as_array() {
                    next.extend(a.iter());
                } else {
                    return Vec::new();
                }
            } else if let Some(x) = c.get(step) {
                next.push(x);
            } else {
                return Vec::new();
            }
        }
        current = next;
    }
    current
}

/// Whether every element reached through each `*` has the field: `at` flattens, so compare
/// the count of parents with the count of values.
fn missing(v: &Value, pointer: &str) -> bool {
    let (parent, _) = pointer.rsplit_once('/').unwrap();
    let parents = if parent.is_empty() {
        1
    } else {
        at(v, parent).len()
    };
    let found = at(v, pointer).into_iter().filter(|x| !x.is_null()).count();
    parents == 0 || found < parents
}

#[test]
fn custom_resources_carry_every_field_their_crd_requires() {
    let mut checked = 0;
    for case in cases() {
        let (_, r) = rendered(&case);
        for m in &r.objects {
            let Some((_, required)) = CRD_REQUIRED.iter().find(|(k, _)| *k == m.kind()) else {
                continue;
            };
            for pointer in *required {
                assert!(
                    !missing(&m.object, pointer),
                    "{}: {} lacks {pointer}",
                    case.display(),
                    m.describe()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 16, "custom resources checked: {checked}");
}

#[test]
fn the_required_field_check_notices_a_missing_field() {
    let rule = serde_json::json!({"spec": {"groups": [{"name": "g", "rules": [{"expr": "up"}, {"alert": "X"}]}]}});
    assert!(missing(&rule, "/spec/groups/*/rules/*/expr"));
    let ok = serde_json::json!({"spec": {"groups": [{"name": "g", "rules": [{"expr": "up"}]}]}});
    assert!(!missing(&ok, "/spec/groups/*/rules/*/expr"));
    assert!(missing(&serde_json::json!({}), "/spec/secretName"));
}

fn alert_rules(r: &Rendered) -> Vec<Value> {
    let rule = r
        .objects
        .iter()
        .find(|m| m.kind() == "PrometheusRule")
        .expect("a PrometheusRule");
    at(&rule.object, "/spec/groups/*/rules/*")
        .into_iter()
        .cloned()
        .collect()
}

#[test]
fn every_auto_repair_label_is_matched_by_a_shipped_rule_that_targets_the_deployment() {
    let rules = aiops::rules::RuleSet::load_dir(&repo().join("rules")).unwrap();
    let mut values = std::collections::BTreeSet::new();
    for case in cases() {
        let (spec, r) = rendered(&case);
        let alerts = alert_rules(&r);
        assert_eq!(alerts.len(), 4, "{}", case.display());
        for alert in alerts {
            let mut labels: aiops::rules::Labels = alert["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.insert("alertname".into(), alert["alert"].as_str().unwrap().into());
            let repair = labels["auto_repair"].clone();
            values.insert(repair.clone());
            let matched = rules.matching(&labels);
            let rule = matched.first().unwrap_or_else(|| {
                panic!("{}: no rule in rules/ matches {labels:?}", case.display())
            });
            assert_eq!(
                rule.playbook,
                repair,
                "{}: auto_repair={repair} is matched by rule {} that runs another playbook",
                case.display(),
                rule.name
            );
            let target = rule.target_for(&labels).expect("a target");
            assert_eq!(
                (
                    target.namespace.as_str(),
                    target.kind.as_str(),
                    target.name.as_str()
                ),
                (&*spec.namespace(), "Deployment", spec.name.as_str()),
                "{}: {} targets the wrong object",
                case.display(),
                labels["alertname"]
            );
        }
    }
    assert_eq!(
        values.into_iter().collect::<Vec<_>>(),
        ["oom_handler", "restart", "rollback", "scale_memory"]
    );
}

fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("promtool is required in CI (Debian package prometheus; .ci/run installs it)");
        }
        eprintln!("skipping: promtool not found (apt-get install prometheus)");
    }
    found
}

#[test]
fn promtool_accepts_the_rendered_rules_of_every_case() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let (spec, r) = rendered(&case);
        let rule = r
            .objects
            .iter()
            .find(|m| m.kind() == "PrometheusRule")
            .unwrap();
        // A PrometheusRule's spec is a Prometheus rule file.
        let file = dir.path().join(format!("{}.rules.yaml", spec.name));
        std::fs::write(&file, serde_yaml::to_string(&rule.object["spec"]).unwrap()).unwrap();
        let out = std::process::Command::new(&promtool)
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: promtool check rules failed:\n{}{}",
            case.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 4 rules found"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn promtool_refuses_broken_promql_so_the_check_above_can_fail() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: sum(rate(up[5m])\n",
    )
    .unwrap();
    let out = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_dashboard_has_the_five_panels_and_valid_json_in_its_configmap() {
    let (_, r) = rendered(&cases()[0]);
    let cm = r
        .objects
        .iter()
        .find(|m| m.name().ends_with("-dashboard"))
        .unwrap();
    assert_eq!(cm.object["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = cm.object["data"].as_object().unwrap();
    let json: Value =
        serde_json::from_str(data.values().next().unwrap().as_str().unwrap()).unwrap();
    let titles: Vec<&str> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Availability",
            "Requests per second",
            "p95 latency",
            "Memory (working set) per pod",
            "5xx rate"
        ]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&r.dashboard).unwrap(),
        json,
        "the file and the ConfigMap hold the same dashboard"
    );
}

#[test]
fn render_with_o_writes_one_file_per_object_and_the_snippets_apart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let case = repo().join("tests/golden/deploy/django-standard.app.yaml");
    let env = HashMap::from([(
        "AIOPS_DEPLOY_WEBHOOK_URL",
        "https://aiops.example.net/webhook/alertmanager".to_string(),
    )]);
    let (status, stdout, stderr) = run_cli(
        dir.path(),
        &[
            "render",
            case.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &env,
    );
    assert!(status.success(), "{stderr}");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 15, "13 objects and two directories: {files:?}");
    assert_eq!(files[0], "01-namespace-app-blog.yaml");
    assert!(files.contains(&"alertmanager".to_string()) && files.contains(&"grafana".to_string()));
    assert_eq!(
        stdout.lines().count(),
        15,
        "one line per file written: {stdout}"
    );
    let route = std::fs::read_to_string(out.join("alertmanager/route.yaml")).unwrap();
    assert!(
        route.contains("https://aiops.example.net/webhook/alertmanager"),
        "{route}"
    );
    let route: Value = serde_yaml::from_str(&route).unwrap();
    assert_eq!(
        route["route"]["routes"][0]["matchers"],
        serde_json::json!(["namespace=\"app-blog\"", "auto_repair=~\".+\""])
    );
    serde_json::from_str::<Value>(&std::fs::read_to_string(out.join("grafana/blog.json")).unwrap())
        .unwrap();
    // Every object file is one Kubernetes object.
    for f in files.iter().filter(|f| f.ends_with(".yaml")) {
        let v: Value =
            serde_yaml::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap();
        assert!(v["kind"].is_string(), "{f}");
    }
}

#[test]
fn an_invalid_spec_is_refused_with_every_bad_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("app.yaml");
    std::fs::write(
        &spec,
        "name: My_App\ndomain: localhost\nframework: flask\nimage: x:1\nplan: basic\nreplicas: 0\n",
    )
    .unwrap();
    let (status, stdout, stderr) = run_cli(
        dir.path(),
        &["render", spec.to_str().unwrap()],
        &HashMap::new(),
    );
    assert!(!status.success());
    assert!(stdout.is_empty(), "nothing rendered: {stdout}");
    for field in ["name:", "domain:", "replicas:"] {
        assert!(stderr.contains(field), "{field} in {stderr}");
    }
    std::fs::write(
        &spec,
        "name: app\ndomain: app.example.com\nframework: rails\nimage: x:1\n",
    )
    .unwrap();
    let (status, _, stderr) = run_cli(
        dir.path(),
        &["render", spec.to_str().unwrap()],
        &HashMap::new(),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("framework") && stderr.contains("rails"),
        "{stderr}"
    );
}

#[test]
fn a_spec_with_four_bad_fields_gets_four_lines_each_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("app.yaml");
    // Four kinds: a failed check, an unknown value, an unknown key, a wrong type.
    std::fs::write(
        &yaml,
        "name: shop\ndomain: localhost\nframework: flaks\nimage: x:1\nreplica: 3\nreplicas: many\n",
    )
    .unwrap();
    let json = dir.path().join("app.json");
    std::fs::write(
        &json,
        "{\"name\": \"shop\", \"domain\": \"localhost\",\n \"framework\": \"flaks\", \"image\": \"x:1\",\n \"replica\": 3, \"replicas\": \"many\"}\n",
    )
    .unwrap();
    for (file, places) in [
        (&yaml, ["2:9", "3:12", "5:1", "6:11"]),
        (&json, ["1:28", "2:15", "3:2", "3:28"]),
    ] {
        let file = file.to_str().unwrap();
        let (status, stdout, stderr) = run_cli(dir.path(), &["render", file], &HashMap::new());
        assert!(!status.success());
        assert!(stdout.is_empty(), "nothing rendered: {stdout}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(file)).collect();
        assert_eq!(lines.len(), 4, "{stderr}");
        let fields = ["domain: ", "framework: ", "replica: ", "replicas: "];
        for ((line, place), field) in lines.iter().zip(places).zip(fields) {
            let at = format!("{file}:{place}: {field}");
            assert!(line.contains(&at), "{at} in {line}");
            // Said once: no field name twice, no second position.
            assert_eq!(line.matches(field).count(), 1, "{line}");
            assert!(
                !line.contains(" at line ") && !line.contains("(line "),
                "{line}"
            );
        }
        assert!(lines[1].contains(r#"unknown value "flaks" (expected one of flask, django"#));
        assert!(
            lines[2].contains("did you mean `replicas`?"),
            "{}",
            lines[2]
        );
    }
}

#[test]
fn a_templates_directory_overrides_a_template_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("namespace.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ namespace }}\n  labels:\n    team: payments\n",
    )
    .unwrap();
    let case = repo().join("tests/golden/deploy/flask-basic.app.yaml");
    let (status, stdout, stderr) = run_cli(
        dir.path(),
        &[
            "render",
            case.to_str().unwrap(),
            "--templates",
            templates.to_str().unwrap(),
        ],
        &HashMap::new(),
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("team: payments"), "{stdout}");
}

#[test]
fn monitoring_labels_and_annotations_reach_only_the_servicemonitor_and_the_prometheusrule() {
    let case = repo().join("tests/golden/deploy/flask-kube-prometheus-stack.app.yaml");
    let (_, r) = rendered(&case);
    let mut monitoring = 0;
    for m in &r.objects {
        let meta = &m.object["metadata"];
        let is_monitoring = matches!(m.kind(), "ServiceMonitor" | "PrometheusRule");
        if is_monitoring {
            monitoring += 1;
            assert_eq!(
                meta["labels"]["release"], "kube-prometheus-stack",
                "{}",
                m.text
            );
            assert_eq!(meta["labels"]["team"], "payments", "{}", m.text);
            assert_eq!(
                meta["labels"]["app.kubernetes.io/name"], "shop",
                "the standard labels stay: {}",
                m.text
            );
            assert_eq!(
                meta["annotations"]["runbooks.example.com/url"],
                "https://runbooks.example.com/shop",
                "{}",
                m.text
            );
        } else {
            assert!(meta["labels"].get("release").is_none(), "{}", m.text);
            assert!(
                meta.get("annotations")
                    .and_then(|a| a.get("runbooks.example.com/url"))
                    .is_none(),
                "{}",
                m.text
            );
        }
    }
    assert_eq!(monitoring, 2, "a ServiceMonitor and a PrometheusRule");
}

#[test]
fn monitoring_labels_are_checked_as_kubernetes_labels_and_cannot_replace_the_standard_ones() {
    let text = "name: shop\ndomain: shop.example.com\nframework: flask\nimage: shop:1\n\
                monitoring:\n  labels: {\"bad key\": x, release: \"not ok!\", app: other}\n  annotations: {\"-x\": y}\n";
    let err = AppSpec::parse(text, "app.yaml").unwrap_err();
    let fields: Vec<String> = err.problems().iter().map(|p| p.field.clone()).collect();
    assert_eq!(
        fields,
        // In the order of the text, as every spec problem is reported.
        [
            "monitoring.labels.bad key",
            "monitoring.labels.release",
            "monitoring.labels.app",
            "monitoring.annotations.-x"
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("is set by aiops on every object"), "{text}");
    assert!(text.contains("value \"not ok!\""), "{text}");
}
