//! The repository's files as the tests see them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The repository root (the package directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the files (not subdirectories) of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Writes a definitions layout into `dir`: `rules/<name>` and `playbooks/<name>` for each
/// (name, contents), creating both directories (an empty one too), as `aiops serve`, `check`
/// and `test-playbook` read them.
pub fn write_definitions(dir: &Path, rules: &[(&str, &str)], playbooks: &[(&str, &str)]) {
    for (sub, files) in [("rules", rules), ("playbooks", playbooks)] {
        let into = dir.join(sub);
        std::fs::create_dir_all(&into).unwrap();
        for (name, contents) in files {
            std::fs::write(into.join(name), contents).unwrap();
        }
    }
}

/// The environment pointing the binary at the rules and playbooks directories given.
pub fn definitions_env(rules: &Path, playbooks: &Path) -> HashMap<&'static str, String> {
    HashMap::from([
        ("AIOPS_RULES_DIR", rules.display().to_string()),
        ("AIOPS_PLAYBOOKS_DIR", playbooks.display().to_string()),
    ])
}
