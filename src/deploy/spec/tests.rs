//! Unit tests of parsing and validating app specs.

use super::*;

const MINIMAL: &str =
    "name: shop\ndomain: shop.example.com\nframework: flask\nimage: ghcr.io/acme/shop:1.4.2\n";

#[test]
fn a_minimal_spec_gets_the_documented_defaults() {
    let s = AppSpec::parse(MINIMAL, "app.yaml").unwrap();
    assert_eq!(s.namespace(), "shop");
    assert_eq!(s.plan, Plan::Basic);
    assert_eq!(s.replicas, 2);
    assert!(s.auto_repair);
    assert_eq!(s.version(), "1.4.2");
    assert_eq!(s.ingress.class, "nginx");
}

#[test]
fn json_is_accepted_as_well_as_yaml() {
    let s = AppSpec::parse(
            r#"{"name":"api","domain":"api.example.com","framework":"go","image":"api:2","plan":"advanced"}"#,
            "body",
        )
        .unwrap();
    assert_eq!(s.plan, Plan::Advanced);
    assert_eq!(s.framework.default_port(), 8080);
}

#[test]
fn plans_give_the_issues_requests_and_limits_twice_as_large() {
    let got: Vec<_> = [
        Plan::Basic,
        Plan::Standard,
        Plan::Advanced,
        Plan::Professional,
    ]
    .into_iter()
    .map(|p| {
        let r = p.resources();
        (r.memory_request, r.cpu_request, r.memory_limit, r.cpu_limit)
    })
    .collect();
    let s = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        got,
        vec![
            s("256Mi", "250m", "512Mi", "500m"),
            s("512Mi", "500m", "1Gi", "1000m"),
            s("1Gi", "1000m", "2Gi", "2000m"),
            s("2Gi", "2000m", "4Gi", "4000m"),
        ]
    );
}

#[test]
fn an_unknown_framework_is_named_with_the_known_ones() {
    let e = AppSpec::parse(&MINIMAL.replace("flask", "rails"), "app.yaml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("framework"), "{msg}");
    assert!(msg.contains("rails") && msg.contains("nextjs"), "{msg}");
}

#[test]
fn an_unknown_plan_and_an_unknown_key_are_named() {
    let e = AppSpec::parse(&format!("{MINIMAL}plan: huge\n"), "app.yaml").unwrap_err();
    assert!(e.to_string().contains("plan"), "{e}");
    let e = AppSpec::parse(&format!("{MINIMAL}replica: 3\n"), "app.yaml").unwrap_err();
    assert!(e.to_string().contains("replica"), "{e}");
}

#[test]
fn every_bad_field_is_reported_at_once_by_name() {
    let text = "name: Shop_1\ndomain: localhost\nframework: static\nimage: ''\nreplicas: 0\n\
                    health_path: healthz\nenv: {1BAD: x}\nsecrets: [Bad_Secret]\n\
                    django: {migrate: true}\n";
    let e = AppSpec::parse(text, "app.yaml").unwrap_err();
    let fields: Vec<&str> = e.problems().iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "name",
            "domain",
            "image",
            "replicas",
            "health_path",
            "env.1BAD",
            "secrets[0]",
            "django"
        ],
        "{e}"
    );
    assert!(
        e.to_string().starts_with("app.yaml: invalid app spec"),
        "{e}"
    );
}

#[test]
fn names_that_cannot_name_a_service_are_refused() {
    for bad in ["1shop", "-shop", "shop-", "a".repeat(41).as_str()] {
        let e = AppSpec::parse(
            &MINIMAL.replace("name: shop", &format!("name: '{bad}'")),
            "x",
        )
        .unwrap_err();
        assert_eq!(e.problems()[0].field, "name", "{bad}: {e}");
    }
}

#[test]
fn domains_must_be_lowercase_multi_label_names() {
    for bad in [
        "Shop.example.com",
        "*.example.com",
        "shop",
        "shop..com",
        "shop.com.",
    ] {
        let e = AppSpec::parse(
            &MINIMAL.replace("shop.example.com", &format!("'{bad}'")),
            "x",
        )
        .unwrap_err();
        assert_eq!(e.problems()[0].field, "domain", "{bad}: {e}");
    }
}

#[test]
fn the_version_comes_from_the_tag_or_the_digest_or_says_latest() {
    let v = |image: &str| {
        AppSpec::parse(&MINIMAL.replace("ghcr.io/acme/shop:1.4.2", image), "x")
            .unwrap()
            .version()
    };
    assert_eq!(v("registry:5000/acme/shop"), "latest");
    assert_eq!(v("registry:5000/acme/shop:v2"), "v2");
    assert_eq!(v("acme/shop@sha256:0123456789abcdef0123"), "0123456789ab");
}
