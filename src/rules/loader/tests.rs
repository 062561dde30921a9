//! Unit tests of the rules-file cutter.

use super::*;

#[test]
fn splitter_finds_items_at_any_indentation() {
    let text = "# c\nrules:\n  - name: a\n    x: 1\n\n  # between\n  - name: b\n";
    assert_eq!(split_rule_items(text), Some(vec![(2, 6), (6, 7)]));
    let text = "rules:\n- name: a\n  x: 1\n- name: b\nother: 1\n";
    assert_eq!(split_rule_items(text), Some(vec![(1, 3), (3, 4)]));
    assert_eq!(split_rule_items("rules: []\n"), None);
}

#[test]
fn path_prefix_of_the_rules_list_is_dropped() {
    assert_eq!(strip_rules_path("rules[12].budget: bad"), "budget: bad");
    assert_eq!(strip_rules_path("rules[0]: unknown field"), "unknown field");
    assert_eq!(strip_rules_path("other: x"), "other: x");
}
