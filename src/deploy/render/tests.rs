//! Unit tests of rendering an app spec into manifests.

use super::*;

fn spec(extra: &str) -> AppSpec {
    AppSpec::parse(
            &format!(
                "name: shop-api\ndomain: shop.example.com\nframework: flask\nimage: ghcr.io/acme/shop:1.4.2\n{extra}"
            ),
            "app.yaml",
        )
        .unwrap()
}

fn kinds(r: &Rendered) -> Vec<String> {
    r.objects
        .iter()
        .map(|m| format!("{}/{}", m.kind(), m.name()))
        .collect()
}

#[test]
fn a_flask_app_renders_every_object_in_apply_order() {
    let r = render(&spec(""), &Options::default()).unwrap();
    assert_eq!(
        kinds(&r),
        [
            "Namespace/app-shop-api",
            "ServiceAccount/shop-api",
            "ConfigMap/shop-api-env",
            "NetworkPolicy/shop-api",
            "Service/shop-api",
            "Deployment/shop-api",
            "Ingress/shop-api",
            "Certificate/shop-api-tls",
            "ServiceMonitor/shop-api",
            "PrometheusRule/shop-api",
            "ConfigMap/shop-api-dashboard",
        ]
    );
}

#[test]
fn django_adds_a_migrations_job_per_image_and_the_worker_only_with_celery() {
    let d = AppSpec::parse(
            "name: shop-api\ndomain: shop.example.com\nframework: django\nimage: ghcr.io/acme/shop:1.4.2\ndjango: {celery: shop.celery}\n",
            "app.yaml",
        )
        .unwrap();
    let r = render(&d, &Options::default()).unwrap();
    let k = kinds(&r);
    let job = k.iter().find(|k| k.starts_with("Job/")).unwrap().clone();
    assert!(job.starts_with("Job/shop-api-migrate-"), "{k:?}");
    assert!(
        k.contains(&"Deployment/shop-api-worker".to_string()),
        "{k:?}"
    );
    let job_at = k.iter().position(|x| *x == job).unwrap();
    let dep_at = k.iter().position(|x| x == "Deployment/shop-api").unwrap();
    assert!(job_at < dep_at, "migrations run before the rollout: {k:?}");
    let other_image = AppSpec {
        image: Some("ghcr.io/acme/shop:1.4.3".into()),
        ..d.clone()
    };
    let r2 = render(&other_image, &Options::default()).unwrap();
    assert!(!kinds(&r2).contains(&job), "a new image gets a new Job");
    let no_celery = AppSpec { django: None, ..d };
    let k = kinds(&render(&no_celery, &Options::default()).unwrap());
    assert!(!k.iter().any(|k| k.ends_with("-worker")), "{k:?}");
}

#[test]
fn free_text_cannot_break_out_of_its_yaml_scalar() {
    let s = spec(
        "display_name: \"x: evil # {{ }} 'q' \\\"dq\\\"\"\nenv: {GREETING: \"a: b\\n- c\", FLAG: 'on'}\n",
    );
    let r = render(&s, &Options::default()).unwrap();
    let cm = r
        .objects
        .iter()
        .find(|m| m.name() == "shop-api-env")
        .unwrap();
    assert_eq!(cm.object["data"]["GREETING"], "a: b\n- c");
    assert_eq!(cm.object["data"]["FLAG"], "on");
    let rule = r
        .objects
        .iter()
        .find(|m| m.kind() == "PrometheusRule")
        .unwrap();
    let summary = &rule.object["spec"]["groups"][0]["rules"][0]["annotations"]["summary"];
    assert!(summary.as_str().unwrap().contains("evil"), "{summary}");
}

#[test]
fn an_override_replaces_a_template_by_name_and_a_misspelt_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
            dir.path().join("service.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ name }}-custom\n  namespace: {{ namespace }}\n",
        )
        .unwrap();
    let opts = Options {
        templates_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    };
    let r = render(&spec(""), &opts).unwrap();
    assert!(kinds(&r).contains(&"Service/shop-api-custom".to_string()));
    std::fs::write(dir.path().join("servce.yaml"), "x").unwrap();
    let e = render(&spec(""), &opts).unwrap_err();
    assert!(
        e.to_string().contains("servce.yaml is not a template name"),
        "{e}"
    );
}

#[test]
fn an_override_printing_an_unknown_variable_fails_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ nmae }}\n",
    )
    .unwrap();
    let opts = Options {
        templates_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    };
    let e = render(&spec(""), &opts).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("template service.yaml: line 4"), "{msg}");
}

#[test]
fn the_stream_ends_with_the_alertmanager_snippet_as_comments() {
    let opts = Options {
        webhook_url: "https://aiops.example.net/webhook/alertmanager".into(),
        ..Options::default()
    };
    let r = render(&spec(""), &opts).unwrap();
    let stream = r.to_stream();
    let tail = stream.rsplit("---\n").next().unwrap();
    assert!(tail.lines().all(|l| l.starts_with('#')), "{tail}");
    assert!(tail.contains("https://aiops.example.net/webhook/alertmanager"));
    let docs: Vec<serde_json::Value> = stream
        .split("---\n")
        .filter_map(|d| {
            serde_yaml::from_str::<Option<serde_json::Value>>(d)
                .ok()
                .flatten()
        })
        .collect();
    assert_eq!(docs.len(), r.objects.len());
}

#[test]
fn camel_case_prefixes_alert_names() {
    assert_eq!(camel("shop-api-2"), "ShopApi2");
}

#[test]
fn a_git_app_renders_only_once_its_framework_and_image_are_known() {
    let text = "name: shop\ndomain: shop.example.com\nsource_type: git\nsource_url: https://git.example.com/shop.git\n";
    let mut s = AppSpec::parse(text, "app.yaml").unwrap();
    let e = render(&s, &Options::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("framework: app shop names no framework and none was detected yet"),
        "{e}"
    );
    s.framework = Some(Framework::Go);
    let e = render(&s, &Options::default()).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "image: app shop has no image yet: a git source gets one when it is built"
        ),
        "{e}"
    );
    s.image = Some("registry.example.com/shop:abc123".into());
    let r = render(&s, &Options::default()).unwrap();
    assert_eq!(r.objects[0].name(), "app-shop");
}
