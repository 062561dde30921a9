//! Server-side highlighting of a playbook's Rhai source, with Rhai's own tokenizer.
//!
//! Using the engine's tokenizer (feature `internals`) rather than a regex means the page
//! classifies exactly what the engine parses: a keyword inside a string stays a string, a
//! `//` inside a string is no comment. Each token's text is cut from the source between its
//! start and the next token's start (minus the whitespace before that one), so the output is
//! the source itself, escaped, with `<span class>`s around keywords, strings, comments and
//! numbers. Should positions ever disagree with the text, the source is shown plain.

use rhai::{Engine, Position, Token};

/// What a token is shown as (the CSS class of its span).
fn class_of(token: &Token) -> Option<&'static str> {
    match token {
        Token::Comment(_) => Some("rhai-comment"),
        Token::StringConstant(_) | Token::InterpolatedString(_) | Token::CharConstant(_) => {
            Some("rhai-string")
        }
        Token::IntegerConstant(_) | Token::FloatConstant(_) => Some("rhai-number"),
        t if t.is_standard_keyword() || t.is_reserved() => Some("rhai-keyword"),
        _ => None,
    }
}

/// The byte offset of a tokenizer position (1-based line, 1-based column in characters).
fn offset(line_starts: &[usize], text: &str, pos: Position) -> Option<usize> {
    let line = pos.line()?;
    let col = pos.position().unwrap_or(1);
    let start = *line_starts.get(line.checked_sub(1)?)?;
    let rest = &text[start..];
    match rest.char_indices().nth(col.checked_sub(1)?) {
        Some((i, _)) => Some(start + i),
        None => Some(text.len()),
    }
}

/// Escapes text for HTML element content and attributes. Written here because minijinja keeps
/// its escaper private, and the notifiers' escapers follow their chat APIs' rules, not HTML's.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The tokens of `source` as (start byte offset, class), or None when a position cannot be
/// placed in the text.
fn tokens(source: &str) -> Option<Vec<(usize, Option<&'static str>)>> {
    let mut line_starts = vec![0];
    line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
    let engine = Engine::new_raw();
    let inputs = [source];
    let (mut iter, _control) = engine.lex(&inputs);
    iter.state.include_comments = true;
    let mut out: Vec<(usize, Option<&'static str>)> = Vec::new();
    for (token, pos) in iter {
        if matches!(token, Token::EOF) {
            break;
        }
        let at = offset(&line_starts, source, pos)?;
        if out.last().is_some_and(|(prev, _)| *prev > at) {
            return None;
        }
        out.push((at, class_of(&token)));
    }
    Some(out)
}

/// `source` as HTML: escaped, tokens wrapped in `<span class="rhai-…">`.
pub fn highlight(source: &str) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    let Some(tokens) = tokens(source) else {
        escape(&mut out, source);
        return out;
    };
    let first = tokens.first().map_or(source.len(), |(at, _)| *at);
    escape(&mut out, &source[..first]);
    for (i, (start, class)) in tokens.iter().enumerate() {
        let end = tokens.get(i + 1).map_or(source.len(), |(at, _)| *at);
        let segment = &source[*start..end];
        // The token, then the whitespace up to the next one (comments are tokens too).
        let text = segment.trim_end();
        match class {
            Some(class) if !text.is_empty() => {
                out.push_str("<span class=\"");
                out.push_str(class);
                out.push_str("\">");
                escape(&mut out, text);
                out.push_str("</span>");
            }
            _ => escape(&mut out, text),
        }
        escape(&mut out, &segment[text.len()..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of the page without its tags, entities decoded: must be the source.
    fn text_of(html: &str) -> String {
        let mut s = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => in_tag = false,
                c if !in_tag => s.push(c),
                _ => {}
            }
        }
        s.replace("&lt;", "<")
            .replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    #[test]
    fn keywords_strings_comments_and_numbers_get_their_classes() {
        let src = "// restart it\nlet n = 3;\nif n > 2 { log(\"if <b> && // not a comment\"); }\n";
        let html = highlight(src);
        assert!(
            html.contains("<span class=\"rhai-comment\">// restart it</span>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"rhai-keyword\">let</span>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"rhai-keyword\">if</span>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"rhai-number\">3</span>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"rhai-string\">&quot;if &lt;b&gt; &amp;&amp; // not a comment&quot;</span>"
            ),
            "{html}"
        );
        assert_eq!(text_of(&html), src);
    }

    #[test]
    fn every_embedded_playbook_is_shown_exactly_as_written() {
        for (name, text) in crate::embedded::PLAYBOOKS {
            let html = highlight(text);
            assert_eq!(text_of(&html), *text, "{name}");
            assert!(!html.contains("<script"), "{name}");
            assert!(html.contains("rhai-keyword"), "{name}: {html}");
        }
    }

    #[test]
    fn markup_in_a_playbook_is_escaped_even_where_it_does_not_parse() {
        let src = "let x = \"</pre><script>alert(1)</script>";
        let html = highlight(src);
        assert!(!html.contains("<script>"), "{html}");
        assert_eq!(text_of(&html), src);
    }

    #[test]
    fn multi_byte_text_and_block_comments_keep_their_place() {
        let src = "/* 重啟 */ let 名 = `值 ${1 + 2}`; // 完\n";
        let html = highlight(src);
        assert_eq!(text_of(&html), src);
        assert!(
            html.contains("<span class=\"rhai-comment\">/* 重啟 */</span>"),
            "{html}"
        );
    }
}
