//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"re"`, `name!~"re"`.
//!
//! The syntax is the one users already write in Alertmanager routes and `amtool`, so a matcher
//! copied from a route means the same thing here: regexes are fully anchored (`^(?:re)$`) and a
//! missing label is treated as the empty string.
//!
//! This file holds the matcher and how it matches (compiled regexes, with literal and glob fast
//! paths); `syntax.rs` how matchers are read from text and rules files; the unit tests are in
//! `tests.rs`.

mod syntax;

pub(crate) use syntax::Matchers;
pub use syntax::parse_matchers;

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

use super::Labels;

/// The comparison a [`Matcher`] performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the label value equals the matcher value.
    Eq,
    /// `!=`: the label value differs from the matcher value.
    Ne,
    /// `=~`: the label value matches the (anchored) regex.
    Re,
    /// `!~`: the label value does not match the (anchored) regex.
    NotRe,
}

impl MatchOp {
    /// The operator as written in matcher syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A matcher string that could not be parsed, with the 1-based column (in characters) where the
/// problem is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid matcher `{input}`: column {column}: {message}")]
pub struct MatcherError {
    /// The whole text that was being parsed.
    pub input: String,
    /// 1-based character column of the problem within `input`.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One label matcher, e.g. `severity!="info"`.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value as written (unescaped); for regex operators the regex source, unanchored.
    pub value: String,
    /// How `=~` / `!~` are evaluated.
    compiled: Compiled,
}

/// The evaluation plan of a regex matcher.
#[derive(Clone, Debug, Default)]
struct Compiled {
    /// Anchored regex for `=~` / `!~`. Glob-shaped patterns compile it only when a value with
    /// a newline needs it: compiling a thousand rules' regexes dominated load time.
    regex: OnceLock<Regex>,
    /// The anchored pattern (empty for `=` / `!=`).
    pattern: Box<str>,
    /// A literal every matching value must start with. Checking it first lets most
    /// non-matching values skip the regex engine, which dominates rule evaluation.
    prefix: Box<str>,
    /// When the regex is only literals, `.*` and top-level `|` (`critical|warning`,
    /// `Kube.*OOM.*`), the same answer without the regex engine.
    globs: Option<Box<[Glob]>>,
}

impl Compiled {
    fn new(op: MatchOp, value: &str) -> Result<Compiled, String> {
        match op {
            MatchOp::Eq | MatchOp::Ne => Ok(Compiled::default()),
            MatchOp::Re | MatchOp::NotRe => {
                let globs = globs(value);
                let regex = OnceLock::new();
                // Glob-shaped patterns are always valid regexes (literals, `.*`, `|`).
                if globs.is_none() {
                    let _ = regex.set(compile_anchored(value)?);
                }
                Ok(Compiled {
                    regex,
                    pattern: anchored(value).into(),
                    prefix: literal_prefix(value).into(),
                    globs,
                })
            }
        }
    }

    fn regex(&self) -> Option<&Regex> {
        if self.pattern.is_empty() {
            return None;
        }
        Some(self.regex.get_or_init(|| {
            Regex::new(&self.pattern).expect("glob-shaped patterns are valid regexes")
        }))
    }

    #[inline]
    fn is_match(&self, v: &str) -> bool {
        if !starts_with(v.as_bytes(), self.prefix.as_bytes()) {
            return false;
        }
        match &self.globs {
            // `.` does not match a newline, which glob matching ignores: leave those to the regex.
            Some(globs) if !v.contains('\n') => globs.iter().any(|g| g.is_match(v)),
            _ => self.regex().is_some_and(|re| re.is_match(v)),
        }
    }
}

/// Literal pieces separated by `.*`: `a.*b.*c` is `["a", "b", "c"]`; `""` pieces mean the
/// pattern starts or ends with `.*`.
#[derive(Clone, Debug)]
struct Glob(Box<[Box<str>]>);

impl Glob {
    fn is_match(&self, v: &str) -> bool {
        // Bytes are fine: pieces are whole UTF-8 strings, so they only match at char boundaries.
        let v = v.as_bytes();
        match &*self.0 {
            [] => false,
            [only] => bytes_eq(v, only.as_bytes()),
            [first, middle @ .., last] => {
                let (first, last) = (first.as_bytes(), last.as_bytes());
                if v.len() < first.len() + last.len()
                    || !starts_with(v, first)
                    || !starts_with(&v[v.len() - last.len()..], last)
                {
                    return false;
                }
                // Leftmost matching of each middle piece is optimal for `.*`-only patterns.
                let mut rest = &v[first.len()..v.len() - last.len()];
                for piece in middle {
                    match find(rest, piece.as_bytes()) {
                        Some(at) => rest = &rest[at + piece.len()..],
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

/// Naive substring search: label values are short, and `str::find` spends more setting up its
/// two-way searcher than this takes to scan.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, _)) = needle.split_first() else {
        return Some(0);
    };
    (0..(haystack.len() + 1).saturating_sub(needle.len()))
        .find(|&i| haystack[i] == first && starts_with(&haystack[i..], needle))
}

/// `h.starts_with(n)` without a call to libc `memcmp`: for the few bytes of a label value the
/// call overhead is most of the cost (measured 4x on the glob path).
#[inline]
fn starts_with(h: &[u8], n: &[u8]) -> bool {
    h.len() >= n.len() && h.iter().zip(n).all(|(a, b)| a == b)
}

/// `a == b`, inlined for the same reason as [`starts_with`].
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && starts_with(a, b)
}

/// Characters that are literal in a regex outside a class whatever the flags before them.
fn is_plain(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | '@' | '=' | ',' | '%' | '!' | ';')
}

/// The glob form of a regex, when it has one (see [`Compiled::globs`]).
fn globs(re: &str) -> Option<Box<[Glob]>> {
    re.split('|')
        .map(|branch| {
            let pieces: Vec<Box<str>> = branch.split(".*").map(Box::from).collect();
            pieces
                .iter()
                .all(|p| p.chars().all(is_plain))
                .then(|| Glob(pieces.into()))
        })
        .collect()
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        // The compiled regex is derived from `value`, so comparing the source is enough.
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher from parts, compiling the regex for `=~` / `!~`.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        if !is_label_name(&name) {
            return Err(MatcherError {
                input: name.clone(),
                column: 1,
                message: format!("invalid label name `{name}`: expected [a-zA-Z_][a-zA-Z0-9_]*"),
            });
        }
        let compiled = Compiled::new(op, &value).map_err(|message| MatcherError {
            input: value.clone(),
            column: 1,
            message,
        })?;
        Ok(Matcher {
            name,
            op,
            value,
            compiled,
        })
    }

    /// Whether the alert's labels satisfy this matcher; an absent label counts as `""`.
    #[inline]
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        self.matches_value(v)
    }

    /// Whether a label value (`""` when absent) satisfies this matcher.
    #[inline]
    pub fn matches_value(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => bytes_eq(v.as_bytes(), self.value.as_bytes()),
            MatchOp::Ne => !bytes_eq(v.as_bytes(), self.value.as_bytes()),
            MatchOp::Re => self.compiled.is_match(v),
            MatchOp::NotRe => !self.compiled.is_match(v),
        }
    }

    /// For `=~`: a literal every matching value starts with (possibly empty). Lets the rule
    /// index skip rules whose regex cannot match without running it.
    pub(crate) fn required_prefix(&self) -> Option<&str> {
        (self.op == MatchOp::Re).then_some(&*self.compiled.prefix)
    }
}

impl fmt::Display for Matcher {
    /// Canonical form: `name op "value"` with `\`, `"` and newlines escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op)?;
        for c in self.value.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Whether `s` is a valid Prometheus label name.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn anchored(re: &str) -> String {
    format!("^(?:{re})$")
}

fn compile_anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&anchored(re)).map_err(|_| {
        // Compile the user's pattern alone so the message refers to their text, not our wrapper.
        match Regex::new(re) {
            Err(e) => format!("invalid regular expression: {}", describe_regex_error(&e)),
            Ok(_) => format!("invalid regular expression `{re}`"),
        }
    })
}

/// The regex crate's syntax errors are multi-line drawings (pattern, caret, message); fold them
/// into one line for a `file:line:col: message` diagnostic.
fn describe_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let message = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_owned);
    // Pattern line then caret line, both indented the same, follow the "regex parse error:" header.
    let position = match lines.as_slice() {
        [_, pattern, caret, ..] if caret.trim_start().starts_with('^') => {
            let indent = pattern.len() - pattern.trim_start().len();
            caret.find('^').map(|c| c.saturating_sub(indent) + 1)
        }
        _ => None,
    };
    match (message, position) {
        (Some(m), Some(p)) => format!("{m} at character {p} of the regex"),
        (Some(m), None) => m,
        (None, _) => lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A literal every string matched by the anchored regex must start with ("" when unsure).
/// Deliberately conservative: any alternation gives up, and only characters that are never
/// special outside a class are taken.
fn literal_prefix(re: &str) -> String {
    if re.contains('|') {
        return String::new();
    }
    let mut prefix = String::new();
    let mut chars = re.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | '@' | '=' | ',') {
            prefix.push(c);
            chars.next();
        } else {
            // A quantifier applies to the previous character, which is then optional/repeated.
            if matches!(c, '*' | '?' | '{' | '+') {
                prefix.pop();
            }
            break;
        }
    }
    prefix
}

#[cfg(test)]
mod tests;
