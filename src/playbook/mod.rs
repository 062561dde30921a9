//! Playbooks: Rhai scripts in `playbooks/*.rhai`, compiled once by a sandboxed engine.
//!
//! The engine is built once (≈180 µs) and every playbook is precompiled to an AST at load and
//! reload, so a syntax error is reported with file, line and column by `aiops check` and by a
//! reload — never discovered at 3 a.m. in the middle of a repair; [`calls`] finds, for
//! `aiops check`, the calls to functions that exist nowhere, which Rhai would only discover
//! when it runs them. The sandbox removes what a
//! repair script must not do: load modules from disk, `eval` strings, run unbounded loops, or
//! build unbounded strings, arrays and maps. What Rhai's per-value checks miss — the memory a
//! run holds in all, its CPU time — is bounded by [`limits`]; the text it records by
//! [`host::RunContext`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod calls;
pub mod host;
pub mod limits;
pub mod offline;
pub mod sandbox;

use rhai::{AST, Engine};

/// Playbook loading problems.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory could not be listed.
    #[error("cannot read playbooks directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more playbooks are invalid; each line is `file:line:column: message`.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Limits of the sandbox. Generous for a repair script, fatal for a runaway one.
pub const MAX_OPERATIONS: u64 = 5_000_000;
/// Deepest call nesting.
pub const MAX_CALL_LEVELS: usize = 32;
/// Longest string, in bytes.
pub const MAX_STRING_SIZE: usize = 1 << 20;
/// Largest array.
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// Largest object map.
pub const MAX_MAP_SIZE: usize = 10_000;

/// Builds the sandboxed engine shared by every playbook.
pub fn sandboxed_engine() -> Engine {
    let mut engine = Engine::new();
    // Engine::new() resolves `import` from the file system: playbooks get no imports at all.
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(MAX_STRING_SIZE);
    engine.set_max_array_size(MAX_ARRAY_SIZE);
    engine.set_max_map_size(MAX_MAP_SIZE);
    engine
}

/// One compiled playbook.
#[derive(Debug)]
pub struct Playbook {
    /// Name: the file stem (`restart` for `restart.rhai`).
    pub name: String,
    /// Source file.
    pub path: PathBuf,
    /// Precompiled script.
    pub ast: AST,
    /// The text it was compiled from: what runs, shown by the console (the file on disk may
    /// have changed since the last reload).
    pub source: Arc<str>,
}

/// The loaded playbooks, by name.
#[derive(Clone, Default)]
pub struct Catalog {
    playbooks: BTreeMap<String, Arc<Playbook>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.playbooks.keys()).finish()
    }
}

impl Catalog {
    /// Compiles every `*.rhai` in `dir`, reporting all errors, not just the first.
    pub fn load_dir(engine: &Engine, dir: &Path) -> Result<Catalog> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rhai") && p.is_file())
            .collect();
        paths.sort();
        let files = paths.into_iter().map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
            (path, text)
        });
        Catalog::compile_all(engine, files)
    }

    /// Compiles the playbooks compiled into the binary ([`crate::embedded::PLAYBOOKS`]); their
    /// sources read `embedded:playbooks/NAME.rhai`.
    pub fn load_embedded(engine: &Engine) -> Result<Catalog> {
        let files = crate::embedded::PLAYBOOKS.iter().map(|(name, text)| {
            (
                crate::embedded::display_path("playbooks", name),
                Ok((*text).to_string()),
            )
        });
        Catalog::compile_all(engine, files)
    }

    /// Compiles the playbooks of `source`: a directory or the embedded copies.
    pub fn load(engine: &Engine, source: &crate::embedded::Source) -> Result<Catalog> {
        match source {
            crate::embedded::Source::Dir(dir) => Catalog::load_dir(engine, dir),
            crate::embedded::Source::Embedded => Catalog::load_embedded(engine),
        }
    }

    /// Compiles (path, text or read error) pairs; the name is the file stem.
    fn compile_all(
        engine: &Engine,
        files: impl Iterator<Item = (PathBuf, Result<String, String>)>,
    ) -> Result<Catalog> {
        let mut playbooks = BTreeMap::new();
        let mut problems = Vec::new();
        for (path, text) in files {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if !valid_name(&name) {
                problems.push(format!(
                    "{}: playbook file names must be [a-z0-9_-]+.rhai",
                    path.display()
                ));
                continue;
            }
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("{}: cannot read: {e}", path.display()));
                    continue;
                }
            };
            match engine.compile(&text) {
                Ok(mut ast) => {
                    ast.set_source(path.display().to_string());
                    let source = Arc::from(text);
                    playbooks.insert(
                        name.clone(),
                        Arc::new(Playbook {
                            name,
                            path,
                            ast,
                            source,
                        }),
                    );
                }
                Err(e) => {
                    let pos = e.position();
                    problems.push(format!(
                        "{}:{}:{}: {}",
                        path.display(),
                        pos.line().unwrap_or(0),
                        pos.position().unwrap_or(0),
                        e.err_type()
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(Catalog { playbooks })
        } else {
            Err(Error::Invalid(problems))
        }
    }

    /// A playbook by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Playbook>> {
        self.playbooks.get(name)
    }

    /// Whether a playbook exists.
    pub fn contains(&self, name: &str) -> bool {
        self.playbooks.contains_key(name)
    }

    /// Number of playbooks.
    pub fn len(&self) -> usize {
        self.playbooks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.playbooks.is_empty()
    }

    /// Names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.playbooks.keys().map(String::as_str)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.rhai"), "let x = 1;\nx + 1").unwrap();
        std::fs::write(dir.path().join("bad.rhai"), "let x = 1;\nlet = ;\n").unwrap();
        let err = Catalog::load_dir(&sandboxed_engine(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.rhai:2:"), "{err}");
        assert!(!err.contains("good.rhai"), "{err}");
    }

    #[test]
    fn playbooks_are_named_by_their_file_stem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("restart.rhai"), "1").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a playbook").unwrap();
        let c = Catalog::load_dir(&sandboxed_engine(), dir.path()).unwrap();
        assert_eq!(c.names().collect::<Vec<_>>(), ["restart"]);
    }

    #[test]
    fn the_sandbox_refuses_eval_imports_and_endless_loops() {
        let engine = sandboxed_engine();
        assert!(
            engine.compile(r#"eval("1")"#).is_err(),
            "eval is disabled at compile time"
        );
        let import = engine.compile(r#"import "os" as os; 1"#).unwrap();
        assert!(
            engine.eval_ast::<rhai::Dynamic>(&import).is_err(),
            "no module resolves"
        );
        let spin = engine.compile("loop { }").unwrap();
        let err = engine.eval_ast::<rhai::Dynamic>(&spin).unwrap_err();
        assert!(err.to_string().contains("operations"), "{err}");
    }

    #[test]
    fn the_embedded_playbooks_compile_under_their_names() {
        let c = Catalog::load_embedded(&sandboxed_engine()).unwrap();
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            [
                "cleanup",
                "oom_handler",
                "restart",
                "rollback",
                "scale_memory"
            ]
        );
        let restart = c.get("restart").unwrap();
        assert_eq!(restart.path, Path::new("embedded:playbooks/restart.rhai"));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let err = Catalog::load_dir(&sandboxed_engine(), Path::new("/nonexistent/pb")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pb"));
    }
}
