//! Fetching a git source shallowly with gitoxide (`gix`), in Rust: no `git` binary is needed
//! for `git://`, `http(s)://` and `ssh://` (for `file://` gitoxide runs `git-upload-pack`, as
//! git does).
//!
//! A fetch is bare and of depth 1: one commit's objects, which is all detection reads (the
//! commit's root tree, straight from the object database, so no working tree is written). It
//! runs on a thread of its own under a deadline; past the deadline the fetch is told to stop
//! (gitoxide checks between steps) and the caller gets [`Error::GitTimeout`] at once, even if
//! the thread is still blocked on a silent server; that thread ends when its connection does.
//! A thread of its own rather than tokio's blocking pool, because a thread stuck on a silent
//! server would hold a runtime's shutdown until the connection dropped.
//!
//! The fetched repository is opened isolated from this machine's git configuration (no user or
//! system config, so no credential helpers or URL rewrites from the daemon's environment), and
//! credentials written in a URL never appear in an error: see [`redact`].

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gix::bstr::ByteSlice;

use super::rules::{self, Kind, MAX_MANIFEST_BYTES, Tree};
use super::{DetectOptions, Detection, Error};

/// What a fetch brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The commit fetched (hex object id): the remote's HEAD or the reference asked for.
    pub commit: String,
    /// Whether the repository is shallow (it is, unless the remote's history is one commit
    /// deep anyway).
    pub shallow: bool,
}

/// Fetches `url` at `reference` (a branch or tag; `None` is the remote's HEAD) with depth 1
/// into `dest`, a bare repository (`dest` must be empty or absent).
///
/// After `timeout` this returns [`Error::GitTimeout`]; the fetch thread is told to stop and may
/// write to `dest` until it notices, so give each fetch a fresh directory.
pub async fn fetch(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    timeout: Duration,
) -> Result<Fetched, Error> {
    let (u, r, d) = (
        url.to_string(),
        reference.map(str::to_string),
        dest.to_path_buf(),
    );
    on_thread(url, timeout, move |stop| {
        let repo = fetch_blocking(&u, r.as_deref(), &d, stop)?;
        fetched(&u, r.as_deref(), &repo)
    })
    .await
}

/// Fetches into a temporary directory of its own (removed by the fetch thread when done, so a
/// timed-out fetch never writes into a removed directory) and detects from the commit's tree.
pub(super) async fn detect(
    url: &str,
    reference: Option<&str>,
    opts: &DetectOptions,
) -> Result<Detection, Error> {
    let dir = super::temp_dir(opts)?;
    let (u, r) = (url.to_string(), reference.map(str::to_string));
    on_thread(url, opts.clone_timeout, move |stop| {
        let repo = fetch_blocking(&u, r.as_deref(), dir.path(), stop)?;
        let fail = failure(&u, r.as_deref());
        let tree = repo
            .head_commit()
            .and_then(|c| c.tree())
            .map_err(|e| fail(&e))?;
        let detection = rules::classify(&rules::snapshot(GitTree { tree, fail: &fail })?);
        drop(repo);
        drop(dir);
        detection
    })
    .await
}

/// Runs `work` on a thread of its own; after `timeout`, sets its stop flag and gives up on it.
async fn on_thread<T: Send + 'static>(
    url: &str,
    timeout: Duration,
    work: impl FnOnce(&AtomicBool) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("aiops-git-fetch".into())
        .spawn(move || {
            // The receiver is gone after a timeout; the answer is then nobody's.
            let _ = tx.send(work(&flag));
        })
        .map_err(|e| Error::Internal(format!("cannot start a fetch thread: {e}")))?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::Internal(format!(
            "the fetch of {} failed without an answer (its thread panicked)",
            redact(url)
        ))),
        Err(_) => {
            stop.store(true, Ordering::Relaxed);
            Err(Error::GitTimeout {
                url: redact(url),
                after: timeout,
            })
        }
    }
}

/// The fetch itself, blocking.
fn fetch_blocking(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    stop: &AtomicBool,
) -> Result<gix::Repository, Error> {
    let bad_url = |message: String| Error::GitUrl {
        url: redact(url),
        message: scrub(url, &message),
    };
    let parsed = gix::url::parse(url.as_bytes().as_bstr()).map_err(|e| bad_url(chain(&e)))?;
    match parsed.scheme {
        gix::url::Scheme::File
        | gix::url::Scheme::Git
        | gix::url::Scheme::Http
        | gix::url::Scheme::Https
        | gix::url::Scheme::Ssh => {}
        ref other => {
            return Err(bad_url(format!(
                "the {other} scheme is not supported (use https://, http://, git://, ssh:// or file://)"
            )));
        }
    }
    let fail = failure(url, reference);
    let mut prepare = gix::clone::PrepareFetch::new(
        parsed,
        dest,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )
    .map_err(|e| fail(&e))?
    .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(NonZeroU32::MIN));
    if let Some(r) = reference {
        prepare = prepare
            .with_ref_name(Some(r))
            .map_err(|e| bad_url(format!("reference {r:?}: {}", chain(&e))))?;
    }
    let (repo, _) = prepare
        .fetch_only(gix::progress::Discard, stop)
        .map_err(|e| fail(&e))?;
    Ok(repo)
}

/// The commit and shallowness of a fetched repository.
fn fetched(url: &str, reference: Option<&str>, repo: &gix::Repository) -> Result<Fetched, Error> {
    let fail = failure(url, reference);
    let commit = repo.head_id().map_err(|e| fail(&e))?.to_string();
    let shallow = repo.is_shallow().map_err(|e| fail(&e))?;
    Ok(Fetched { commit, shallow })
}

/// Turns a gitoxide error into an [`Error::Git`] for `url` at `reference`, credentials removed.
fn failure<'a>(
    url: &'a str,
    reference: Option<&'a str>,
) -> impl Fn(&dyn std::error::Error) -> Error + 'a {
    move |e| Error::Git {
        url: redact(url),
        reference: reference.map(str::to_string),
        message: scrub(url, &chain(e)),
    }
}

/// An error and its causes, `outer: inner: …`, each said once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `url` with the credentials of its authority (`user:token@`) replaced by `***`, for messages.
/// `ssh`'s `git@host:path` keeps its user name, which is not a secret; an scp-like
/// `user:token@host:path` loses both (a `:` after the user can only be a password).
pub fn redact(url: &str) -> String {
    match userinfo(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_string(),
    }
}

/// The byte range of a URL's `user:password` before `@` in its authority, if any. In an
/// scp-like URL (no scheme) only a user part with a password counts: `git@` is the usual
/// public user name, and redacting it would hide nothing.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let Some(scheme_end) = url.find("://") else {
        let user = scp_user(url)?;
        return user.contains(':').then_some((0, user.len()));
    };
    let start = scheme_end + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')?;
    Some((start, start + at))
}

/// The user part (before `@`) of an scp-like URL (`user@host:path`, no scheme), if it has one.
///
/// The host ends at the last `:` before the first `/`, and the user at the last `@` before
/// that, so a path holding `@` or `:` (`git@host:a@b/c`) and a password holding `@`
/// (`deploy:t@k@host:path`) both split where they should.
pub(crate) fn scp_user(url: &str) -> Option<&str> {
    if url.contains("://") {
        return None;
    }
    let head = url.find('/').map_or(url, |i| &url[..i]);
    let host_end = head.rfind(':')?;
    let at = head[..host_end].rfind('@')?;
    Some(&url[..at])
}

/// `message` with every form of `url`'s credentials removed: gitoxide's errors may quote the
/// URL as given or decoded.
fn scrub(url: &str, message: &str) -> String {
    let Some((start, end)) = userinfo(url) else {
        return message.to_string();
    };
    let info = &url[start..end];
    let mut secrets = vec![info.to_string()];
    for part in info.split(':') {
        secrets.push(part.to_string());
        let decoded = percent_encoding::percent_decode_str(part)
            .decode_utf8_lossy()
            .into_owned();
        secrets.push(decoded);
    }
    // Longest first, so a whole `user:token` goes before its parts.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// A tree of a fetched commit.
struct GitTree<'r, F> {
    tree: gix::Tree<'r>,
    fail: &'r F,
}

impl<'r, F: Fn(&dyn std::error::Error) -> Error> Tree for GitTree<'r, F> {
    fn entries(&self) -> Result<Vec<(String, Kind)>, Error> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            let entry = entry.map_err(|e| (self.fail)(&e))?;
            let mode = entry.mode();
            let kind = if mode.is_blob() {
                Kind::File
            } else if mode.is_tree() {
                Kind::Dir
            } else {
                Kind::Other
            };
            out.push((entry.filename().to_str_lossy().into_owned(), kind));
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, Error> {
        let id = self.id_of(name)?;
        let repo = self.tree.repo;
        // The size first, so a huge blob is refused without being inflated.
        let size = repo.find_header(id).map_err(|e| (self.fail)(&e))?.size();
        if size > MAX_MANIFEST_BYTES {
            return Err(rules::too_big(name));
        }
        let mut blob = repo.find_blob(id).map_err(|e| (self.fail)(&e))?;
        Ok(blob.take_data())
    }

    fn child(&self, name: &str) -> Result<Self, Error> {
        let id = self.id_of(name)?;
        let tree = self
            .tree
            .repo
            .find_object(id)
            .and_then(|o| o.try_into_tree())
            .map_err(|e| (self.fail)(&e))?;
        Ok(GitTree {
            tree,
            fail: self.fail,
        })
    }
}

impl<F> GitTree<'_, F> {
    /// The object id of entry `name` (listed by `entries`, so it is there).
    fn id_of(&self, name: &str) -> Result<gix::ObjectId, Error> {
        self.tree
            .find_entry(name)
            .map(|e| e.object_id())
            .ok_or_else(|| Error::Internal(format!("{name} vanished from the fetched tree")))
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, scp_user, scrub};

    #[test]
    fn credentials_in_a_url_are_replaced_in_the_url_and_in_messages() {
        let url = "https://deploy:s3cr%21t@git.example.com/acme/shop.git";
        assert_eq!(redact(url), "https://***@git.example.com/acme/shop.git");
        let msg = scrub(
            url,
            "could not connect to https://deploy:s3cr!t@git.example.com (token s3cr%21t)",
        );
        assert!(!msg.contains("s3cr"), "{msg}");
        assert!(msg.contains("git.example.com"), "{msg}");
    }

    #[test]
    fn urls_without_credentials_are_left_as_they_are() {
        for url in [
            "https://git.example.com/acme/shop.git",
            "git@github.com:acme/shop.git",
            "file:///srv/git/shop.git",
            "https://git.example.com/a@b",
            "git@git.example.com:acme/a@b.git",
        ] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn a_password_in_an_scp_like_url_is_replaced_in_the_url_and_in_messages() {
        let url = "deploy:s3cr3t-token@github.com:acme/shop.git";
        assert_eq!(redact(url), "***@github.com:acme/shop.git");
        let msg = scrub(
            url,
            "cannot reach deploy:s3cr3t-token@github.com (s3cr3t-token)",
        );
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert!(msg.contains("github.com"), "{msg}");
        // A password holding '@' is cut at the last '@' before the host.
        assert_eq!(
            redact("deploy:s3@cr3t@github.com:acme/shop.git"),
            "***@github.com:acme/shop.git"
        );
    }

    #[test]
    fn the_user_of_an_scp_like_url_is_found_past_at_signs_and_colons_in_the_path() {
        assert_eq!(scp_user("git@github.com:acme/shop.git"), Some("git"));
        assert_eq!(scp_user("git@host:a@b/c:d"), Some("git"));
        assert_eq!(scp_user("d:t@k@host:p"), Some("d:t@k"));
        assert_eq!(scp_user("github.com:acme/shop.git"), None);
        assert_eq!(scp_user("https://u:p@host/x"), None);
    }
}
