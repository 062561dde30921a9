//! Reading matchers: the text syntax (one matcher, or a list in Alertmanager's braces form),
//! scanned by hand so every error names its column, and the serde impls rules files use.
//!
//! Kept apart from the matching itself (`matcher.rs`): what a matcher means does not depend on
//! how it is written, and the scanner is read best on its own.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{Compiled, MatchOp, Matcher, MatcherError};

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

impl Matcher {
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
