//! Calls to functions that exist nowhere: the static pass `aiops check` makes over each
//! playbook.
//!
//! Rhai resolves a call only when it runs, so `set_replicas(target, 3)` compiles, loads and
//! then fails in the middle of a repair with "Function not found". This walks each compiled AST
//! and names every call that is none of: a host function or a Rhai built-in (what the engine
//! has registered, standard packages included, with their numbers of arguments), a function
//! the script defines, a keyword Rhai handles itself (`print`, `Fn`, `call`, …), or a variable
//! the script declares (a function pointer is called by its variable's name). Method calls
//! (`x.len()`) are checked by name only: their object may be a map holding a function pointer
//! under that key, which only the run knows. Calls with a module path (`m::f()`) are left to
//! the run, like the `import` they would need.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use rhai::{ASTNode, Engine, Expr, Stmt};

use super::{Catalog, Playbook};

/// Names Rhai handles itself, with any number of arguments.
const KEYWORDS: [&str; 10] = [
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_var",
    "is_def_fn",
    "eval",
];

/// Names an author reaches for (kubectl's verbs, the issue that asked for `scale`) that the
/// host API spells differently: a spelling distance would not find these.
const ALIASES: [(&str, &str); 8] = [
    ("set_replicas", "scale"),
    ("scale_replicas", "scale"),
    ("scale_to", "scale"),
    ("rollout_restart", "restart"),
    ("rollout_undo", "rollback"),
    ("undo", "rollback"),
    ("set_memory_limit", "set_memory"),
    ("sleep", "wait_rollout"),
];

/// Everything the engine can call: each name with the numbers of arguments it takes.
#[derive(Clone, Debug, Default)]
pub struct KnownFunctions {
    arities: BTreeMap<String, BTreeSet<usize>>,
}

impl KnownFunctions {
    /// The functions of `engine`: its registered (host) functions and its packages'.
    pub fn of(engine: &Engine) -> KnownFunctions {
        let mut arities: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let all = engine.collect_fn_metadata(
            None,
            |f| Some((f.metadata.name.to_string(), f.metadata.num_params)),
            true,
        );
        for (name, n) in all {
            arities.entry(name).or_default().insert(n);
        }
        KnownFunctions { arities }
    }
}

/// One call to a function that does not exist, by that name or with that many arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownCall {
    /// The playbook's file.
    pub path: PathBuf,
    /// 1-based line of the call.
    pub line: usize,
    /// 1-based column of the call.
    pub column: usize,
    /// The name called.
    pub name: String,
    /// How many arguments the call passes.
    pub arguments: usize,
    /// The numbers of arguments the name takes, when only the count is wrong.
    pub takes: Vec<usize>,
    /// A known function the author probably meant.
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: unknown function {}",
            self.path.display(),
            self.line,
            self.column,
            self.name
        )?;
        if !self.takes.is_empty() {
            let takes: Vec<String> = self.takes.iter().map(usize::to_string).collect();
            let s = if self.arguments == 1 { "" } else { "s" };
            write!(
                f,
                " with {} argument{s} ({} takes {})",
                self.arguments,
                self.name,
                takes.join(" or ")
            )?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean {s}?)")?;
        }
        Ok(())
    }
}

/// The unknown calls of every playbook in `catalog`, in file order, then line and column.
pub fn unknown_calls(known: &KnownFunctions, catalog: &Catalog) -> Vec<UnknownCall> {
    catalog
        .names()
        .filter_map(|n| catalog.get(n))
        .flat_map(|pb| unknown_calls_in(known, pb))
        .collect()
}

/// What one script defines and declares: its functions (with their numbers of parameters),
/// its variables and parameters, and the keys of its map literals.
#[derive(Default)]
struct Defined {
    functions: BTreeMap<String, BTreeSet<usize>>,
    variables: BTreeSet<String>,
    map_keys: BTreeSet<String>,
}

fn defined_in(pb: &Playbook) -> Defined {
    let mut d = Defined::default();
    for f in pb.ast.iter_functions() {
        d.functions
            .entry(f.name.to_string())
            .or_default()
            .insert(f.params.len());
        d.variables
            .extend(f.params.iter().map(|p| (*p).to_string()));
    }
    pb.ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Var(v, ..))) => {
                d.variables.insert(v.0.name.to_string());
            }
            Some(ASTNode::Stmt(Stmt::For(f, _))) => {
                d.variables.insert(f.0.name.to_string());
                if let Some(counter) = &f.1 {
                    d.variables.insert(counter.name.to_string());
                }
            }
            Some(ASTNode::Stmt(Stmt::TryCatch(fc, _))) => {
                if let Expr::Variable(v, ..) = &fc.expr {
                    d.variables.insert(v.1.to_string());
                }
            }
            Some(ASTNode::Expr(Expr::Map(m, _))) => {
                d.map_keys
                    .extend(m.0.iter().map(|(k, _)| k.name.to_string()));
            }
            // A map of constants (closures without captures among them) is folded into one
            // value at compile time.
            Some(ASTNode::Expr(Expr::DynamicConstant(v, _))) => {
                if let Some(m) = v.read_lock::<rhai::Map>() {
                    d.map_keys.extend(m.keys().map(ToString::to_string));
                }
            }
            _ => {}
        }
        true
    });
    d
}

/// The unknown calls of one playbook.
pub fn unknown_calls_in(known: &KnownFunctions, pb: &Playbook) -> Vec<UnknownCall> {
    let defined = defined_in(pb);
    let mut out = Vec::new();
    pb.ast.walk(&mut |path: &[ASTNode]| {
        let (call, pos, method) = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos)))
            | Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) => (call, *pos, false),
            Some(ASTNode::Expr(Expr::MethodCall(call, pos))) => (call, *pos, true),
            _ => return true,
        };
        if call.is_operator_call() || call.is_qualified() {
            return true;
        }
        let name = call.name.as_str();
        if KEYWORDS.contains(&name) || defined.variables.contains(name) {
            return true;
        }
        let native = known.arities.get(name);
        let script = defined.functions.get(name);
        let n = call.args.len();
        let found = if method {
            // `x.f(a)` is `f(x, a)` for a host function, `f(a)` with `this` = x for a script's.
            native.is_some() || script.is_some() || defined.map_keys.contains(name)
        } else {
            native.is_some_and(|a| a.contains(&n)) || script.is_some_and(|a| a.contains(&n))
        };
        if found {
            return true;
        }
        let takes: Vec<usize> = native
            .into_iter()
            .chain(script)
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let suggestion = if takes.is_empty() {
            suggest(name, known, &defined)
        } else {
            None
        };
        out.push(UnknownCall {
            path: pb.path.clone(),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            name: name.to_string(),
            arguments: n,
            takes,
            suggestion,
        });
        true
    });
    out.sort_by_key(|c| (c.line, c.column));
    out
}

/// The known function `name` most likely means: an alias from [`ALIASES`], else the closest
/// spelling (Jaro-Winkler above 0.8, as clap suggests subcommands), else none.
fn suggest(name: &str, known: &KnownFunctions, defined: &Defined) -> Option<String> {
    let exists = |n: &str| known.arities.contains_key(n) || defined.functions.contains_key(n);
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == name)
        && exists(to)
    {
        return Some((*to).to_string());
    }
    // Only names a script can write: not operators, property accessors or closures.
    let callable = |n: &&String| {
        rhai::is_valid_identifier(n.as_str()) && !n.starts_with("anon$") && !n.contains('$')
    };
    known
        .arities
        .keys()
        .chain(defined.functions.keys())
        .filter(callable)
        .map(|n| (strsim::jaro_winkler(name, n), n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(script: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.rhai"), script).unwrap();
        let runner = crate::playbook::host::Runner::new();
        let catalog = Catalog::load_dir(runner.engine(), dir.path()).unwrap();
        let known = KnownFunctions::of(runner.engine());
        unknown_calls(&known, &catalog)
            .iter()
            .map(|c| {
                let s = c.to_string();
                s[s.find("p.rhai").unwrap()..].to_string()
            })
            .collect()
    }

    #[test]
    fn an_unknown_function_is_named_with_its_place_and_the_function_meant() {
        assert_eq!(
            check("let n = 3;\nif n > 2 {\n    set_replicas(target, n);\n}\nsuccess(\"ok\");"),
            ["p.rhai:3:5: unknown function set_replicas (did you mean scale?)"]
        );
        assert_eq!(
            check("retsart(target);"),
            ["p.rhai:1:1: unknown function retsart (did you mean restart?)"]
        );
        assert_eq!(
            check("frobnicate_everything(1);"),
            ["p.rhai:1:1: unknown function frobnicate_everything"]
        );
    }

    #[test]
    fn a_known_function_with_the_wrong_number_of_arguments_is_reported_too() {
        assert_eq!(
            check("restart(target, \"now\");\nwait_rollout(target, \"1m\", 2);"),
            [
                "p.rhai:1:1: unknown function restart with 2 arguments (restart takes 1)",
                "p.rhai:2:1: unknown function wait_rollout with 3 arguments (wait_rollout takes 1 or 2)",
            ]
        );
    }

    #[test]
    fn host_functions_built_ins_script_functions_and_function_pointers_are_known() {
        let script = r#"
fn double(x) { x * 2 }
fn bump() { this += 1; }
let reasons = last_terminations(target);
if !reasons.contains("OOMKilled") { log(`none in ${reasons.len()}`); }
let r = replicas(target);
let n = max(double(r.desired), 1);
let m = min(n, 10);
m.bump();
scale(target, m);
let f = Fn("double");
let g = |x| x + 1;
log(`${f.call(2)} ${call(f, 3)} ${g(4)} ${type_of(g)} ${is_def_fn("double", 1)}`);
let obj = #{ act: |x| x };
obj.act(1);
for (item, i) in [1, 2] { print(item + i); }
try { restart(target); } catch (err) { debug(err); }
let limit = scale(quantity("512Mi"), 1.2);
success(format_memory(limit));
"#;
        assert_eq!(check(script), Vec::<String>::new());
    }

    #[test]
    fn the_shipped_playbooks_call_only_functions_that_exist() {
        let runner = crate::playbook::host::Runner::new();
        let catalog = Catalog::load_embedded(runner.engine()).unwrap();
        let unknown = unknown_calls(&KnownFunctions::of(runner.engine()), &catalog);
        assert!(unknown.is_empty(), "{unknown:#?}");
    }
}
