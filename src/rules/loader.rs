//! Reading rules files, with every problem reported as `file:line:column: message`.
//!
//! Validation happens inside `Deserialize` impls so serde_norway attaches the position of the
//! offending YAML node. serde stops at the first error, so to report problems in every rule the
//! `rules:` block sequence is also cut into one text chunk per rule and each chunk is parsed on
//! its own (line numbers shifted back). The chunks also give each rule its line. When the file is
//! laid out in a way the cutter does not understand (flow style, say), the whole file is parsed
//! at once and only its first problem is reported.
//!
//! The field types shared by every rule (durations, names, parameters) are in `fields.rs`; the
//! unit tests in `tests.rs`. What stays here is one parser, read best whole: the rule's shape
//! (budget, escalation steps, verification), the cutter, and the diagnostics.

mod fields;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::Deserializer;

use fields::{
    Dur, Name, Params, PlaybookNameKind, RouteNameKind, RuleNameKind, checked_map, empty_object,
};

use super::matcher::Matchers;
use super::{
    Budget, Diagnostic, Error, EscalationStep, Location, Result, Rule, RuleApproval, TargetSpec,
    Verify,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    max: u32,
    window: Dur,
}

fn check_budget(raw: RawBudget) -> Result<Budget, String> {
    if raw.max == 0 {
        return Err("budget.max must be at least 1 (to disable a rule, remove it)".to_owned());
    }
    if raw.window.0.is_zero() {
        return Err("budget.window must be longer than 0s".to_owned());
    }
    Ok(Budget {
        max: raw.max,
        window: raw.window.0,
    })
}

struct BudgetField(Budget);

impl<'de> Deserialize<'de> for BudgetField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_map(d, "a mapping {max: N, window: DURATION}", check_budget).map(BudgetField)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    playbook: Option<Name<PlaybookNameKind>>,
    #[serde(default)]
    params: Option<Params>,
    #[serde(default)]
    notify: Option<Name<RouteNameKind>>,
    #[serde(default)]
    choose: Option<String>,
    #[serde(default)]
    from: Option<Vec<RawAlternative>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlternative {
    playbook: Name<PlaybookNameKind>,
    #[serde(default)]
    params: Option<Params>,
}

fn check_step(raw: RawStep) -> Result<EscalationStep, String> {
    if let Some(strategy) = raw.choose {
        if raw.playbook.is_some() || raw.params.is_some() || raw.notify.is_some() {
            return Err(
                "`choose` goes with `from`, not with `playbook`, `params` or `notify`".to_owned(),
            );
        }
        if strategy != "best" {
            return Err(format!(
                "choose: {strategy:?} is not a strategy; the one there is is `best`"
            ));
        }
        let from = raw.from.unwrap_or_default();
        if from.len() < 2 {
            return Err("choose: best needs at least two alternatives in `from`".to_owned());
        }
        return Ok(EscalationStep::Choose {
            alternatives: from
                .into_iter()
                .map(|a| (a.playbook.0, a.params.map_or_else(empty_object, |p| p.0)))
                .collect(),
        });
    }
    if raw.from.is_some() {
        return Err("`from` goes with `choose: best`".to_owned());
    }
    match (raw.playbook, raw.params, raw.notify) {
        (Some(p), params, None) => Ok(EscalationStep::Playbook {
            playbook: p.0,
            params: params.map_or_else(empty_object, |p| p.0),
        }),
        (None, None, Some(route)) => Ok(EscalationStep::Notify { route: route.0 }),
        (None, Some(_), Some(_)) => Err("`params` goes with `playbook`, not `notify`".to_owned()),
        (Some(_), _, Some(_)) => {
            Err("an escalation step has either `playbook` or `notify`, not both".to_owned())
        }
        (None, _, None) => Err("an escalation step needs `playbook` or `notify`".to_owned()),
    }
}

struct StepField(EscalationStep);

impl<'de> Deserialize<'de> for StepField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_map(
            d,
            "a mapping with `playbook` (and `params`), `notify`, or `choose: best` with `from`",
            check_step,
        )
        .map(StepField)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    #[serde(default)]
    rollout: Option<bool>,
    #[serde(default)]
    rollout_timeout: Option<Dur>,
    #[serde(default)]
    health_url: Option<String>,
    #[serde(default)]
    resolved_within: Option<Dur>,
}

fn check_verify(raw: RawVerify) -> Result<Verify, String> {
    let d = Verify::default();
    if let Some(url) = &raw.health_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(format!(
            "verify.health_url must be an http:// or https:// URL, got {url:?}"
        ));
    }
    Ok(Verify {
        rollout: raw.rollout.unwrap_or(d.rollout),
        rollout_timeout: raw.rollout_timeout.map_or(d.rollout_timeout, |t| t.0),
        health_url: raw.health_url,
        resolved_within: raw.resolved_within.map(|t| t.0),
    })
}

struct VerifyField(Verify);

impl<'de> Deserialize<'de> for VerifyField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_map(
            d,
            "a mapping {rollout, rollout_timeout, health_url, resolved_within}",
            check_verify,
        )
        .map(VerifyField)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    #[serde(default)]
    expires: Option<Dur>,
    #[serde(default)]
    approvers: Option<Vec<super::Approver>>,
}

fn check_approval(raw: RawApproval) -> Result<RuleApproval, String> {
    if raw.expires.is_some_and(|d| d.0.is_zero()) {
        return Err("approval.expires must be longer than 0s".to_owned());
    }
    Ok(RuleApproval {
        expires: raw.expires.map(|d| d.0),
        approvers: raw.approvers,
    })
}

struct ApprovalField(RuleApproval);

impl<'de> Deserialize<'de> for ApprovalField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_map(
            d,
            "a mapping {expires: DURATION, approvers: [platform:id, ...]}",
            check_approval,
        )
        .map(ApprovalField)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Name<RuleNameKind>,
    matchers: Matchers,
    playbook: Name<PlaybookNameKind>,
    #[serde(default)]
    params: Option<Params>,
    #[serde(default)]
    target: Option<TargetSpec>,
    #[serde(default)]
    wait: Option<Dur>,
    #[serde(default)]
    cooldown: Option<Dur>,
    #[serde(default)]
    budget: Option<BudgetField>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    timeout: Option<Dur>,
    #[serde(default)]
    escalate: Option<Vec<StepField>>,
    #[serde(default)]
    verify: Option<VerifyField>,
    #[serde(default)]
    mode: Option<super::Mode>,
    #[serde(default)]
    approval: Option<ApprovalField>,
    #[serde(default)]
    gitops: Option<super::GitopsPolicy>,
}

impl RawRule {
    fn into_rule(self, location: Location) -> Rule {
        Rule {
            name: self.name.0,
            location,
            matchers: self.matchers.0,
            playbook: self.playbook.0,
            params: self.params.map_or_else(empty_object, |p| p.0),
            target: self.target.unwrap_or_default(),
            wait: self.wait.map_or(Duration::ZERO, |d| d.0),
            cooldown: self.cooldown.map_or(Duration::ZERO, |d| d.0),
            budget: self.budget.map(|b| b.0),
            dry_run: self.dry_run,
            continue_matching: self.continue_matching,
            timeout: self.timeout.map(|d| d.0),
            escalate: self
                .escalate
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.0)
                .collect(),
            verify: self.verify.map(|v| v.0).unwrap_or_default(),
            mode: self.mode,
            approval: self.approval.map(|a| a.0).unwrap_or_default(),
            gitops: self.gitops,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Option<Vec<RawRule>>,
}

/// Parses one file. Returns the rules that are valid and the problems found; when there are
/// problems the caller should not use the rules.
pub(crate) fn parse_file(text: &str, file: &Path) -> (Vec<Rule>, Vec<Diagnostic>) {
    let diag = |e: &serde_yaml::Error, line_shift: isize| yaml_diagnostic(e, file, line_shift);
    // Before YAML: characters it reads as line breaks but editors do not show as any would
    // make every position after them wrong.
    let unusual = unusual_line_breaks(text, file);
    if !unusual.is_empty() {
        return (Vec::new(), unusual);
    }
    // Syntax first: it is the only error that makes the structure below meaningless.
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return (Vec::new(), vec![diag(&e, 0)]),
    };
    if value.is_null() {
        return (Vec::new(), Vec::new());
    }
    let n_items = value
        .get("rules")
        .and_then(serde_yaml::Value::as_sequence)
        .map_or(0, Vec::len);
    let items = split_rule_items(text).filter(|items| items.len() == n_items);
    let fallback_line = rules_key_line(text).unwrap_or(1);
    let line_of = |i: usize| items.as_ref().map_or(fallback_line, |it| it[i].0 + 1);
    match serde_yaml::from_str::<RawFile>(text) {
        Ok(raw) => {
            let rules = raw
                .rules
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    r.into_rule(Location {
                        file: file.to_owned(),
                        line: line_of(i),
                    })
                })
                .collect();
            (rules, Vec::new())
        }
        Err(whole) => {
            let whole_diag = diag(&whole, 0);
            let Some(items) = items else {
                return (Vec::new(), vec![whole_diag]);
            };
            let mut diags = Vec::new();
            for &(start, end) in &items {
                let chunk = format!("rules:\n{}", line_range(text, start, end));
                if let Err(e) = serde_yaml::from_str::<RawFile>(&chunk) {
                    // Chunk line 2 is file line start + 1 (both 1-based).
                    diags.push(diag(&e, start as isize - 1));
                }
            }
            // Problems outside the rules list (an unknown top-level key, say) only show up in
            // the whole-file parse; and if cutting hid the problem, trust the whole file.
            if diags.is_empty() || !whole.to_string().starts_with("rules[") {
                diags.push(whole_diag);
            }
            diags.sort_by_key(|d| (d.location.line, d.column));
            diags.dedup();
            (Vec::new(), diags)
        }
    }
}

/// Text of lines `start..end` (0-based, end exclusive), newlines included.
fn line_range(text: &str, start: usize, end: usize) -> &str {
    let offset = |line: usize| -> usize {
        if line == 0 {
            return 0;
        }
        text.match_indices('\n')
            .nth(line - 1)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    let a = offset(start);
    let b = offset(end).max(a);
    &text[a..b]
}

/// NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029): YAML 1.1 reads each
/// as a line break, so the parser's positions after one disagree with the lines an editor
/// shows (a rule "at line 3" of what looks like a 1-line file). They come from pasted text and
/// are never meant in a rules file, so each is refused where an editor shows it (lines ended by
/// `\n`, `\r\n` or a lone `\r`, as the other diagnostics count them), at most a few.
fn unusual_line_breaks(text: &str, file: &Path) -> Vec<Diagnostic> {
    const SHOWN: usize = 5;
    let mut out = Vec::new();
    let (mut line, mut column) = (1, 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let name = match c {
            '\u{85}' => Some("U+0085 NEXT LINE"),
            '\u{2028}' => Some("U+2028 LINE SEPARATOR"),
            '\u{2029}' => Some("U+2029 PARAGRAPH SEPARATOR"),
            _ => None,
        };
        if let Some(name) = name {
            out.push(Diagnostic {
                location: Location {
                    file: file.to_path_buf(),
                    line,
                },
                column: Some(column),
                message: format!(
                    "contains {name}, which YAML reads as a line break but editors do not show; delete it (it usually comes from pasted text)"
                ),
            });
            if out.len() == SHOWN {
                break;
            }
        }
        match c {
            '\r' if chars.peek() == Some(&'\n') => column += 1,
            '\n' | '\r' => (line, column) = (line + 1, 1),
            _ => column += 1,
        }
    }
    out
}

/// 1-based line of the top-level `rules:` key.
fn rules_key_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.starts_with("rules:"))
        .map(|i| i + 1)
}

/// Cuts the block sequence under a top-level `rules:` key into one line range per item
/// (0-based, end exclusive). `None` when the layout is not the plain block style this
/// understands; the caller also checks the count against the parsed YAML.
fn split_rule_items(text: &str) -> Option<Vec<(usize, usize)>> {
    let lines: Vec<&str> = text.lines().collect();
    let key = lines.iter().position(|l| {
        l.strip_prefix("rules:")
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    })?;
    let is_item = |l: &str, indent: usize| {
        l.len() > indent
            && l[..indent].bytes().all(|b| b == b' ')
            && (l[indent..].starts_with("- ") || l[indent..].trim_end() == "-")
    };
    let mut indent = None;
    let mut items: Vec<(usize, usize)> = Vec::new();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate().skip(key + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let this_indent = line.len() - trimmed.len();
        let d = *indent.get_or_insert(this_indent);
        if this_indent < d || (this_indent == d && !is_item(line, d)) {
            if d > 0 && this_indent == d {
                // Same indentation as the items but not an item: not a layout we understand.
                return None;
            }
            end = i;
            break;
        }
        if this_indent == d {
            if let Some(last) = items.last_mut() {
                last.1 = i;
            }
            items.push((i, lines.len()));
        } else if items.is_empty() {
            return None;
        }
    }
    if let Some(last) = items.last_mut() {
        last.1 = end;
    }
    Some(items)
}

/// A serde_norway error as a diagnostic; `line_shift` maps chunk lines back to file lines.
fn yaml_diagnostic(e: &serde_yaml::Error, file: &Path, line_shift: isize) -> Diagnostic {
    let mut message = e.to_string();
    let (line, column) = match e.location() {
        Some(loc) => {
            // serde_norway appends the position to the message; we print it in front instead.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(at) = message.find(&suffix) {
                message.replace_range(at..at + suffix.len(), "");
            }
            let line = (loc.line() as isize + line_shift).max(1) as usize;
            (line, Some(loc.column()))
        }
        None => (1, None),
    };
    Diagnostic {
        location: Location {
            file: file.to_owned(),
            line,
        },
        column,
        message: strip_rules_path(&message),
    }
}

/// `rules[3].budget: invalid value` → `budget: invalid value`: the line already says which
/// rule, and in a cut-out chunk the index would be wrong.
fn strip_rules_path(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("rules[")
        && let Some(close) = rest.find(']')
        && rest[..close].bytes().all(|b| b.is_ascii_digit())
    {
        let rest = &rest[close + 1..];
        if let Some(r) = rest.strip_prefix(": ") {
            return r.to_owned();
        }
        if let Some(r) = rest.strip_prefix('.') {
            return r.to_owned();
        }
    }
    message.to_owned()
}

/// One diagnostic per rule whose name was already used, pointing at the later one.
pub(crate) fn duplicate_names(rules: &[Rule]) -> Vec<Diagnostic> {
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    let mut out = Vec::new();
    for r in rules {
        if let Some(first) = seen.get(r.name.as_str()) {
            out.push(Diagnostic {
                location: r.location.clone(),
                column: None,
                message: format!("duplicate rule name `{}`, first defined at {first}", r.name),
            });
        } else {
            seen.insert(&r.name, &r.location);
        }
    }
    out
}

/// Rules files of `dir`, sorted by file name.
fn rule_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let dir_err = |source| Error::Dir {
        dir: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Dot-files are editor droppings (`.#rules.yaml` lock links), not rules.
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, as ConfigMap mounts are symlinks.
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Loads and validates every rules file of `dir`.
pub(crate) fn load_dir(dir: &Path) -> Result<Vec<Rule>> {
    let mut files = Vec::new();
    for path in rule_files(dir)? {
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            file: path.clone(),
            source,
        })?;
        files.push((path, String::from_utf8(bytes).ok()));
    }
    load_texts(files)
}

/// Validates the rules of the given files, in order (`None`: the file is not valid UTF-8).
/// Shared by [`load_dir`] and the embedded rules, so both report problems alike.
pub(crate) fn load_texts(files: Vec<(PathBuf, Option<String>)>) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    let mut diags = Vec::new();
    let order: HashMap<PathBuf, usize> = files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.clone(), i))
        .collect();
    for (path, text) in files {
        let Some(text) = text else {
            diags.push(Diagnostic {
                location: Location {
                    file: path,
                    line: 1,
                },
                column: None,
                message: "file is not valid UTF-8".to_owned(),
            });
            continue;
        };
        let (file_rules, file_diags) = parse_file(&text, &path);
        rules.extend(file_rules);
        diags.extend(file_diags);
    }
    // Duplicates among the rules that did parse; a broken rule cannot be compared by name.
    diags.extend(duplicate_names(&rules));
    if diags.is_empty() {
        Ok(rules)
    } else {
        diags.sort_by_key(|d| {
            (
                order.get(&d.location.file).copied().unwrap_or(usize::MAX),
                d.location.line,
                d.column,
            )
        });
        Err(Error::Invalid(diags))
    }
}

#[cfg(test)]
mod tests;
