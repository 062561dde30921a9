//! Unit tests of Alertmanager matchers: operators, quoting, parse errors and the fast paths.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn equality_matches_only_the_exact_value() {
    let m = Matcher::parse(r#"severity="critical""#).unwrap();
    assert_eq!(m.op, MatchOp::Eq);
    assert!(m.matches(&labels(&[("severity", "critical")])));
    assert!(!m.matches(&labels(&[("severity", "critical2")])));
    assert!(!m.matches(&labels(&[])));
}

#[test]
fn inequality_matches_other_values_and_absent_labels() {
    let m = Matcher::parse(r#"severity!="info""#).unwrap();
    assert_eq!(m.op, MatchOp::Ne);
    assert!(!m.matches(&labels(&[("severity", "info")])));
    assert!(m.matches(&labels(&[("severity", "warning")])));
    assert!(m.matches(&labels(&[])));
}

#[test]
fn regex_matchers_are_anchored_like_alertmanager() {
    let m = Matcher::parse(r#"alertname=~"Kube.*OOM""#).unwrap();
    assert_eq!(m.op, MatchOp::Re);
    assert!(m.matches(&labels(&[("alertname", "KubePodOOM")])));
    assert!(!m.matches(&labels(&[("alertname", "XKubePodOOM")])));
    assert!(!m.matches(&labels(&[("alertname", "KubePodOOMKilled")])));
    // Alternation must be anchored as a whole, not just its first and last branch.
    let m = Matcher::parse(r#"severity=~"critical|warning""#).unwrap();
    assert!(m.matches(&labels(&[("severity", "warning")])));
    assert!(!m.matches(&labels(&[("severity", "criticalx")])));
    assert!(!m.matches(&labels(&[("severity", "xwarning")])));
}

#[test]
fn negative_regex_matches_values_the_regex_rejects() {
    let m = Matcher::parse(r#"namespace!~"kube-.*""#).unwrap();
    assert_eq!(m.op, MatchOp::NotRe);
    assert!(!m.matches(&labels(&[("namespace", "kube-system")])));
    assert!(m.matches(&labels(&[("namespace", "default")])));
    assert!(m.matches(&labels(&[])));
}

#[test]
fn absent_labels_match_as_the_empty_string() {
    let empty = labels(&[]);
    assert!(Matcher::parse(r#"foo="""#).unwrap().matches(&empty));
    assert!(Matcher::parse(r#"foo!="x""#).unwrap().matches(&empty));
    assert!(Matcher::parse(r#"foo=~".*""#).unwrap().matches(&empty));
    assert!(!Matcher::parse(r#"foo=~".+""#).unwrap().matches(&empty));
    assert!(!Matcher::parse(r#"foo!="""#).unwrap().matches(&empty));
}

#[test]
fn quoted_values_support_escapes() {
    let m = Matcher::parse(r#"msg="say \"hi\" \\ now\nbye""#).unwrap();
    assert_eq!(m.value, "say \"hi\" \\ now\nbye");
    let m = Matcher::parse(r#"path=~"a\\.b""#).unwrap();
    assert_eq!(m.value, r"a\.b");
    assert!(m.matches(&labels(&[("path", "a.b")])));
    assert!(!m.matches(&labels(&[("path", "axb")])));
}

#[test]
fn unquoted_values_and_spaces_around_the_operator_are_accepted() {
    let m = Matcher::parse("  severity != info ").unwrap();
    assert_eq!(
        (m.name.as_str(), m.op, m.value.as_str()),
        ("severity", MatchOp::Ne, "info")
    );
    let m = Matcher::parse("alertname=~Kube.*OOM.*").unwrap();
    assert_eq!(m.value, "Kube.*OOM.*");
}

#[test]
fn display_gives_the_canonical_quoted_form_that_parses_back() {
    for s in [
        r#"a = b"#,
        r#"a!="x\"y""#,
        r#"a=~"x\\d+""#,
        r#"a!~"l1\nl2""#,
    ] {
        let m = Matcher::parse(s).unwrap();
        let shown = m.to_string();
        assert_eq!(Matcher::parse(&shown).unwrap(), m, "{s} -> {shown}");
    }
    assert_eq!(Matcher::parse("a = b").unwrap().to_string(), r#"a="b""#);
    assert_eq!(
        Matcher::parse(r#"a!~"q\"""#).unwrap().to_string(),
        r#"a!~"q\"""#
    );
}

#[test]
fn braces_form_and_plain_lists_parse_to_the_same_matchers() {
    let a = parse_matchers(r#"{auto_repair="restart", severity!="info"}"#).unwrap();
    let b = parse_matchers(r#"auto_repair="restart",severity!="info""#).unwrap();
    let c = parse_matchers(r#" { auto_repair = restart , severity != "info" , } "#).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert!(parse_matchers("{}").unwrap().is_empty());
}

#[test]
fn commas_inside_quoted_values_do_not_split_matchers() {
    let ms = parse_matchers(r#"{a="x,y", b=~"c{1,2}"}"#).unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].value, "x,y");
    assert_eq!(ms[1].value, "c{1,2}");
}

#[test]
fn parse_errors_name_the_column() {
    let cases: &[(&str, usize, &str)] = &[
        (r#"1abc="x""#, 1, "label name"),
        (r#"abc=="x""#, 5, "unexpected `=`"),
        (r#"abc<"x""#, 4, "operator"),
        (r#"abc="x"#, 5, "unterminated"),
        (r#"abc="\q""#, 6, "unknown escape"),
        (r#"abc=~"(""#, 6, "regular expression"),
        (r#"abc="#, 5, "expected a label value"),
        (r#"abc='x'"#, 5, "quoted with"),
        (r#"abc="x" y"#, 9, "unexpected `y`"),
        (r#"abé="x""#, 3, "operator"),
    ];
    for (input, column, needle) in cases {
        let e = Matcher::parse(input).unwrap_err();
        assert_eq!(e.column, *column, "{input}: {e}");
        assert!(e.message.contains(needle), "{input}: {e}");
        assert!(e.to_string().contains(&format!("column {column}")), "{e}");
    }
}

#[test]
fn list_parse_errors_name_the_column_in_the_whole_string() {
    let e = parse_matchers(r#"{a="b", c="d""#).unwrap_err();
    assert!(e.message.contains("closing `}`"), "{e}");
    assert_eq!(e.column, 14);
    let e = parse_matchers(r#"{a="b" c="d"}"#).unwrap_err();
    assert_eq!(e.column, 8);
    assert!(e.message.contains("expected `,`"), "{e}");
    let e = parse_matchers(r#"{a="b"} x"#).unwrap_err();
    assert_eq!(e.column, 9);
}

#[test]
fn literal_prefix_is_conservative() {
    assert_eq!(literal_prefix("Kube.*OOM.*"), "Kube");
    assert_eq!(literal_prefix("abc*"), "ab");
    assert_eq!(literal_prefix("abc?d"), "ab");
    assert_eq!(literal_prefix("ab{0}"), "a");
    assert_eq!(literal_prefix("a|b"), "");
    assert_eq!(literal_prefix("(?i)kube"), "");
    assert_eq!(literal_prefix(r"a\.b"), "a");
    assert_eq!(literal_prefix("[ab]c"), "");
}

#[test]
fn prefix_filter_never_changes_the_result() {
    let values = [
        "", "a", "ab", "abc", "b", "KubeOOM", "kubeoom", "Kube", "xKube",
    ];
    for re in [
        "abc*",
        "ab?",
        "Kube.*",
        "(?i)kube.*",
        "a+",
        "a{0,2}b",
        "ab|b",
        "",
    ] {
        let m = Matcher::parse(&format!("l=~\"{re}\"")).unwrap();
        let plain = Regex::new(&format!("^(?:{re})$")).unwrap();
        for v in values {
            assert_eq!(m.matches_value(v), plain.is_match(v), "{re} on {v:?}");
        }
    }
}

#[test]
fn glob_shortcut_agrees_with_the_regex_engine() {
    let patterns = [
        "Kube.*OOM.*",
        ".*OOM",
        "a.*b.*c",
        "critical|warning",
        "a|.*b",
        ".*",
        "",
        "x.*x",
        "ab.*ba",
        ".*.*a",
        "a.*.*b",
        "é.*ü",
        "a.b",
        "a.*?b",
        "(?i)a.*",
    ];
    let values = [
        "",
        "a",
        "b",
        "ab",
        "aba",
        "abba",
        "abxba",
        "abc",
        "axbxc",
        "acb",
        "x",
        "xx",
        "xax",
        "KubeOOM",
        "KubePodOOMKilled",
        "kubeoom",
        "OOM",
        "xOOM",
        "critical",
        "warning",
        "criticalwarning",
        "aXb",
        "a\nb",
        "\n",
        "éü",
        "éxü",
        "a.b",
    ];
    let mut shortcut = 0;
    for re in patterns {
        let m = Matcher::parse(&format!("l=~\"{re}\"")).unwrap();
        shortcut += usize::from(m.compiled.globs.is_some());
        let plain = Regex::new(&format!("^(?:{re})$")).unwrap();
        for v in values {
            assert_eq!(m.matches_value(v), plain.is_match(v), "{re} on {v:?}");
        }
    }
    // Most of these must take the shortcut, or this test checks nothing.
    assert_eq!(shortcut, 12);
}

#[test]
fn new_validates_name_and_regex() {
    assert!(Matcher::new("a", MatchOp::Eq, "x").is_ok());
    assert!(Matcher::new("a-b", MatchOp::Eq, "x").is_err());
    assert!(Matcher::new("a", MatchOp::Re, "(").is_err());
    assert!(
        Matcher::new("a", MatchOp::Re, "x+")
            .unwrap()
            .matches_value("xx")
    );
}
