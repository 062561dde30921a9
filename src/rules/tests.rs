//! Tests of loading and matching through the public API.

use std::path::Path;
use std::time::Duration;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Loads `files` from a fresh directory and returns the diagnostics as displayed, with the
/// temporary directory replaced by `rules`.
fn problems(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    let err = RuleSet::load_dir(dir.path()).expect_err("rules should be invalid");
    let prefix = format!("{}/", dir.path().display());
    err.diagnostics()
        .iter()
        .map(|d| d.to_string().replace(&prefix, "rules/"))
        .collect()
}

fn problem(text: &str) -> String {
    let p = problems(&[("r.yaml", text)]);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap()
}

fn assert_problem(text: &str, at: &str, needle: &str) {
    let p = problem(text);
    assert!(p.starts_with(at), "expected {at} in {p}");
    assert!(p.contains(needle), "expected {needle:?} in {p}");
}

const FULL: &str = r#"
rules:
  - name: restart-on-down
    matchers:
      - auto_repair="restart"
      - severity!="info"
    playbook: restart
    params: {timeout: 5m, replicas: 2}
    target:
      namespace: $namespace
      kind: [$target_kind, Deployment]
      name: [$deployment, $app]
    wait: 2m
    cooldown: 10m
    budget: {max: 3, window: 1h}
    dry_run: true
    continue: true
    timeout: 1h 30m
    escalate:
      - playbook: rollback
        params: {to: previous}
      - notify: oncall
  - name: minimal
    matchers: '{alertname="X"}'
    playbook: noop
"#;

#[test]
fn a_full_rule_parses_every_field() {
    let rules = RuleSet::parse_str(FULL, Path::new("rules/a.yaml")).unwrap();
    assert_eq!(rules.len(), 2);
    let r = &rules[0];
    assert_eq!(r.name, "restart-on-down");
    assert_eq!(r.location.to_string(), "rules/a.yaml:3");
    assert_eq!(
        r.matchers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [r#"auto_repair="restart""#, r#"severity!="info""#]
    );
    assert_eq!(r.playbook, "restart");
    assert_eq!(
        r.params,
        serde_json::json!({"timeout": "5m", "replicas": 2})
    );
    assert_eq!(r.target.namespace, vec![Source::Label("namespace".into())]);
    assert_eq!(
        r.target.name,
        vec![
            Source::Label("deployment".into()),
            Source::Label("app".into())
        ]
    );
    assert_eq!(r.wait, Duration::from_secs(120));
    assert_eq!(r.cooldown, Duration::from_secs(600));
    assert_eq!(
        r.budget,
        Some(Budget {
            max: 3,
            window: Duration::from_secs(3600)
        })
    );
    assert!(r.dry_run);
    assert!(r.continue_matching);
    assert_eq!(r.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(
        r.escalate,
        vec![
            EscalationStep::Playbook {
                playbook: "rollback".into(),
                params: serde_json::json!({"to": "previous"})
            },
            EscalationStep::Notify {
                route: "oncall".into()
            }
        ]
    );
    assert_eq!(r.playbooks().collect::<Vec<_>>(), ["restart", "rollback"]);
}

#[test]
fn omitted_settings_take_their_defaults() {
    let rules = RuleSet::parse_str(FULL, Path::new("a.yaml")).unwrap();
    let r = &rules[1];
    assert_eq!(r.location.line, 23);
    assert_eq!(r.matchers.len(), 1);
    assert_eq!(r.params, serde_json::json!({}));
    assert_eq!(r.target, TargetSpec::default());
    assert_eq!((r.wait, r.cooldown), (Duration::ZERO, Duration::ZERO));
    assert_eq!(r.budget, None);
    assert!(!r.dry_run && !r.continue_matching);
    assert_eq!(r.timeout, None);
    assert!(r.escalate.is_empty());
}

#[test]
fn empty_files_and_empty_rule_lists_give_no_rules() {
    for text in [
        "",
        "\n# nothing yet\n",
        "rules: []\n",
        "rules:\n",
        "---\nrules: []\n",
    ] {
        assert!(
            RuleSet::parse_str(text, Path::new("a.yaml"))
                .unwrap()
                .is_empty(),
            "{text:?}"
        );
    }
}

#[test]
fn load_dir_reads_yaml_and_yml_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let rule =
        |name: &str| format!("rules:\n  - name: {name}\n    matchers: [a=b]\n    playbook: p\n");
    write(dir.path(), "b.yml", &rule("second"));
    write(dir.path(), "a.yaml", &rule("first"));
    write(
        dir.path(),
        "c.yaml",
        &format!(
            "{}  - name: third\n    matchers: [a=c]\n    playbook: p\n",
            rule("third-a")
        ),
    );
    write(dir.path(), "notes.txt", "not yaml: [");
    write(dir.path(), ".#a.yaml", "not yaml: [");
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let set = RuleSet::load_dir(dir.path()).unwrap();
    let names: Vec<_> = set.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["first", "second", "third-a", "third"]);
    assert_eq!(set.len(), 4);
    assert_eq!(set.rules()[3].location.line, 5);
    assert!(set.rules()[3].location.file.ends_with("c.yaml"));
    assert_eq!(set.get("second").unwrap().location.line, 2);
}

#[test]
fn an_empty_directory_gives_an_empty_set() {
    let dir = tempfile::tempdir().unwrap();
    let set = RuleSet::load_dir(dir.path()).unwrap();
    assert!(set.is_empty());
    assert!(set.matching(&labels(&[("alertname", "X")])).is_empty());
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = RuleSet::load_dir(&missing).unwrap_err();
    assert!(matches!(err, Error::Dir { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert_eq!(err.metric_label(), "dir");
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b\n    playbook: p\n",
        "rules/r.yaml:4:",
        "",
    );
    let p = problem("rules:\n  - name: a\n   bad: [\n");
    assert!(p.starts_with("rules/r.yaml:3:"), "{p}");
}

#[test]
fn unknown_fields_are_errors_at_the_key() {
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    cooldwn: 5m\n",
        "rules/r.yaml:5:5: unknown field `cooldwn`, expected one of",
        "cooldown",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    budget: {max: 1, windw: 1h}\n",
        "rules/r.yaml:5:",
        "unknown field `windw`",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    target: {nmespace: x}\n",
        "rules/r.yaml:5:",
        "unknown field `nmespace`",
    );
    assert_problem(
        "rule:\n  - name: a\n",
        "rules/r.yaml:1:1:",
        "unknown field `rule`",
    );
}

#[test]
fn bad_matchers_are_reported_on_their_own_line_with_the_column_inside() {
    assert_problem(
        "rules:\n  - name: a\n    matchers:\n      - a=\"b\"\n      - severity=!info\n    playbook: p\n",
        "rules/r.yaml:5:9:",
        "invalid matcher `severity=!info`: column 10",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: '{a=\"b\" c=\"d\"}'\n    playbook: p\n",
        "rules/r.yaml:3:",
        "column 8",
    );
}

#[test]
fn unquoted_braces_form_gets_a_hint_to_quote_it() {
    assert_problem(
        "rules:\n  - name: a\n    matchers: {a=\"b\"}\n    playbook: p\n",
        "rules/r.yaml:3:",
        "quote the braces form",
    );
}

#[test]
fn empty_or_missing_matchers_are_errors() {
    for m in ["[]", "'{}'", "''", "~"] {
        assert_problem(
            &format!("rules:\n  - name: a\n    matchers: {m}\n    playbook: p\n"),
            "rules/r.yaml:3:",
            "matchers: must not be empty",
        );
    }
    assert_problem(
        "rules:\n  - name: a\n    playbook: p\n",
        "rules/r.yaml:2:",
        "missing field `matchers`",
    );
}

#[test]
fn durations_need_units() {
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    wait: 30\n",
        "rules/r.yaml:5:11:",
        "bare number `30` is not a duration",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    cooldown: 10 minutes please\n",
        "rules/r.yaml:5:",
        "invalid duration `10 minutes please`",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    budget:\n      max: 2\n      window: 1.5\n",
        "rules/r.yaml:7:",
        "bare number",
    );
}

#[test]
fn invalid_names_are_errors() {
    assert_problem(
        "rules:\n  - name: Restart_On_Down\n    matchers: [a=b]\n    playbook: p\n",
        "rules/r.yaml:2:11:",
        "invalid rule name `Restart_On_Down`",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: ../etc/passwd\n",
        "rules/r.yaml:4:",
        "invalid playbook name",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    escalate:\n      - notify: on call\n",
        "rules/r.yaml:6:",
        "invalid notification route name",
    );
}

#[test]
fn unsupported_kind_literals_are_errors() {
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    target:\n      kind: [$k, CronJob]\n",
        "rules/r.yaml:6:",
        "unsupported kind `CronJob`",
    );
}

#[test]
fn a_zero_budget_is_an_error() {
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    budget: {max: 0, window: 1h}\n",
        "rules/r.yaml:5:",
        "budget.max must be at least 1",
    );
}

#[test]
fn escalation_steps_need_exactly_one_action() {
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    escalate:\n      - playbook: x\n        notify: y\n",
        "rules/r.yaml:6:",
        "not both",
    );
    assert_problem(
        "rules:\n  - name: a\n    matchers: [a=b]\n    playbook: p\n    escalate:\n      - params: {}\n",
        "rules/r.yaml:6:",
        "needs `playbook` or `notify`",
    );
}

#[test]
fn duplicate_names_across_files_point_at_the_second_and_name_the_first() {
    let p = problems(&[
        (
            "a.yaml",
            "rules:\n  - name: dup\n    matchers: [a=b]\n    playbook: p\n",
        ),
        (
            "b.yaml",
            "# second file\nrules:\n  - name: other\n    matchers: [a=b]\n    playbook: p\n  - name: dup\n    matchers: [a=c]\n    playbook: p\n",
        ),
    ]);
    assert_eq!(
        p,
        ["rules/b.yaml:6: duplicate rule name `dup`, first defined at rules/a.yaml:2"]
    );
}

#[test]
fn every_problem_in_every_file_is_reported_in_file_order() {
    let p = problems(&[
        (
            "b.yaml",
            "rules:\n  - name: ok\n    matchers: [a=b]\n    playbook: p\n  - name: bad-matcher\n    matchers: ['a=~\"(\"']\n    playbook: p\n  - name: bad-wait\n    matchers: [a=b]\n    playbook: p\n    wait: 5\n",
        ),
        (
            "a.yaml",
            "rules:\n  - name: x\n    matchers: [a=b]\n    playbok: p\n",
        ),
        ("c.yml", "rules: [\n"),
    ]);
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(
        p[0].starts_with("rules/a.yaml:4:5: unknown field `playbok`"),
        "{}",
        p[0]
    );
    assert!(
        p[1].starts_with("rules/b.yaml:6:16: matchers[0]: invalid matcher"),
        "{}",
        p[1]
    );
    assert!(
        p[1].contains("unclosed group at character 1 of the regex"),
        "{}",
        p[1]
    );
    assert!(
        p[2].starts_with("rules/b.yaml:11:11: wait: bare number"),
        "{}",
        p[2]
    );
    assert!(p[3].starts_with("rules/c.yml:"), "{}", p[3]);
    // The whole error displays one problem per line.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "rules:\n  - name: A\n    matchers: [a=b]\n    playbook: p\n  - name: b\n    matchers: []\n    playbook: p\n",
    );
    let err = RuleSet::load_dir(dir.path()).unwrap_err();
    assert_eq!(err.to_string().lines().count(), 2, "{err}");
    assert_eq!(err.metric_label(), "invalid");
}

#[test]
fn flow_style_files_parse_and_still_report_a_located_error() {
    let ok = "rules: [{name: a, matchers: [a=b], playbook: p}, {name: b, matchers: [c=d], playbook: q}]\n";
    let rules = RuleSet::parse_str(ok, Path::new("f.yaml")).unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1].location.line, 1);
    let bad = "rules: [{name: a, matchers: [a=b], playbook: p, wait: 3}]\n";
    let err = RuleSet::parse_str(bad, Path::new("f.yaml")).unwrap_err();
    assert_eq!(err.to_string().lines().count(), 1);
    assert!(err.to_string().starts_with("f.yaml:1:"), "{err}");
    assert!(err.to_string().contains("bare number"), "{err}");
}

#[test]
fn anchors_shared_between_rules_do_not_cause_false_errors() {
    let text = "rules:\n  - name: a\n    matchers: &m [a=b]\n    playbook: p\n  - name: b\n    matchers: *m\n    playbook: p\n";
    let rules = RuleSet::parse_str(text, Path::new("a.yaml")).unwrap();
    assert_eq!(rules[1].matchers, rules[0].matchers);
    assert_eq!(rules[1].location.line, 5);
}

fn rule(name: &str, matchers: &str, cont: bool) -> Rule {
    let mut r = Rule::new(name, parse_matchers(matchers).unwrap(), "p");
    r.continue_matching = cont;
    r
}

fn names<'a>(rules: &[&'a Rule]) -> Vec<&'a str> {
    rules.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn the_first_matching_rule_wins() {
    let set = RuleSet::from_rules(vec![
        rule("other", r#"alertname="Y""#, false),
        rule("specific", r#"alertname="X", severity="critical""#, false),
        rule("general", r#"alertname="X""#, false),
        rule("catch-all", r#"severity=~".*""#, false),
    ]);
    let crit = labels(&[("alertname", "X"), ("severity", "critical")]);
    assert_eq!(names(&set.matching(&crit)), ["specific"]);
    let warn = labels(&[("alertname", "X"), ("severity", "warning")]);
    assert_eq!(names(&set.matching(&warn)), ["general"]);
    assert_eq!(names(&set.matching(&labels(&[]))), ["catch-all"]);
}

#[test]
fn continue_lets_later_rules_apply_too() {
    let set = RuleSet::from_rules(vec![
        rule("log", r#"severity!="info""#, true),
        rule("restart", r#"auto_repair="restart""#, false),
        rule("never", r#"auto_repair="restart""#, false),
    ]);
    let l = labels(&[("auto_repair", "restart"), ("severity", "critical")]);
    assert_eq!(names(&set.matching(&l)), ["log", "restart"]);
    let l = labels(&[("auto_repair", "restart"), ("severity", "info")]);
    assert_eq!(names(&set.matching(&l)), ["restart"]);
    let l = labels(&[("severity", "critical")]);
    assert_eq!(names(&set.matching(&l)), ["log"]);
}

#[test]
fn equality_on_the_empty_value_matches_alerts_without_the_label() {
    // Such a matcher must not be used as an index key, or these alerts would be missed.
    let set = RuleSet::from_rules(vec![rule("no-team", r#"team="", alertname="A""#, false)]);
    assert_eq!(set.matching(&labels(&[("alertname", "A")])).len(), 1);
    assert!(
        set.matching(&labels(&[("alertname", "A"), ("team", "x")]))
            .is_empty()
    );
}

#[test]
fn playbooks_lists_every_referenced_playbook_once() {
    let mut r = rule("a", "a=b", false);
    r.escalate = vec![
        EscalationStep::Playbook {
            playbook: "rollback".into(),
            params: serde_json::json!({}),
        },
        EscalationStep::Notify { route: "x".into() },
    ];
    let set = RuleSet::from_rules(vec![r, rule("b", "a=c", false)]);
    assert_eq!(
        set.playbooks().into_iter().collect::<Vec<_>>(),
        ["p", "rollback"]
    );
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const NAMES: [&str; 5] = ["alertname", "severity", "auto_repair", "namespace", "team"];
const VALUES: [&str; 5] = ["a", "b", "c", "", "kube-system"];

fn random_rule(rng: &mut Rng, i: usize) -> Rule {
    let n = 1 + rng.below(3);
    let ms: Vec<String> = (0..n)
        .map(|_| {
            let name = rng.pick(&NAMES);
            match rng.below(6) {
                0..=2 => format!("{name}=\"{}\"", rng.pick(&VALUES)),
                3 => format!("{name}!=\"{}\"", rng.pick(&VALUES)),
                4 => format!("{name}=~\"{}\"", rng.pick(&["a|b", "k.*", ".*", "c+", ""])),
                _ => format!("{name}!~\"{}\"", rng.pick(&["a", "kube-.*", ".+"])),
            }
        })
        .collect();
    rule(&format!("r{i}"), &ms.join(","), rng.below(4) == 0)
}

fn linear<'a>(rules: &'a [Rule], l: &Labels) -> Vec<&'a Rule> {
    let mut out = Vec::new();
    for r in rules {
        if r.matches(l) {
            out.push(r);
            if !r.continue_matching {
                break;
            }
        }
    }
    out
}

#[test]
fn the_index_gives_exactly_what_a_linear_scan_gives() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut non_empty = 0;
    for _ in 0..200 {
        let rules: Vec<Rule> = (0..1 + rng.below(40))
            .map(|i| random_rule(&mut rng, i))
            .collect();
        let set = RuleSet::from_rules(rules.clone());
        for _ in 0..50 {
            let mut l = Labels::new();
            for n in NAMES {
                if rng.below(3) != 0 {
                    l.insert(n.to_owned(), rng.pick(&VALUES).to_owned());
                }
            }
            let expected = names(&linear(&rules, &l));
            non_empty += usize::from(!expected.is_empty());
            assert_eq!(names(&set.matching(&l)), expected, "labels {l:?}");
        }
    }
    // Guard against a generator so sparse that both sides trivially agree on nothing.
    assert!(
        non_empty > 2_000,
        "only {non_empty} alerts matched anything"
    );
}

#[test]
fn many_anchor_names_use_the_label_side_probe_and_agree_with_a_scan() {
    // More distinct anchor label names than alert labels exercises the other probe direction.
    let rules: Vec<Rule> = (0..30)
        .map(|i| {
            rule(
                &format!("r{i}"),
                &format!("l{}=\"v{}\"", i % 15, i % 4),
                i % 3 == 0,
            )
        })
        .collect();
    let set = RuleSet::from_rules(rules.clone());
    for i in 0..15 {
        for v in 0..4 {
            let l = labels(&[(&format!("l{i}"), &format!("v{v}")), ("x", "y")]);
            assert_eq!(names(&set.matching(&l)), names(&linear(&rules, &l)));
        }
    }
}

#[test]
fn alerts_with_many_labels_match_like_a_scan() {
    let rules = vec![
        rule("a", r#"l3="v3", l17!="x""#, true),
        rule("b", r#"l19=~"v1.*""#, false),
    ];
    let set = RuleSet::from_rules(rules.clone());
    for n in [4, 16, 17, 30] {
        let l: Labels = (0..n).map(|i| (format!("l{i}"), format!("v{i}"))).collect();
        let expected = names(&linear(&rules, &l));
        assert_eq!(names(&set.matching(&l)), expected, "{n} labels");
        assert_eq!(expected.len(), if n >= 20 { 2 } else { 1 }, "{n} labels");
    }
}

#[test]
fn rule_sets_are_cheap_to_share_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<RuleSet>();
}

#[test]
fn choose_best_takes_two_or_more_alternatives_and_nothing_else() {
    let rule = |step: &str| {
        format!(
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    playbook: restart\n    escalate:\n{step}"
        )
    };
    let ok = rule(
        "      - choose: best\n        from:\n          - playbook: rollback\n          - playbook: scale_memory\n            params: {max_limit: 2Gi}\n",
    );
    let rules = RuleSet::parse_str(&ok, Path::new("a.yaml")).unwrap();
    match &rules[0].escalate[0] {
        EscalationStep::Choose { alternatives } => {
            assert_eq!(alternatives.len(), 2);
            assert_eq!(alternatives[1].0, "scale_memory");
            assert_eq!(alternatives[1].1["max_limit"], "2Gi");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rules[0].playbooks().collect::<Vec<_>>(),
        ["restart", "rollback", "scale_memory"]
    );
    for (bad, message) in [
        (
            "      - choose: best\n        from:\n          - playbook: rollback\n",
            "at least two",
        ),
        (
            "      - choose: worst\n        from:\n          - playbook: a\n          - playbook: b\n",
            "not a strategy",
        ),
        (
            "      - choose: best\n        playbook: x\n        from:\n          - playbook: a\n          - playbook: b\n",
            "goes with `from`",
        ),
        (
            "      - playbook: x\n        from:\n          - playbook: a\n",
            "goes with `choose: best`",
        ),
    ] {
        let err = RuleSet::parse_str(&rule(bad), Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(message) && err.starts_with("a.yaml:"), "{err}");
    }
}

#[test]
fn a_line_break_only_yaml_sees_is_refused_where_an_editor_shows_it() {
    // The fuzzer's find: a paragraph separator inside a matcher made the parser place the
    // error on line 3 of what an editor shows as one line.
    let text = "{alertname=~\"Kube.*\u{2029}, severity!=info}";
    let e = RuleSet::parse_str(text, Path::new("r.yaml")).unwrap_err();
    let lines: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "r.yaml:1:20: contains U+2029 PARAGRAPH SEPARATOR, which YAML reads as a line break but editors do not show; delete it (it usually comes from pasted text)"
        ]
    );
    // Counted as the other diagnostics count lines: \r\n and a lone \r end one each.
    let text = "rules:\r\n  - name: a\r  # x\u{85}\n";
    let e = RuleSet::parse_str(text, Path::new("r.yaml")).unwrap_err();
    let first = e.diagnostics()[0].to_string();
    assert!(
        first.starts_with("r.yaml:3:6: contains U+0085 NEXT LINE"),
        "{first}"
    );
}
