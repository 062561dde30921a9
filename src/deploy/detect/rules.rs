//! Reading a source's top level (a directory or a git tree, through [`Tree`]) and deciding its
//! framework from the files that prove it. The decision, [`classify`], is a pure function of
//! what was read, so the rules are the same for every kind of source.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Candidate, Detection, Error, Framework};

/// The largest manifest read: a requirements.txt or package.json is kilobytes; anything bigger
/// is not one, and reading it whole would let an upload take the daemon's memory.
pub(super) const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The files whose contents decide (the others count by being there).
const READ: [&str; 4] = [
    "requirements.txt",
    "pyproject.toml",
    "package.json",
    "go.mod",
];

/// What an entry of a tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    File,
    Dir,
    /// A symbolic link, a submodule, a device: listed, never read (a link could point outside
    /// the source).
    Other,
}

/// A directory of a source: a path on disk or a git tree.
pub(super) trait Tree: Sized {
    /// The entries, sorted by name.
    fn entries(&self) -> Result<Vec<(String, Kind)>, Error>;
    /// The contents of file `name` (at most [`MAX_MANIFEST_BYTES`]).
    fn read(&self, name: &str) -> Result<Vec<u8>, Error>;
    /// The subdirectory `name`.
    fn child(&self, name: &str) -> Result<Self, Error>;
}

/// What a source's top level holds, as far as detection cares.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    /// The directory everything sits in when the source wraps it in one (`shop-main/`), else "".
    prefix: String,
    /// Every entry of the top level, directories ending in `/`.
    names: Vec<String>,
    /// The contents of the files of [`READ`] that are there, byte order marks dropped.
    files: BTreeMap<&'static str, Vec<u8>>,
    /// The local files requirements.txt includes (`-r base.txt`), by their path as written
    /// there (normalised), with their contents.
    included: Vec<(String, Vec<u8>)>,
}

/// The most files a requirements.txt may include: a few (base, prod) is usual, and each may be
/// a megabyte read into memory.
const MAX_INCLUDES: usize = 16;

/// Reads the top level of `root`, stepping into the one directory an archive or repository
/// wraps everything in (GitHub's tarballs hold `repo-main/…`; a zip of a folder holds the
/// folder), once: deeper wrapping is a monorepo, which is for the team to point at.
pub(super) fn snapshot<T: Tree>(root: T) -> Result<Snapshot, Error> {
    let mut tree = root;
    let mut prefix = String::new();
    let mut entries = tree.entries()?;
    let visible: Vec<&(String, Kind)> = entries.iter().filter(|(n, _)| !incidental(n)).collect();
    if let [(name, Kind::Dir)] = visible.as_slice() {
        let name = name.clone();
        tree = tree.child(&name)?;
        prefix = format!("{name}/");
        entries = tree.entries()?;
    }
    let mut snap = Snapshot {
        prefix,
        ..Snapshot::default()
    };
    for (name, kind) in &entries {
        if *kind == Kind::File
            && let Some(file) = READ.iter().find(|f| **f == name.as_str())
        {
            snap.files.insert(file, strip_bom(tree.read(name)?));
        }
        snap.names.push(match kind {
            Kind::Dir => format!("{name}/"),
            _ => name.clone(),
        });
    }
    if let Some(text) = snap.files.get("requirements.txt") {
        let file = format!("{}requirements.txt", snap.prefix);
        let paths = requirement_includes(&String::from_utf8_lossy(text));
        if paths.len() > MAX_INCLUDES {
            return Err(Error::Manifest {
                file,
                message: format!("includes more than {MAX_INCLUDES} files with -r"),
            });
        }
        for path in paths {
            let bad = |message: String| Error::Manifest {
                file: file.clone(),
                message: format!("-r {path}: {message}"),
            };
            // Resolved against the source root, as pip resolves it against the file's
            // directory; a path leaving the source could read the daemon's own files.
            let parts = inside_root(&path).ok_or_else(|| {
                bad("names a file outside the source; include files inside it".into())
            })?;
            let Some(data) = read_at(&tree, &parts)? else {
                return Err(bad("no such regular file in the source".into()));
            };
            snap.included.push((parts.join("/"), strip_bom(data)));
        }
    }
    Ok(snap)
}

/// `data` without a UTF-8 byte order mark at its start (Windows editors write one; pip, npm
/// and TOML readers ignore it, serde_json and toml refuse it).
fn strip_bom(mut data: Vec<u8>) -> Vec<u8> {
    if data.starts_with(b"\xEF\xBB\xBF") {
        data.drain(..3);
    }
    data
}

/// The components of `path` (relative to the source root) once `.` and `..` are resolved, or
/// `None` when it is absolute or climbs out of the root.
fn inside_root(path: &str) -> Option<Vec<String>> {
    if path.starts_with(['/', '\\']) || path.as_bytes().get(1) == Some(&b':') {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p.to_string()),
        }
    }
    (!parts.is_empty()).then_some(parts)
}

/// The contents of regular file `parts` under `tree`, stepping only through directories (a
/// symbolic link is never followed: it could point outside the source); `None` when there is
/// no such file.
fn read_at<T: Tree>(tree: &T, parts: &[String]) -> Result<Option<Vec<u8>>, Error> {
    let [first, rest @ ..] = parts else {
        return Ok(None);
    };
    let want = if rest.is_empty() {
        Kind::File
    } else {
        Kind::Dir
    };
    if !tree
        .entries()?
        .iter()
        .any(|(name, kind)| name == first && *kind == want)
    {
        return Ok(None);
    }
    if rest.is_empty() {
        tree.read(first).map(Some)
    } else {
        read_at(&tree.child(first)?, rest)
    }
}

/// Entries that say nothing about the app: version-control and editor folders, dotfiles, the
/// `__MACOSX/` folder macOS puts in zips.
fn incidental(name: &str) -> bool {
    name.starts_with('.') || name == "__MACOSX"
}

/// Decides the framework of a snapshot.
pub(super) fn classify(snap: &Snapshot) -> Result<Detection, Error> {
    let p = &snap.prefix;
    let has = |name: &str| snap.names.iter().any(|n| n == name);
    let mut candidates: Vec<Candidate> = Vec::new();
    /// Adds `evidence` to `framework`'s proofs, in the order found.
    fn add(candidates: &mut Vec<Candidate>, framework: Framework, evidence: String) {
        match candidates.iter_mut().find(|c| c.framework == framework) {
            Some(c) => c.evidence.push(evidence),
            None => candidates.push(Candidate {
                framework,
                evidence: vec![evidence],
            }),
        }
    }
    let mut notes = Vec::new();

    if let Some(text) = snap.files.get("requirements.txt") {
        for name in requirement_names(&String::from_utf8_lossy(text)) {
            if let Some(fw) = python_framework(&name) {
                add(
                    &mut candidates,
                    fw,
                    format!("{p}requirements.txt names {name}"),
                );
            }
        }
    }
    for (path, text) in &snap.included {
        for name in requirement_names(&String::from_utf8_lossy(text)) {
            if let Some(fw) = python_framework(&name) {
                add(
                    &mut candidates,
                    fw,
                    format!("{p}{path} (included by {p}requirements.txt) names {name}"),
                );
            }
        }
    }
    if let Some(text) = snap.files.get("pyproject.toml") {
        for name in pyproject_names(&format!("{p}pyproject.toml"), text)? {
            if let Some(fw) = python_framework(&name) {
                add(
                    &mut candidates,
                    fw,
                    format!("{p}pyproject.toml names {name}"),
                );
            }
        }
    }
    if has("manage.py") {
        add(&mut candidates, Framework::Django, format!("{p}manage.py"));
    }
    if let Some(text) = snap.files.get("package.json") {
        let file = format!("{p}package.json");
        let pkg: PackageJson = serde_json::from_slice(text).map_err(|e| Error::Manifest {
            file: file.clone(),
            message: format!("not a valid package.json: {e}"),
        })?;
        // `next` only in devDependencies is common (the build needs it, `npm ci` installs it);
        // `next start` as the start script says the same even with `next` missing.
        let next_start = pkg.scripts.get("start").filter(|s| runs_next_start(s));
        if pkg.dependencies.contains_key("next") {
            add(
                &mut candidates,
                Framework::Nextjs,
                format!("{file} depends on next"),
            );
        } else if pkg.dev_dependencies.contains_key("next") {
            add(
                &mut candidates,
                Framework::Nextjs,
                format!("{file} depends on next (devDependencies)"),
            );
        } else if let Some(start) = next_start {
            add(
                &mut candidates,
                Framework::Nextjs,
                format!("{file} has a start script running next start ({start})"),
            );
        } else {
            let start = pkg.scripts.get("start");
            if let Some(start) = start {
                add(
                    &mut candidates,
                    Framework::Nodejs,
                    format!("{file} has a start script ({start})"),
                );
            }
            if let Some(main) = &pkg.main {
                add(
                    &mut candidates,
                    Framework::Nodejs,
                    format!("{file} names main {main}"),
                );
            }
            if start.is_none() && pkg.main.is_none() {
                notes.push(format!("{file} without next, a start script or a main"));
            }
        }
    }
    if let Some(text) = snap.files.get("go.mod") {
        let module = String::from_utf8_lossy(text).lines().find_map(|l| {
            l.trim()
                .strip_prefix("module ")
                .map(|m| m.trim().to_string())
        });
        add(
            &mut candidates,
            Framework::Go,
            match module {
                Some(m) => format!("{p}go.mod (module {m})"),
                None => format!("{p}go.mod"),
            },
        );
    }
    if candidates.is_empty() && has("index.html") {
        add(&mut candidates, Framework::Static, format!("{p}index.html"));
    }

    match candidates.len() {
        1 => {
            let c = candidates.remove(0);
            Ok(Detection {
                framework: c.framework,
                evidence: c.evidence,
            })
        }
        0 => {
            /// Enough names to recognise the source by, not a listing of a huge one.
            const SHOWN: usize = 30;
            let mut found: Vec<String> = snap
                .names
                .iter()
                .take(SHOWN)
                .map(|n| format!("{p}{n}"))
                .collect();
            if snap.names.len() > SHOWN {
                found.push(format!("and {} more", snap.names.len() - SHOWN));
            }
            found.extend(notes);
            Err(Error::Unknown { found })
        }
        _ => Err(Error::Ambiguous { candidates }),
    }
}

/// The framework a Python distribution name is, if any. Exact names only: `flask-cors` or
/// `django-environ` are libraries for an app, not the app's framework.
fn python_framework(normalized: &str) -> Option<Framework> {
    match normalized {
        "flask" => Some(Framework::Flask),
        "django" => Some(Framework::Django),
        _ => None,
    }
}

/// The distribution names a requirements file lists, normalised (PEP 503: lower case, runs of
/// `-_.` as `-`). Options (`-r other.txt`, `--index-url …`), comments and URLs without a name
/// are skipped.
fn requirement_names(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
        .filter_map(requirement_name)
        .collect()
}

/// The local files a requirements file includes: `-r other.txt`, `-rother.txt`,
/// `--requirement other.txt` and `--requirement=other.txt`, in order; URLs (`-r https://…`)
/// are not local and are left out.
fn requirement_includes(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or_default().trim())
        .filter_map(|l| {
            let rest = match l.strip_prefix("--requirement") {
                // `--requirement=x` or `--requirement x`; `--requirements…` is another option.
                Some(r) if r.starts_with(['=', ' ', '\t']) => r.strip_prefix('=').unwrap_or(r),
                Some(_) => return None,
                // `-r x` and `-rx`.
                None => l.strip_prefix("-r")?,
            };
            let path = rest.trim();
            (!path.is_empty() && !path.contains("://")).then(|| path.to_string())
        })
        .collect()
}

/// The normalised name at the start of a PEP 508 requirement (`Flask[async]>=2.3 ; …`).
fn requirement_name(req: &str) -> Option<String> {
    let name: String = req
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if name.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    for c in name.to_ascii_lowercase().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The dependency names of a pyproject.toml: PEP 621's `[project] dependencies` and Poetry's
/// `[tool.poetry.dependencies]`.
fn pyproject_names(file: &str, text: &[u8]) -> Result<Vec<String>, Error> {
    #[derive(Deserialize, Default)]
    struct PyProject {
        #[serde(default)]
        project: Project,
        #[serde(default)]
        tool: Tool,
    }
    #[derive(Deserialize, Default)]
    struct Project {
        #[serde(default)]
        dependencies: Vec<String>,
    }
    #[derive(Deserialize, Default)]
    struct Tool {
        #[serde(default)]
        poetry: Poetry,
    }
    #[derive(Deserialize, Default)]
    struct Poetry {
        #[serde(default)]
        dependencies: BTreeMap<String, IgnoredAny>,
    }
    let bad = |message: String| Error::Manifest {
        file: file.to_string(),
        message,
    };
    let text = std::str::from_utf8(text).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let doc: PyProject =
        toml::from_str(text).map_err(|e| bad(format!("not a valid pyproject.toml: {e}")))?;
    Ok(doc
        .project
        .dependencies
        .iter()
        .map(String::as_str)
        .chain(doc.tool.poetry.dependencies.keys().map(String::as_str))
        .filter_map(requirement_name)
        .collect())
}

/// Whether an npm script runs `next start` (`next start -p $PORT`, `npx next start`).
fn runs_next_start(script: &str) -> bool {
    let words: Vec<&str> = script.split_whitespace().collect();
    words.windows(2).any(|w| w == ["next", "start"])
}

/// The parts of a package.json detection reads.
#[derive(Deserialize)]
struct PackageJson {
    #[serde(default)]
    dependencies: BTreeMap<String, IgnoredAny>,
    #[serde(default, rename = "devDependencies")]
    dev_dependencies: BTreeMap<String, IgnoredAny>,
    #[serde(default)]
    scripts: BTreeMap<String, String>,
    main: Option<String>,
}

/// A directory on disk.
pub(super) struct Dir(pub PathBuf);

impl Tree for Dir {
    fn entries(&self) -> Result<Vec<(String, Kind)>, Error> {
        let io = |source| Error::Io {
            path: self.0.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.0).map_err(io)? {
            let entry = entry.map_err(io)?;
            // The entry's own type: a symbolic link is not followed.
            let t = entry.file_type().map_err(io)?;
            let kind = if t.is_file() {
                Kind::File
            } else if t.is_dir() {
                Kind::Dir
            } else {
                Kind::Other
            };
            out.push((entry.file_name().to_string_lossy().into_owned(), kind));
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, Error> {
        let path = self.0.join(name);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let mut data = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(io)?;
        if data.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(too_big(name));
        }
        Ok(data)
    }

    fn child(&self, name: &str) -> Result<Self, Error> {
        Ok(Dir(self.0.join(name)))
    }
}

/// The error for a manifest over [`MAX_MANIFEST_BYTES`].
pub(super) fn too_big(name: &str) -> Error {
    Error::Manifest {
        file: name.to_string(),
        message: format!("larger than {MAX_MANIFEST_BYTES} bytes, so not a manifest this reads"),
    }
}

/// Detects the framework of directory `path`.
pub(super) fn detect_dir(path: &Path) -> Result<Detection, Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory (an archive is a Source::Archive)",
            ),
        });
    }
    classify(&snapshot(Dir(path.to_path_buf()))?)
}
