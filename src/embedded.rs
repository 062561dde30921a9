//! The shipped rules and playbooks, compiled into the binary.
//!
//! `aiops serve` must work from any directory, and an image must not need a checkout beside it:
//! when no rules (or playbooks) directory is configured and none exists in the working
//! directory, these copies are used. A directory that *is* configured but missing stays an
//! error (a typo must never fall back silently to the shipped set). `aiops init DIR` writes
//! them out for a team to edit.
//!
//! The list is written by hand with `include_str!` (six files do not justify a build script or
//! a dependency); a unit test fails when `rules/` or `playbooks/` gains a file this list misses.

use std::fmt;
use std::path::{Path, PathBuf};

/// The shipped `rules/*.yaml`: (file name, text).
pub const RULES: &[(&str, &str)] = &[(
    "auto-repair.yaml",
    include_str!("../rules/auto-repair.yaml"),
)];

/// The shipped `playbooks/*.rhai`: (file name, text).
pub const PLAYBOOKS: &[(&str, &str)] = &[
    ("cleanup.rhai", include_str!("../playbooks/cleanup.rhai")),
    (
        "oom_handler.rhai",
        include_str!("../playbooks/oom_handler.rhai"),
    ),
    ("restart.rhai", include_str!("../playbooks/restart.rhai")),
    ("rollback.rhai", include_str!("../playbooks/rollback.rhai")),
    (
        "scale_memory.rhai",
        include_str!("../playbooks/scale_memory.rhai"),
    ),
];

/// Where a set of definitions (rules or playbooks) comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The copies compiled into the binary.
    Embedded,
    /// A directory of files.
    Dir(PathBuf),
}

impl Source {
    /// The source for a setting: the configured directory (which must then exist: loading it
    /// reports it missing), else `default_dir` when it exists in the working directory (the
    /// checkout layout), else the embedded copies.
    pub fn resolve(configured: Option<&Path>, default_dir: &str) -> Source {
        match configured {
            Some(dir) => Source::Dir(dir.to_path_buf()),
            None if Path::new(default_dir).is_dir() => Source::Dir(PathBuf::from(default_dir)),
            None => Source::Embedded,
        }
    }

    /// The directory, when the source is one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Source::Dir(d) => Some(d),
            Source::Embedded => None,
        }
    }
}

/// `embedded` or the directory, as `aiops check` prints it.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Embedded => f.write_str("embedded"),
            Source::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

/// The path an embedded file is reported under in `file:line` messages and playbook sources:
/// `embedded:rules/auto-repair.yaml`, never a path that could be mistaken for one on disk.
pub fn display_path(kind: &str, file: &str) -> PathBuf {
    PathBuf::from(format!("embedded:{kind}/{file}"))
}

/// Problems writing the definitions out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file exists and `--force` was not given.
    #[error("{} already exists (use --force to overwrite)", .0.display())]
    Exists(PathBuf),
    /// A write failed.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The commented settings file of `aiops init`: `rules_dir`/`playbooks_dir` set, every other
/// key commented out with its default (a unit test holds those defaults to the code's).
const SETTINGS_TEMPLATE: &str = include_str!("init.yaml");

/// The settings file `aiops init DIR` writes for `dir` (which should be absolute, so the file
/// works from any working directory).
pub fn settings_file(dir: &Path) -> String {
    // JSON strings are YAML double-quoted scalars: any path stays one scalar.
    let quoted =
        |sub: &str| serde_json::Value::String(dir.join(sub).display().to_string()).to_string();
    SETTINGS_TEMPLATE
        .replace("@DIR@/rules", &quoted("rules"))
        .replace("@DIR@/playbooks", &quoted("playbooks"))
        .replace(
            "@DIR@/aiops.yaml",
            &dir.join("aiops.yaml").display().to_string(),
        )
}

/// The files `aiops init DIR` writes, as (path, text): `DIR/aiops.yaml` with `settings`, then
/// `DIR/rules/*` and `DIR/playbooks/*`.
pub fn init_files(dir: &Path, settings: &str) -> Vec<(PathBuf, String)> {
    let mut files = vec![(dir.join("aiops.yaml"), settings.to_string())];
    for (name, text) in RULES {
        files.push((dir.join("rules").join(name), (*text).to_string()));
    }
    for (name, text) in PLAYBOOKS {
        files.push((dir.join("playbooks").join(name), (*text).to_string()));
    }
    files
}

/// Writes `files`; refuses (before writing anything) when one exists, unless `force`.
pub fn write_files(files: &[(PathBuf, String)], force: bool) -> Result<(), Error> {
    if !force && let Some((path, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(Error::Exists(path.clone()));
    }
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(path, text).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_on_disk(dir: &str, ext: &str) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(ext) && !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_embedded_lists_hold_every_shipped_file() {
        let rules: Vec<&str> = RULES.iter().map(|(n, _)| *n).collect();
        let playbooks: Vec<&str> = PLAYBOOKS.iter().map(|(n, _)| *n).collect();
        assert_eq!(rules, names_on_disk("rules", ".yaml"));
        assert_eq!(playbooks, names_on_disk("playbooks", ".rhai"));
    }

    #[test]
    fn a_configured_directory_is_used_even_when_it_does_not_exist() {
        let s = Source::resolve(Some(Path::new("/no/such/rules")), "rules");
        assert_eq!(s, Source::Dir(PathBuf::from("/no/such/rules")));
    }

    #[test]
    fn without_a_setting_or_a_directory_the_embedded_copies_are_used() {
        assert_eq!(
            Source::resolve(None, "no-such-dir-in-the-working-directory"),
            Source::Embedded
        );
        assert_eq!(Source::Embedded.to_string(), "embedded");
    }

    #[test]
    fn the_settings_file_names_the_directories_and_comments_every_default() {
        let text = settings_file(Path::new("/srv/my team/aiops"));
        let s = crate::config::Settings::from_yaml(&text, Path::new("aiops.yaml")).unwrap();
        assert_eq!(
            s.rules_dir.as_deref(),
            Some(Path::new("/srv/my team/aiops/rules"))
        );
        assert_eq!(
            s.playbooks_dir.as_deref(),
            Some(Path::new("/srv/my team/aiops/playbooks"))
        );
        // Uncommenting every commented key gives exactly the defaults: the file cannot
        // document a key that does not exist or a default the code does not have.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.starts_with('#') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let mut all = crate::config::Settings::from_yaml(&uncommented, Path::new("u.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        all.rules_dir = None;
        all.playbooks_dir = None;
        assert_eq!(
            format!("{all:?}"),
            format!("{:?}", crate::config::Settings::default())
        );
    }

    #[test]
    fn init_refuses_to_overwrite_without_force_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
        std::fs::write(dir.path().join("playbooks/restart.rhai"), "mine").unwrap();
        let files = init_files(dir.path(), "listen: 127.0.0.1:9095\n");
        let err = write_files(&files, false).unwrap_err();
        assert!(
            err.to_string().contains("restart.rhai already exists"),
            "{err}"
        );
        assert!(!dir.path().join("aiops.yaml").exists(), "nothing written");
        write_files(&files, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("playbooks/restart.rhai")).unwrap(),
            PLAYBOOKS
                .iter()
                .find(|(n, _)| *n == "restart.rhai")
                .unwrap()
                .1
        );
    }
}
