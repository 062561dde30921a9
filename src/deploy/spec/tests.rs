//! Unit tests of parsing and validating app specs.

use super::*;

const MINIMAL: &str =
    "name: shop\ndomain: shop.example.com\nframework: flask\nimage: ghcr.io/acme/shop:1.4.2\n";

#[test]
fn a_minimal_spec_gets_the_documented_defaults() {
    let s = AppSpec::parse(MINIMAL, "app.yaml").unwrap();
    assert_eq!(s.namespace(), "app-shop");
    assert_eq!(s.source_type, SourceType::Docker);
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
    assert_eq!(s.framework().map(Framework::default_port), Some(8080));
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
    assert!(e.to_string().starts_with("app.yaml:1:7: name: "), "{e}");
    assert_eq!(e.to_string().lines().count(), 8, "{e}");
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

/// The lines of a spec's error, `file:line:column: field: message` each.
fn report(text: &str) -> Vec<String> {
    let e = AppSpec::parse(text, "app.yaml").unwrap_err();
    e.to_string().lines().map(str::to_string).collect()
}

#[test]
fn four_different_bad_fields_make_four_lines_each_once_with_line_and_column() {
    let text = "name: shop\n\
                domain: localhost\n\
                framework: flaks\n\
                image: ghcr.io/acme/shop:1\n\
                replica: 3\n\
                replicas: many\n";
    assert_eq!(
        report(text),
        [
            "app.yaml:2:9: domain: \"localhost\" has a single label; a domain is a lowercase DNS name with at least two labels, e.g. shop.example.com",
            "app.yaml:3:12: framework: unknown value \"flaks\" (expected one of flask, django, nodejs, nextjs, static, go)",
            "app.yaml:5:1: replica: unknown field; did you mean `replicas`?",
            "app.yaml:6:11: replicas: invalid type: string \"many\", expected i32",
        ]
    );
}

#[test]
fn a_json_spec_gets_the_same_report_with_json_positions() {
    let text = "{\"name\": \"shop\", \"domain\": \"localhost\",\n \"framework\": \"flaks\", \"image\": \"x:1\",\n \"replica\": 3, \"replicas\": \"many\"}\n";
    assert_eq!(
        report(text),
        [
            "app.yaml:1:28: domain: \"localhost\" has a single label; a domain is a lowercase DNS name with at least two labels, e.g. shop.example.com",
            "app.yaml:2:15: framework: unknown value \"flaks\" (expected one of flask, django, nodejs, nextjs, static, go)",
            "app.yaml:3:2: replica: unknown field; did you mean `replicas`?",
            "app.yaml:3:28: replicas: invalid type: string \"many\", expected i32",
        ]
    );
}

#[test]
fn nested_keys_list_items_and_map_values_are_each_reported() {
    let text = "name: shop\ndomain: shop.example.com\nframework: flask\nimage: x:1\n\
                ingress:\n  clas: nginx\n  issuer_kind: Foo\n  isuer: x\n\
                addons:\n  - mongo\n  - redis\n  - mysql\n\
                env: {1BAD: x, GOOD: y}\n";
    assert_eq!(
        report(text),
        [
            "app.yaml:6:3: ingress.clas: unknown field; did you mean `class`?",
            "app.yaml:7:16: ingress.issuer_kind: \"Foo\": expected ClusterIssuer or Issuer",
            "app.yaml:8:3: ingress.isuer: unknown field; did you mean `issuer`?",
            "app.yaml:10:5: addons[0]: unknown value \"mongo\" (expected one of postgresql, redis)",
            "app.yaml:12:5: addons[2]: unknown value \"mysql\" (expected one of postgresql, redis)",
            "app.yaml:13:7: env.1BAD: is not an environment variable name: letters, digits and '_', not starting with a digit",
        ]
    );
}

#[test]
fn missing_and_unusable_required_fields_do_not_hide_the_other_checks() {
    // No image, no domain; the framework is unusable, so the django check that depends on it
    // is skipped, but the name is still checked.
    let text = "name: Shop_1\nframework: djnago\ndjango: {migrate: true}\n";
    let lines = report(text);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("app.yaml:1:1: domain: is missing"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("app.yaml:1:1: image: is missing"),
        "{lines:#?}"
    );
    assert!(
        lines[2].starts_with("app.yaml:1:7: name: \"Shop_1\""),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with("app.yaml:2:12: framework: unknown value \"djnago\""),
        "{lines:#?}"
    );
}

#[test]
fn the_required_fields_are_the_ones_serde_requires() {
    // MINIMAL holds exactly the required fields and the two a docker source requires (image
    // and framework, which serde leaves optional for git and upload sources).
    let minimal: serde_yaml::Mapping = serde_yaml::from_str(MINIMAL).unwrap();
    let keys: Vec<&str> = minimal.keys().filter_map(|k| k.as_str()).collect();
    let required: Vec<&str> = collect::REQUIRED.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        keys,
        [required.as_slice(), &["framework", "image"]].concat()
    );
    for (field, placeholder) in collect::REQUIRED {
        let mut without = minimal.clone();
        without.remove(field);
        let text = serde_yaml::to_string(&without).unwrap();
        let err = serde_yaml::from_str::<AppSpec>(&text).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{field}: {err}");
        // A placeholder passes every check, so it never adds a problem of its own.
        let mut with = minimal.clone();
        with.insert(field.into(), placeholder.into());
        let spec: AppSpec = serde_yaml::from_str(&serde_yaml::to_string(&with).unwrap()).unwrap();
        assert!(spec.problems().is_empty(), "{field}: {:?}", spec.problems());
    }
}

#[test]
fn a_duplicate_key_and_a_syntax_error_are_placed_too() {
    let text = format!("{MINIMAL}name: other\n");
    assert_eq!(report(&text), ["app.yaml:5:1: name: is given twice"]);
    let lines = report("name: shop\ndomain: [a\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("app.yaml:3:1: "), "{lines:?}");
    assert!(
        !lines[0].contains("line 3 column 1"),
        "said once: {lines:?}"
    );
    assert_eq!(
        report(""),
        [
            "app.yaml: the spec is empty; it needs at least name, domain and either image and framework (docker) or source_type and source_url (git, upload)"
        ]
    );
}

#[test]
fn positions_come_from_the_text_as_written_after_earlier_entries_are_blanked() {
    // Three problems on one line of flow style, and a wrong type in a list of strings.
    let text = "name: shop\ndomain: shop.example.com\nframework: flask\nimage: x:1\n\
                secrets: [ok, {a: b}, Bad_Name]\nnotifications: [x y]\n";
    assert_eq!(
        report(text),
        [
            "app.yaml:5:15: secrets[1]: invalid type: map, expected a string",
            "app.yaml:5:23: secrets[2]: \"Bad_Name\" has 'B', which is not a lowercase letter, digit, '-' or '.'; a Secret name is a DNS-1123 subdomain",
            "app.yaml:6:17: notifications[0]: \"x y\" is not a route name: letters, digits, '-' and '_'",
        ]
    );
}

/// The original design's example registration: a git source, no framework, no image.
const GIT: &str = "name: shop\ndisplay_name: Shop\ndomain: shop.example.com\n\
                   source_type: git\nsource_url: https://git.example.com/acme/shop.git\nplan: standard\n";

#[test]
fn the_original_designs_git_registration_is_accepted_without_framework_or_image() {
    let s = AppSpec::parse(GIT, "app.yaml").unwrap();
    assert_eq!(s.source_type, SourceType::Git);
    assert_eq!(
        s.source_url.as_deref(),
        Some("https://git.example.com/acme/shop.git")
    );
    assert_eq!((s.framework(), s.image()), (None, None));
    assert_eq!(s.namespace(), "app-shop");
    assert_eq!(s.plan, Plan::Standard);
}

#[test]
fn a_docker_source_names_its_image_and_framework_and_is_told_both_at_once() {
    let lines = report("name: shop\ndomain: shop.example.com\n");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "app.yaml:1:1: framework: is missing; it cannot be detected from an image"
        ),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("app.yaml:1:1: image: is missing; a docker source runs this image"),
        "{lines:#?}"
    );
}

#[test]
fn each_source_type_requires_its_own_location() {
    let no_url = GIT.replace("source_url: https://git.example.com/acme/shop.git\n", "");
    assert_eq!(
        report(&no_url),
        [
            "app.yaml:1:1: source_url: is missing; a git source is built from it, e.g. https://github.com/acme/shop.git"
        ]
    );
    let docker_with_url = format!("{MINIMAL}source_url: https://git.example.com/a.git\n");
    assert_eq!(
        report(&docker_with_url),
        [
            "app.yaml:5:1: source_url: only applies to source_type git or upload; a docker source names its image in `image`"
        ]
    );
}

#[test]
fn source_urls_are_checked_for_their_source_type() {
    let with = |t: &str, url: &str| {
        let text = GIT
            .replace("source_type: git", &format!("source_type: {t}"))
            .replace("https://git.example.com/acme/shop.git", url);
        AppSpec::parse(&text, "app.yaml")
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for (t, url) in [
        ("git", "git@github.com:acme/shop.git"),
        ("git", "ssh://git@git.example.com/acme/shop.git"),
        ("git", "git://127.0.0.1:9418/shop"),
        ("git", "file:///srv/git/shop"),
        ("upload", "https://files.example.com/shop-1.2.tar.gz"),
        ("upload", "/var/lib/aiops/uploads/shop.zip"),
        ("upload", "file:///tmp/shop.tgz"),
    ] {
        assert_eq!(with(t, url), Ok(()), "{t} {url}");
    }
    for (t, url, says) in [
        (
            "git",
            "ftp://example.com/shop.git",
            "has scheme \"ftp\"; a git source is one of https, http, git, ssh, file",
        ),
        ("git", "shop", "is not a git URL"),
        (
            "upload",
            "https://files.example.com/shop",
            "does not name an archive",
        ),
        (
            "upload",
            "git@github.com:acme/shop.git",
            "is not an archive location",
        ),
    ] {
        let e = with(t, url).unwrap_err();
        assert!(e.contains(&format!("source_url: {says}")), "{t} {url}: {e}");
    }
}

#[test]
fn credentials_in_a_source_url_are_refused_without_being_repeated() {
    for url in [
        "https://deploy:s3cr3t-token@git.example.com/acme/shop.git",
        "https://s3cr3t-token@git.example.com/acme/shop.git",
        "deploy:s3cr3t-token@github.com:acme/shop.git",
        "deploy:s3cr3t@token@github.com:acme/shop.git",
    ] {
        let e = AppSpec::parse(
            &GIT.replace("https://git.example.com/acme/shop.git", url),
            "app.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("source_url: carries credentials"), "{e}");
        assert!(!e.contains("s3cr3t"), "the secret is repeated: {e}");
    }
}

#[test]
fn an_unknown_source_type_is_reported_once_and_not_as_missing_fields() {
    let lines = report(&GIT.replace("source_type: git", "source_type: svn"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("app.yaml:4:14: source_type: unknown value \"svn\""),
        "{lines:#?}"
    );
}

#[test]
fn an_app_registered_before_the_app_prefix_default_keeps_its_namespace() {
    let mut s = AppSpec::parse(MINIMAL, "app.yaml").unwrap();
    assert!(s.keep_namespace("shop"));
    assert_eq!(s.namespace(), "shop");
    // Already where the default puts it: nothing to keep.
    let mut s = AppSpec::parse(MINIMAL, "app.yaml").unwrap();
    assert!(!s.keep_namespace("app-shop"));
    assert_eq!(s.namespace, None);
    // A namespace written in the spec is what the spec means.
    let mut s = AppSpec::parse(&format!("{MINIMAL}namespace: shop-v2\n"), "app.yaml").unwrap();
    assert!(!s.keep_namespace("shop"));
    assert_eq!(s.namespace(), "shop-v2");
}
