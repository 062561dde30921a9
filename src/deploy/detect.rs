//! Framework detection: which [`Framework`] an app's source is, from the files that prove it,
//! so onboarding from a repository or an upload does not ask the team for what the source says.
//!
//! A source is a local directory, an uploaded archive (`.tar.gz`, `.tar` or `.zip`, extracted
//! safely into a temporary directory by [`archive::extract`]) or a git URL (fetched shallowly,
//! depth 1, with gitoxide by [`git::fetch`]). Only the top level is read (or the one directory
//! an archive wraps everything in, as GitHub's tarballs do), plus the local files a
//! `requirements.txt` includes with `-r` (one level, inside the source); what proves each
//! framework:
//!
//! | framework | proof |
//! |-----------|-------|
//! | flask     | `requirements.txt` (or a file it includes) or `pyproject.toml` naming `flask` |
//! | django    | `manage.py`, or `requirements.txt` / `pyproject.toml` naming `django` |
//! | nextjs    | `package.json` with `next` in `dependencies` or `devDependencies`, or a `start` script running `next start` |
//! | nodejs    | `package.json` without `next`, with a `start` script or a `main` |
//! | go        | `go.mod` |
//! | static    | `index.html`, when nothing above is proven |
//!
//! Manifests are read as their tools read them: a UTF-8 byte order mark at the start (which
//! Windows editors write) is dropped.
//!
//! Two proven frameworks (a Go service with a Next.js front end at one root, say) are an
//! [`Error::Ambiguous`] naming both proofs, and a source proving none is an
//! [`Error::Unknown`] naming what was found: never a guess, because a wrong framework deploys
//! an image on the wrong port with the wrong start command.
//!
//! Files: this one holds the API and the error; `rules` reads a top level and decides;
//! `archive` extracts uploads; `git` fetches repositories. Unit tests are in `tests.rs`.

pub mod archive;
pub mod git;
mod rules;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use super::spec::Framework;

/// Where an app's source is.
///
/// `Debug` is written by hand: a derived one would print a git URL's credentials in full into
/// any log or error that debug-prints a source.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory on this machine (a checkout, an extracted upload).
    Path(PathBuf),
    /// An uploaded `.tar.gz`, `.tar` or `.zip` (recognised by its bytes, not its name).
    Archive(PathBuf),
    /// A git repository: `https://`, `http://`, `git://`, `ssh://` or `file://`.
    Git {
        /// The repository's URL; credentials in it never appear in an error.
        url: String,
        /// A branch or tag (`main`, `v1.2`, `refs/heads/main`); `None` is the remote's HEAD.
        reference: Option<String>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Source::Archive(path) => f.debug_tuple("Archive").field(path).finish(),
            Source::Git { url, reference } => f
                .debug_struct("Git")
                .field("url", &git::redact(url))
                .field("reference", reference)
                .finish(),
        }
    }
}

/// Limits and places of a detection. The defaults suit an upload form and a public repository.
#[derive(Clone, Debug)]
pub struct DetectOptions {
    /// Most bytes an archive may extract to, all files together.
    pub max_archive_bytes: u64,
    /// Most entries (files, directories, links) an archive may hold.
    pub max_archive_entries: usize,
    /// How long a git fetch may take, connection and the wait for a fetch slot included.
    pub clone_timeout: Duration,
    /// Most bytes of pack a git fetch may receive: depth 1 bounds the history, not the size of
    /// one commit's files.
    pub max_fetch_bytes: u64,
    /// Where the temporary directories of extractions and fetches go (removed afterwards);
    /// `None` is the system's temporary directory.
    pub work_dir: Option<PathBuf>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            max_archive_bytes: 512 * 1024 * 1024,
            max_archive_entries: 50_000,
            clone_timeout: Duration::from_secs(120),
            max_fetch_bytes: 256 * 1024 * 1024,
            work_dir: None,
        }
    }
}

/// A detected framework and what proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The framework.
    pub framework: Framework,
    /// The files that prove it, in words (`manage.py`, `requirements.txt names django`).
    pub evidence: Vec<String>,
}

/// One framework a source proves, with its proof: the parts of an [`Error::Ambiguous`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The framework.
    pub framework: Framework,
    /// What proves it.
    pub evidence: Vec<String>,
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.framework, self.evidence.join(", "))
    }
}

/// Why a source's framework could not be told.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source proves more than one framework.
    #[error(
        "the source fits more than one framework: {}; keep one app per source (or per directory) or name the framework in the app spec",
        candidates.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Ambiguous {
        /// Each framework proven, with its proof.
        candidates: Vec<Candidate>,
    },
    /// The source proves no framework.
    #[error(
        "no framework found at the top level of the source (found: {}); expected requirements.txt or pyproject.toml naming flask or django, manage.py, package.json with next, a start script or a main, go.mod, or index.html; name the framework in the app spec",
        if found.is_empty() { "nothing".to_string() } else { found.join(", ") }
    )]
    Unknown {
        /// What the top level holds (directories end in `/`), and notes on files that prove
        /// nothing (`package.json without next, a start script or a main`).
        found: Vec<String>,
    },
    /// A file that decides the framework cannot be read as what it should be.
    #[error("{file}: {message}")]
    Manifest {
        /// The file, as in the source (`package.json`).
        file: String,
        /// What is wrong with it.
        message: String,
    },
    /// A local path cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The upload is neither a tar (gzip-compressed or not) nor a zip.
    #[error("{}: not a .tar.gz, .tar or .zip archive (it starts with bytes {magic}); upload a .tar.gz, .tar or .zip of the app's source", path.display())]
    UnsupportedArchive {
        /// The upload.
        path: PathBuf,
        /// Its first bytes, in hex.
        magic: String,
    },
    /// The archive is corrupt or cannot be read.
    #[error("{}: cannot read the archive: {message}", path.display())]
    Archive {
        /// The upload.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// An entry would land outside the extraction directory (zip-slip) or has no usable name.
    #[error("{}: entry {entry:?} refused: {reason}; archives must hold relative paths inside the app's source", path.display())]
    UnsafeEntry {
        /// The upload.
        path: PathBuf,
        /// The entry's name as stored.
        entry: String,
        /// Why (an absolute path, a `..` component).
        reason: &'static str,
    },
    /// The archive holds more entries than allowed.
    #[error("{}: more than {limit} entries; upload the app's source without dependencies or build output", path.display())]
    TooManyEntries {
        /// The upload.
        path: PathBuf,
        /// The limit ([`DetectOptions::max_archive_entries`]).
        limit: usize,
    },
    /// The archive extracts to more bytes than allowed.
    #[error("{}: extracts to more than {limit} bytes; upload the app's source without dependencies or build output", path.display())]
    TooLarge {
        /// The upload.
        path: PathBuf,
        /// The limit in bytes ([`DetectOptions::max_archive_bytes`]).
        limit: u64,
    },
    /// The git URL cannot be used.
    #[error("git URL {url}: {message}")]
    GitUrl {
        /// The URL, credentials removed.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The fetch failed (unreachable, no such repository or reference, refused).
    #[error("cannot fetch {url}{}: {message}", reference.as_ref().map(|r| format!(" at {r}")).unwrap_or_default())]
    Git {
        /// The URL, credentials removed.
        url: String,
        /// The reference asked for.
        reference: Option<String>,
        /// What gitoxide said, credentials removed.
        message: String,
    },
    /// The fetch did not finish in time.
    #[error("fetching {url} took longer than {}; check that the host answers, or raise the clone timeout", humantime::format_duration(*after))]
    GitTimeout {
        /// The URL, credentials removed.
        url: String,
        /// The timeout ([`DetectOptions::clone_timeout`]).
        after: Duration,
    },
    /// The fetch received more than allowed and was stopped.
    #[error(
        "fetching {url} received more than {limit} bytes and was stopped; deploy a smaller repository (without build output or large files), or raise the fetch limit"
    )]
    GitTooLarge {
        /// The URL, credentials removed.
        url: String,
        /// The limit in bytes ([`DetectOptions::max_fetch_bytes`]).
        limit: u64,
    },
    /// A temporary directory could not be made or a worker thread failed.
    #[error("{0}")]
    Internal(String),
}

/// What proves `framework` in a source, in words: the table in the module documentation, for
/// people choosing a framework (`GET /api/templates`). Kept beside the rules that apply it.
pub fn proof(framework: Framework) -> &'static str {
    match framework {
        Framework::Flask => "requirements.txt or pyproject.toml naming flask",
        Framework::Django => "manage.py, or requirements.txt or pyproject.toml naming django",
        Framework::Nextjs => "package.json depending on next or starting with next start",
        Framework::Nodejs => "package.json without next, with a start script or a main",
        Framework::Go => "go.mod",
        Framework::Static => "index.html, when nothing else is proven",
    }
}

/// Whether a process serving others (the daemon, for an API caller) may fetch the git
/// repository at `url`: only anonymous network fetches (https, http, git), since `file://` is
/// the daemon's own disk and ssh (`ssh://`, `git@host:path`) would use the daemon's own keys;
/// and, when `allowed_hosts` is not empty, only from those hosts (an editor's URL makes the
/// daemon connect out). Schemes and hosts compare case-insensitively. `Err` says why not.
pub fn remote_source_allowed(url: &str, allowed_hosts: &[String]) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file:") {
        return Err("source_url: a file:// repository is on the daemon's own disk and is not read for an API caller; give a network URL or name the framework".into());
    }
    if !["https://", "http://", "git://"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err("source_url: an ssh repository would be fetched with the daemon's own keys, so its framework is not detected for an API caller; give an https:// or git:// URL or name the framework".into());
    }
    if !allowed_hosts.is_empty() {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        if !host.is_some_and(|h| allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(&h))) {
            return Err(format!(
                "source_url: its host is not one this daemon fetches from (deploy.source_hosts: {}); name the framework, or ask an admin to add the host",
                allowed_hosts.join(", ")
            ));
        }
    }
    Ok(())
}

/// Tells the framework of `source` from the files that prove it.
///
/// Archives are extracted and repositories fetched into temporary directories under
/// [`DetectOptions::work_dir`], removed before this returns. File work runs on a blocking
/// thread; a fetch runs on a thread of its own, abandoned after [`DetectOptions::clone_timeout`]
/// (see [`git::fetch`]).
pub async fn detect(source: &Source, opts: &DetectOptions) -> Result<Detection, Error> {
    match source {
        Source::Path(path) => {
            let path = path.clone();
            blocking(move || rules::detect_dir(&path)).await
        }
        Source::Archive(path) => {
            let path = path.clone();
            let opts = opts.clone();
            blocking(move || {
                let dir = temp_dir(&opts)?;
                archive::extract(&path, dir.path(), &archive::Limits::from(&opts))?;
                rules::detect_dir(dir.path())
            })
            .await
        }
        Source::Git { url, reference } => git::detect(url, reference.as_deref(), opts).await,
    }
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("detection worker failed: {e}")))?
}

/// A temporary directory under the work directory.
fn temp_dir(opts: &DetectOptions) -> Result<tempfile::TempDir, Error> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("aiops-source-");
    let made = match &opts.work_dir {
        Some(base) => builder.tempdir_in(base),
        None => builder.tempdir(),
    };
    made.map_err(|e| Error::Internal(format!("cannot make a temporary directory: {e}")))
}

#[cfg(test)]
mod tests;
