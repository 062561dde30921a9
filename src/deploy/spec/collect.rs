//! Reading a spec's text into an [`AppSpec`], collecting every problem, each bad field once,
//! with its line and column.
//!
//! serde (through serde_norway, so a spec means what it always meant) stops at the first
//! problem. So each problem's entry is blanked out of the text ([`Source::remove`]) and serde
//! runs again, until the text parses; then the checks run on the result. A required field whose
//! value was unusable, or that is missing, is given a placeholder for the later rounds, so the
//! other fields are still checked; the checks that involve it are skipped. Positions come from
//! the [`Source`] tree, by field path, so they are those of the text as written.
//!
//! The rules loader cuts its file into one chunk per rule and parses each on its own; that finds
//! one problem per rule, which suits a list of rules. A spec is one object whose every field must
//! be reported, hence this finer loop; both print `file:line:column: message`.

use serde::de::IgnoredAny;
use serde_yaml::Error as YamlError;

use super::source::{Part, Position, Source};
use super::{AppSpec, Problem};

/// The fields a spec cannot do without, each with the placeholder that stands in for it once
/// its problem is reported. A unit test holds this list to what serde requires.
pub(super) const REQUIRED: [(&str, &str); 2] = [
    ("name", "placeholder"),
    ("domain", "placeholder.example.com"),
];

/// Optional fields that the checks require for some sources (`image` and `framework` for a
/// docker source, `source_url` for a built one). Once such a field's unusable value is
/// reported and taken out, the checks must not report it again as missing.
const CONDITIONAL: [&str; 4] = ["framework", "image", "source_type", "source_url"];

/// Past this many problems the rest is not looked for: a text this wrong is probably not an
/// app spec, and each round parses it again.
const MAX_PROBLEMS: usize = 50;

/// Parses and checks `text`; on failure, every problem in the order of the text.
pub(super) fn parse(text: &str) -> Result<AppSpec, Vec<Problem>> {
    // Syntax first (IgnoredAny: a duplicate key is not a syntax error, it is found below).
    match serde_yaml::from_str::<Option<IgnoredAny>>(text) {
        Err(e) => return Err(vec![problem(String::new(), bare(&e, "."), location(&e))]),
        Ok(None) => {
            return Err(vec![problem(
                String::new(),
                "the spec is empty; it needs at least name, domain and either image and framework (docker) or source_type and source_url (git, upload)".into(),
                None,
            )]);
        }
        Ok(Some(_)) => {}
    }
    let Some(mut source) = Source::read(text) else {
        // The event parser and serde_norway disagree (serde_norway accepted the syntax):
        // report what serde_norway finds, without positions of our own.
        return once(text);
    };
    let mut problems = Vec::new();
    let mut substituted: Vec<&'static str> = Vec::new();
    if source.is_mapping() {
        for (field, _) in REQUIRED {
            if !source.root_has(field) {
                problems.push(problem(
                    field.into(),
                    "is missing; every spec has a name and a domain".into(),
                    Some(source.start()),
                ));
                substituted.push(field);
            }
        }
    }
    loop {
        if problems.len() >= MAX_PROBLEMS {
            problems.push(problem(
                String::new(),
                format!("{MAX_PROBLEMS} problems or more; fix these and run again"),
                None,
            ));
            return Err(sorted(problems));
        }
        let placeholders: Vec<(&str, &str)> = REQUIRED
            .into_iter()
            .filter(|(f, _)| substituted.contains(f))
            .collect();
        let Some(current) = source.text_with(&placeholders) else {
            return Err(sorted(problems));
        };
        let de = serde_yaml::Deserializer::from_str(&current);
        let err = match serde_path_to_error::deserialize::<_, AppSpec>(de) {
            Ok(spec) => {
                for (mut p, part) in spec.checks(&substituted) {
                    // Located in serde's numbering (it read the blanked text), then named in
                    // the text's own.
                    p.position = Some(locate(&source, &p.field, part));
                    if let Some(e) = source.entry(&p.field) {
                        p.field = source.path_of(e);
                    }
                    problems.push(p);
                }
                return if problems.is_empty() {
                    Ok(spec)
                } else {
                    Err(sorted(problems))
                };
            }
            Err(e) => e,
        };
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = bare(&inner, &path);
        let path = if path == "." { String::new() } else { path };
        // Only a field whose value was unusable needs a placeholder once taken out: an unknown
        // key was never a field, and a duplicate leaves its first occurrence. Names are those
        // of the text as written: serde's list positions skip blanked items.
        let (entry, part, unusable, field, message) =
            if let Some(name) = quoted(&message, "unknown field") {
                let entry = source.entry_with_key(parent_of(&path, name), name, false);
                let field = entry.map_or_else(|| path.clone(), |e| source.path_of(e));
                (
                    entry,
                    Part::Key,
                    false,
                    field,
                    unknown_field(&message, name),
                )
            } else if let Some(name) = quoted(&message, "duplicate field") {
                let entry = source.entry_with_key(parent_of(&path, name), name, true);
                let field = entry.map_or_else(|| path.clone(), |e| source.path_of(e));
                (entry, Part::Key, false, field, "is given twice".into())
            } else if let Some(name) = quoted(&message, "missing field") {
                let entry = source.entry(&path);
                let parent = entry.map_or(path, |e| source.path_of(e));
                (
                    entry,
                    Part::Value,
                    false,
                    join(&parent, name),
                    "is missing".into(),
                )
            } else {
                let entry = source.entry(&path);
                let field = entry.map_or(path, |e| source.path_of(e));
                (entry, Part::Value, true, field, reword(&message))
            };
        let position = entry
            .map(|e| source.position(e, part))
            .or_else(|| location(&inner));
        let required = REQUIRED
            .iter()
            .map(|(f, _)| *f)
            .chain(CONDITIONAL)
            .find(|f| unusable && *f == field);
        problems.push(problem(field, message, position));
        match entry {
            Some(e) if source.remove(e) => substituted.extend(required),
            // Nothing more can be taken out: what was found is the report.
            _ => return Err(sorted(problems)),
        }
    }
}

/// One serde pass, for text the event parser could not read: its first problem, or the
/// checks' problems, without positions.
fn once(text: &str) -> Result<AppSpec, Vec<Problem>> {
    let de = serde_yaml::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, AppSpec>(de) {
        Ok(spec) => {
            let problems = spec.problems();
            if problems.is_empty() {
                Ok(spec)
            } else {
                Err(problems)
            }
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." { String::new() } else { path };
            let message = reword(&bare(&inner, &field));
            Err(vec![problem(field, message, location(&inner))])
        }
    }
}

fn problem(field: String, message: String, position: Option<Position>) -> Problem {
    Problem {
        field,
        message,
        position,
    }
}

fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    // Stable: problems at one place keep the order they were found in; unplaced ones go last.
    problems.sort_by_key(|p| p.position.map_or((usize::MAX, 0), |p| (p.line, p.column)));
    problems
}

/// The position of a field path for a check's problem; a path the text does not hold (a
/// default) falls back to its nearest written parent, else the start of the spec.
fn locate(source: &Source, field: &str, part: Part) -> Position {
    let mut path = field;
    let mut part = part;
    loop {
        if let Some(e) = source.entry(path) {
            return source.position(e, part);
        }
        match path.rfind(['.', '[']) {
            Some(cut) if cut > 0 => {
                path = &path[..cut];
                part = Part::Key;
            }
            _ => return source.start(),
        }
    }
}

fn location(e: &YamlError) -> Option<Position> {
    e.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    })
}

/// serde_norway's message without what the report prints apart: the field path it puts in
/// front (the report's own, from serde_path_to_error) and the position it puts at the end.
fn bare(e: &YamlError, path: &str) -> String {
    let mut message = e.to_string();
    if let Some(l) = e.location() {
        // Not only at the end: a syntax error goes on with its context (", while parsing a
        // flow sequence at line 2 column 9"), a position worth keeping.
        let at = format!(" at line {} column {}", l.line(), l.column());
        if let Some(i) = message.find(&at) {
            message.replace_range(i..i + at.len(), "");
        }
    }
    // serde_path_to_error names a key's own path for an error about the key (`ingress.clas`),
    // serde_norway the mapping's (`ingress`): either may stand in front.
    let mut candidates = vec![path];
    if let Some(cut) = path.rfind(['.', '[']) {
        candidates.push(&path[..cut]);
    }
    for p in candidates {
        if p.is_empty() || p == "." {
            continue;
        }
        if let Some(rest) = message.strip_prefix(&format!("{p}: ")) {
            return rest.to_string();
        }
    }
    message
}

/// The mapping's path from the path of one of its keys (`ingress.clas` → `ingress`).
fn parent_of<'p>(path: &'p str, key: &str) -> &'p str {
    match path.strip_suffix(key) {
        Some("") => "",
        Some(parent) => parent.strip_suffix('.').unwrap_or(path),
        None => path,
    }
}

/// `name` from serde's "`{what}` `name`…" messages (its wording for unknown, duplicate and
/// missing fields).
fn quoted<'m>(message: &'m str, what: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(what)?.strip_prefix(" `")?;
    rest.split('`').next()
}

/// The names serde lists after "expected one of" (or "expected") in backticks.
fn expected(message: &str) -> Vec<&str> {
    let Some((_, list)) = message.split_once("expected ") else {
        return Vec::new();
    };
    list.split('`').skip(1).step_by(2).collect()
}

/// `unknown field; did you mean `replicas`?` when one known field is close, else the list.
fn unknown_field(message: &str, name: &str) -> String {
    let known = expected(message);
    let closest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, k)) => format!("unknown field; did you mean `{k}`?"),
        None if known.is_empty() => "unknown field".into(),
        None => format!("unknown field (expected one of {})", known.join(", ")),
    }
}

/// serde's "unknown variant `flaks`, expected one of `flask`, …" as
/// `unknown value "flaks" (expected one of flask, …)`; other messages as they are.
fn reword(message: &str) -> String {
    if let Some(value) = quoted(message, "unknown variant") {
        let known = expected(message);
        let value = serde_json::to_string(value).expect("a string serializes");
        return match known.len() {
            0 => format!("unknown value {value}"),
            1 => format!("unknown value {value} (expected {})", known[0]),
            _ => format!(
                "unknown value {value} (expected one of {})",
                known.join(", ")
            ),
        };
    }
    message.to_string()
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}
