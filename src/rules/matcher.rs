//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"re"`, `name!~"re"`.
//!
//! The syntax is the one users already write in Alertmanager routes and `amtool`, so a matcher
//! copied from a route means the same thing here: regexes are fully anchored (`^(?:re)$`) and a
//! missing label is treated as the empty string.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde::de::{self, Deserialize, Deserializer, Visitor};

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

    /// Parses one matcher such as `alertname=~"Kube.*"` or `severity!=info`.
    pub fn parse(s: &str) -> Result<Matcher, MatcherError> {
        let mut p = Parser::new(s);
        p.skip_ws();
        let m = p.matcher()?;
        p.skip_ws();
        if let Some(c) = p.peek() {
            return Err(p.error_here(format!(
                "unexpected `{c}` after matcher (use parse_matchers for a list)"
            )));
        }
        Ok(m)
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

/// Parses a list of matchers: Alertmanager's braces form `{a="b", c=~"d"}` or the same list
/// without braces. A trailing comma is accepted, as Alertmanager does.
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, MatcherError> {
    let mut p = Parser::new(s);
    p.skip_ws();
    let braces = p.eat('{');
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            None if braces => return Err(p.error_here("missing closing `}`")),
            None => break,
            Some('}') if braces => {
                p.bump();
                break;
            }
            Some(_) => {}
        }
        out.push(p.matcher()?);
        p.skip_ws();
        match p.peek() {
            Some(',') => {
                p.bump();
            }
            Some('}') if braces => {}
            None => {}
            Some(c) => {
                return Err(p.error_here(format!("expected `,` between matchers, found `{c}`")));
            }
        }
    }
    p.skip_ws();
    if let Some(c) = p.peek() {
        return Err(p.error_here(format!("unexpected `{c}` after closing `}}`")));
    }
    Ok(out)
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

/// Hand-written scanner so errors can name the exact column.
struct Parser<'a> {
    input: &'a str,
    /// Byte offset of the next character.
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn column_at(&self, byte: usize) -> usize {
        self.input[..byte].chars().count() + 1
    }

    fn error_at(&self, byte: usize, message: impl Into<String>) -> MatcherError {
        MatcherError {
            input: self.input.to_owned(),
            column: self.column_at(byte),
            message: message.into(),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> MatcherError {
        self.error_at(self.pos, message)
    }

    fn matcher(&mut self) -> Result<Matcher, MatcherError> {
        let name_start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            Some(c) => {
                return Err(self.error_here(format!(
                    "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*), found `{c}`"
                )));
            }
            None => return Err(self.error_here("expected a label name, found end of input")),
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        let name = &self.input[name_start..self.pos];
        self.skip_ws();
        let op_start = self.pos;
        let op = match (self.bump(), self.peek()) {
            (Some('='), Some('~')) => {
                self.bump();
                MatchOp::Re
            }
            (Some('='), _) => MatchOp::Eq,
            (Some('!'), Some('=')) => {
                self.bump();
                MatchOp::Ne
            }
            (Some('!'), Some('~')) => {
                self.bump();
                MatchOp::NotRe
            }
            (found, _) => {
                let found = found.map_or("end of input".to_owned(), |c| format!("`{c}`"));
                return Err(self.error_at(
                    op_start,
                    format!(
                        "expected an operator (=, !=, =~, !~) after label name `{name}`, found {found}"
                    ),
                ));
            }
        };
        self.skip_ws();
        let value_start = self.pos;
        let value = match self.peek() {
            Some('"') => self.quoted()?,
            Some('\'') => {
                return Err(self.error_here("label values are quoted with `\"`, not `'`"));
            }
            _ => self.unquoted()?,
        };
        let compiled = Compiled::new(op, &value).map_err(|m| self.error_at(value_start, m))?;
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            compiled,
        })
    }

    fn quoted(&mut self) -> Result<String, MatcherError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => {
                    return Err(
                        self.error_at(open, "unterminated quoted value (missing closing `\"`)")
                    );
                }
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) => {
                        return Err(self.error_at(
                            at,
                            format!(
                                "unknown escape `\\{c}` (use `\\\\` for a literal backslash, e.g. \"a\\\\.b\" in a regex)"
                            ),
                        ));
                    }
                    None => return Err(self.error_at(at, "unterminated escape at end of input")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn unquoted(&mut self) -> Result<String, MatcherError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' || c == '}' {
                break;
            }
            if matches!(c, '"' | '\'' | '{' | '=' | '!' | '~' | '\\') {
                return Err(self.error_here(format!(
                    "unexpected `{c}` in unquoted value; quote the value with `\"`"
                )));
            }
            self.bump();
        }
        if self.pos == start {
            return Err(
                self.error_here("expected a label value (write `\"\"` for the empty value)")
            );
        }
        Ok(self.input[start..self.pos].to_owned())
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Matcher;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a matcher string such as severity!=\"info\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Matcher, E> {
                Matcher::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// The `matchers:` field: a list of matcher strings or one braces-form string; never empty.
#[derive(Debug)]
pub(crate) struct Matchers(pub(crate) Vec<Matcher>);

impl<'de> Deserialize<'de> for Matchers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EMPTY: &str = "must not be empty: a rule without matchers would act on every alert";
        impl<'de> Visitor<'de> for V {
            type Value = Matchers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of matcher strings or one string like '{a=\"b\", c!=\"d\"}'")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Matchers, E> {
                let ms = parse_matchers(s).map_err(E::custom)?;
                if ms.is_empty() {
                    return Err(E::custom(EMPTY));
                }
                Ok(Matchers(ms))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Matchers, A::Error> {
                let mut ms = Vec::new();
                while let Some(m) = seq.next_element::<Matcher>()? {
                    ms.push(m);
                }
                if ms.is_empty() {
                    return Err(de::Error::custom(EMPTY));
                }
                Ok(Matchers(ms))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Matchers, A::Error> {
                // `matchers: {a="b"}` without quotes is a YAML flow mapping, a common slip.
                Err(de::Error::custom(
                    "matchers is a YAML mapping here; quote the braces form: matchers: '{a=\"b\"}'",
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Matchers, E> {
                Err(E::custom(EMPTY))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
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
}
