//! Confines a caller's PromQL to one app: every vector and matrix selector of the query gets
//! `namespace="<the app's namespace>"`, as prom-label-proxy does, so no expression can read a
//! series of another namespace, whatever it nests (subqueries, `or`/`on()` joins, functions).
//!
//! The query is parsed by the `promql-parser` crate, rewritten on its AST and printed back with
//! the crate's `Display`; Prometheus then parses the printed text again. Printing is where a
//! rewrite could be lost (a label value escaped wrongly, a construct printed differently), so
//! the printed text is parsed once more and must be the rewritten AST, with the matcher on every
//! selector; a query that does not survive that round trip is refused, never sent.
//!
//! What is refused rather than rewritten, because the matcher could not be enforced:
//! - a `namespace` matcher other than `namespace="<the app's namespace>"` (another value, a
//!   regex, `!=`, `!~`): narrowing it silently would answer a different question, widening it
//!   would leak;
//! - `or` inside braces (`{a="1" or b="2"}`): the crate's extension, not PromQL Prometheus runs;
//! - experimental functions (`info()` joins in series its selector does not name).

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};

/// The label that says which app (namespace) a series belongs to.
pub const NAMESPACE_LABEL: &str = "namespace";

/// Longest query accepted, in bytes: a dashboard's query is a few hundred bytes, and the parser
/// need not see megabytes.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// Why a query cannot be confined to its app.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The query is empty.
    #[error("the query is empty")]
    Empty,
    /// The query is longer than [`MAX_QUERY_BYTES`].
    #[error("the query is {0} bytes; at most {MAX_QUERY_BYTES} are accepted")]
    TooLong(usize),
    /// The query is not PromQL (the parser's message).
    #[error("the query is not valid PromQL: {0}")]
    Parse(String),
    /// A selector names another namespace, or matches namespaces by pattern or negation.
    #[error(
        "selector {selector} has the matcher {matcher}: this app's queries may only read namespace=\"{namespace}\" (leave the namespace out, it is added)"
    )]
    Namespace {
        /// The selector as written (printed back).
        selector: String,
        /// The conflicting matcher.
        matcher: String,
        /// The app's namespace.
        namespace: String,
    },
    /// `or` between matchers inside braces.
    #[error(
        "selector {0} uses `or` inside braces, which Prometheus does not run; write two selectors joined by `or`"
    )]
    OrMatchers(String),
    /// An experimental function.
    #[error("function {0}() is experimental and not allowed here")]
    Experimental(&'static str),
    /// The rewritten query did not print back to itself (a printing bug, not the caller's).
    #[error("the query cannot be rewritten faithfully for this app; simplify it")]
    RoundTrip,
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `query` with `namespace="<namespace>"` on every selector, as text for Prometheus.
pub fn confine(query: &str, namespace: &str) -> Result<String> {
    if query.trim().is_empty() {
        return Err(Error::Empty);
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(Error::TooLong(query.len()));
    }
    let mut expr = parser::parse(query).map_err(Error::Parse)?;
    rewrite(&mut expr, namespace)?;
    let printed = expr.to_string();
    // The round trip: what Prometheus will parse must be what was rewritten, selector for
    // selector. Anything else is refused rather than trusted.
    let mut reparsed = parser::parse(&printed).map_err(|_| Error::RoundTrip)?;
    sort_matchers(&mut expr)?;
    sort_matchers(&mut reparsed)?;
    if reparsed != expr || !confined(&reparsed, namespace) {
        return Err(Error::RoundTrip);
    }
    Ok(printed)
}

/// Adds the matcher to every selector below `expr`, refusing what cannot be confined.
fn rewrite(expr: &mut Expr, namespace: &str) -> Result<()> {
    visit(expr, &mut |vs| enforce(vs, namespace))
}

/// Calls `f` on every selector below `expr` (those of matrix selectors and subqueries
/// included), refusing experimental functions and nodes the parser does not make.
fn visit(expr: &mut Expr, f: &mut dyn FnMut(&mut VectorSelector) -> Result<()>) -> Result<()> {
    match expr {
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&mut ms.vs),
        Expr::Aggregate(a) => {
            visit(&mut a.expr, f)?;
            a.param.as_deref_mut().map_or(Ok(()), |p| visit(p, f))
        }
        Expr::Unary(u) => visit(&mut u.expr, f),
        Expr::Binary(b) => {
            visit(&mut b.lhs, f)?;
            visit(&mut b.rhs, f)
        }
        Expr::Paren(p) => visit(&mut p.expr, f),
        Expr::Subquery(s) => visit(&mut s.expr, f),
        Expr::Call(c) => {
            if c.func.experimental {
                return Err(Error::Experimental(c.func.name));
            }
            c.args.args.iter_mut().try_for_each(|a| visit(a, f))
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        // The parser never makes one; an unknown node cannot be checked, so it is refused.
        Expr::Extension(_) => Err(Error::RoundTrip),
    }
}

/// Orders each selector's matchers as the printer does (by their text), so a printed and
/// re-parsed query compares equal to what was printed: matchers are a conjunction, their order
/// means nothing.
fn sort_matchers(expr: &mut Expr) -> Result<()> {
    visit(expr, &mut |vs| {
        vs.matchers.matchers.sort_by_cached_key(Matcher::to_string);
        Ok(())
    })
}

/// One selector: keeps an existing `namespace="<namespace>"`, refuses any other namespace
/// matcher, else adds it.
fn enforce(vs: &mut VectorSelector, namespace: &str) -> Result<()> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(Error::OrMatchers(vs.to_string()));
    }
    let mut has = false;
    for m in &vs.matchers.matchers {
        if m.name != NAMESPACE_LABEL {
            continue;
        }
        if m.op == MatchOp::Equal && m.value == namespace {
            has = true;
        } else {
            return Err(Error::Namespace {
                selector: vs.to_string(),
                matcher: m.to_string(),
                namespace: namespace.to_string(),
            });
        }
    }
    if !has {
        vs.matchers
            .matchers
            .push(Matcher::new(MatchOp::Equal, NAMESPACE_LABEL, namespace));
    }
    Ok(())
}

/// Whether every selector below `expr` carries `namespace="<namespace>"` and no other
/// namespace matcher.
fn confined(expr: &Expr, namespace: &str) -> bool {
    let selector = |vs: &VectorSelector| {
        let ns: Vec<&Matcher> = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name == NAMESPACE_LABEL)
            .collect();
        vs.matchers.or_matchers.is_empty()
            && !ns.is_empty()
            && ns
                .iter()
                .all(|m| m.op == MatchOp::Equal && m.value == namespace)
    };
    match expr {
        Expr::VectorSelector(vs) => selector(vs),
        Expr::MatrixSelector(ms) => selector(&ms.vs),
        Expr::Aggregate(a) => {
            confined(&a.expr, namespace)
                && a.param.as_deref().is_none_or(|p| confined(p, namespace))
        }
        Expr::Unary(u) => confined(&u.expr, namespace),
        Expr::Binary(b) => confined(&b.lhs, namespace) && confined(&b.rhs, namespace),
        Expr::Paren(p) => confined(&p.expr, namespace),
        Expr::Subquery(s) => confined(&s.expr, namespace),
        Expr::Call(c) => c.args.args.iter().all(|a| confined(a, namespace)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Extension(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every selector of the confined query, printed, in order.
    fn selectors(query: &str) -> Vec<String> {
        fn walk(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::VectorSelector(vs) => out.push(vs.to_string()),
                Expr::MatrixSelector(ms) => out.push(ms.vs.to_string()),
                Expr::Aggregate(a) => {
                    walk(&a.expr, out);
                    if let Some(p) = &a.param {
                        walk(p, out);
                    }
                }
                Expr::Unary(u) => walk(&u.expr, out),
                Expr::Binary(b) => {
                    walk(&b.lhs, out);
                    walk(&b.rhs, out);
                }
                Expr::Paren(p) => walk(&p.expr, out),
                Expr::Subquery(s) => walk(&s.expr, out),
                Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&parser::parse(query).unwrap(), &mut out);
        out
    }

    #[test]
    fn every_selector_of_every_shape_gets_the_namespace_matcher() {
        for q in [
            "up",
            r#"{__name__=~".+"}"#,
            r#"rate(http_requests_total{code="500"}[5m])"#,
            "sum by (namespace) (rate(x[5m])) / on() group_left sum(y)",
            "vector(1) or on() up",
            "max_over_time(rate(x[1m])[10m:30s])",
            r#"label_replace(up, "namespace", "other", "", "")"#,
            "topk(scalar(count(up)), up offset 5m)",
            "absent(nothing_here)",
            "-up @ 1700000000",
            r#"histogram_quantile(0.95, sum by (le) (rate(h_bucket{namespace="shop"}[5m])))"#,
        ] {
            let out = confine(q, "shop").unwrap_or_else(|e| panic!("{q}: {e}"));
            let sels = selectors(&out);
            assert!(!sels.is_empty(), "{q} has selectors");
            for s in &sels {
                assert_eq!(
                    s.matches(r#"namespace="shop""#).count(),
                    1,
                    "{q} → {out}: selector {s}"
                );
            }
        }
    }

    #[test]
    fn a_query_without_selectors_passes_unchanged_in_meaning() {
        assert_eq!(confine("vector(1) + 2", "shop").unwrap(), "vector(1) + 2");
        assert_eq!(confine("time()", "shop").unwrap(), "time()");
    }

    #[test]
    fn another_namespace_a_pattern_or_a_negation_is_refused_never_widened() {
        for (q, matcher) in [
            (r#"up{namespace="blog"}"#, r#"namespace="blog""#),
            (r#"up{namespace=~"shop|blog"}"#, r#"namespace=~"shop|blog""#),
            (r#"up{namespace=~".+"}"#, r#"namespace=~".+""#),
            (r#"up{namespace!="blog"}"#, r#"namespace!="blog""#),
            (r#"up{namespace!~"x"}"#, r#"namespace!~"x""#),
            (r#"up{"namespace"="blog"}"#, r#"namespace="blog""#),
            (
                r#"sum(rate(x{namespace="shop"}[5m])) / sum(rate(x{namespace="blog"}[5m]))"#,
                r#"namespace="blog""#,
            ),
            (
                r#"max_over_time(up{namespace="blog"}[10m:1m])"#,
                r#"namespace="blog""#,
            ),
        ] {
            match confine(q, "shop") {
                Err(Error::Namespace { matcher: m, .. }) => assert_eq!(m, matcher, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        // Even a matcher that names the app twice with a second, other value is refused.
        assert!(confine(r#"up{namespace="shop",namespace="blog"}"#, "shop").is_err());
    }

    #[test]
    fn the_message_of_a_refusal_says_what_may_be_read() {
        let e = confine(r#"up{namespace="blog"}"#, "shop")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"namespace="blog""#) && e.contains(r#"namespace="shop""#),
            "{e}"
        );
    }

    #[test]
    fn or_inside_braces_experimental_functions_and_bad_input_are_refused() {
        assert!(matches!(
            confine(r#"{a="1" or b="2"}"#, "shop"),
            Err(Error::OrMatchers(_))
        ));
        assert_eq!(
            confine(r#"info(up, {k8s_cluster_name=~".+"})"#, "shop"),
            Err(Error::Experimental("info"))
        );
        assert_eq!(confine("  ", "shop"), Err(Error::Empty));
        assert!(matches!(confine("sum(", "shop"), Err(Error::Parse(_))));
        let long = format!("up{{a=\"{}\"}}", "x".repeat(MAX_QUERY_BYTES));
        assert!(matches!(confine(&long, "shop"), Err(Error::TooLong(_))));
    }

    #[test]
    fn a_query_the_printer_would_change_is_refused_not_sent() {
        // An @ time before 1970 prints as `@ 0.000`: sent, it would ask another question.
        assert_eq!(confine("up @ -60", "shop"), Err(Error::RoundTrip));
        assert!(confine("up @ 60", "shop").is_ok());
    }

    #[test]
    fn label_values_that_need_escaping_survive_the_round_trip() {
        // A value that tries to close the string and open a matcher of its own stays a value.
        let q = r#"up{job="a\",namespace=\"blog"}"#;
        let out = confine(q, "shop").unwrap();
        let sels = selectors(&out);
        assert_eq!(sels.len(), 1);
        let e = parser::parse(&out).unwrap();
        let Expr::VectorSelector(vs) = e else {
            panic!("{out}")
        };
        let ns: Vec<_> = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name == NAMESPACE_LABEL)
            .map(|m| m.value.clone())
            .collect();
        assert_eq!(ns, ["shop"], "{out}");
        let job = vs
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == "job")
            .unwrap();
        assert_eq!(job.value, r#"a",namespace="blog"#);
    }
}
