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
//! What a fetch may take is bounded three ways. The pack received is metered (`PackMeter`,
//! gitoxide's progress counter of the bytes read from the server) and the fetch is stopped past
//! [`DetectOptions::max_fetch_bytes`] with [`Error::GitTooLarge`]: depth 1 bounds the commits,
//! not the size of one commit's blobs. Over HTTP the client's own connect and request timeouts
//! are set from the clone timeout, so an abandoned thread ends by itself; `git://` connects with
//! gitoxide's fixed 5-second timeout and offers no read timeout, so there only the deadline
//! holds. And at most [`MAX_CONCURRENT_FETCHES`] fetch threads run in the process at once.
//!
//! The fetched repository is opened isolated from this machine's git configuration (no user or
//! system config, so no credential helpers or URL rewrites from the daemon's environment), and
//! credentials written in a URL never appear in an error: see [`redact`].

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// Most fetch threads running at once in this process. Each holds a connection, a pack being
/// indexed (CPU and disk) and up to [`DetectOptions::max_fetch_bytes`] on disk; onboarding a
/// few apps at a time needs no more, and a burst of registrations must not take the machine.
/// A thread abandoned after its timeout keeps its slot until it really ends, so abandoned
/// threads cannot pile up beyond the limit either.
pub const MAX_CONCURRENT_FETCHES: usize = 2;

/// The slots of [`MAX_CONCURRENT_FETCHES`]: a process-wide `static` because the limit is the
/// machine's, not one caller's (the API, the CLI and tests all fetch through here).
static FETCH_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_FETCHES);

/// Fetches `url` at `reference` (a branch or tag; `None` is the remote's HEAD) with depth 1
/// into `dest`, a bare repository (`dest` must be empty or absent), within `opts`'
/// [`clone_timeout`](DetectOptions::clone_timeout) (waiting for a fetch slot included) and
/// [`max_fetch_bytes`](DetectOptions::max_fetch_bytes).
///
/// After the timeout this returns [`Error::GitTimeout`]; the fetch thread is told to stop and
/// may write to `dest` until it notices, so give each fetch a fresh directory.
pub async fn fetch(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    opts: &DetectOptions,
) -> Result<Fetched, Error> {
    let (u, r, d) = (
        url.to_string(),
        reference.map(str::to_string),
        dest.to_path_buf(),
    );
    let limits = FetchLimits::from(opts);
    on_thread(url, opts.clone_timeout, move |stop| {
        let repo = fetch_blocking(&u, r.as_deref(), &d, stop, limits)?;
        fetched(&u, r.as_deref(), &repo)
    })
    .await
}

/// The limits a fetch thread applies itself.
#[derive(Clone, Copy, Debug)]
struct FetchLimits {
    timeout: Duration,
    max_bytes: u64,
}

impl From<&DetectOptions> for FetchLimits {
    fn from(o: &DetectOptions) -> Self {
        FetchLimits {
            timeout: o.clone_timeout,
            max_bytes: o.max_fetch_bytes,
        }
    }
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
    let limits = FetchLimits::from(opts);
    on_thread(url, opts.clone_timeout, move |stop| {
        let repo = fetch_blocking(&u, r.as_deref(), dir.path(), stop, limits)?;
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

/// Runs `work` on a thread of its own once a fetch slot is free; after `timeout` (the wait for
/// the slot included), sets its stop flag and gives up on it.
async fn on_thread<T: Send + 'static>(
    url: &str,
    timeout: Duration,
    work: impl FnOnce(&Arc<AtomicBool>) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let run = async move {
        let slot = FETCH_SLOTS
            .acquire()
            .await
            .map_err(|e| Error::Internal(format!("no fetch slot: {e}")))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("aiops-git-fetch".into())
            .spawn(move || {
                // Held until the thread ends, even when nobody waits for it any more.
                let _slot = slot;
                // The receiver is gone after a timeout; the answer is then nobody's.
                let _ = tx.send(work(&flag));
            })
            .map_err(|e| Error::Internal(format!("cannot start a fetch thread: {e}")))?;
        rx.await.map_err(|_| {
            Error::Internal(format!(
                "the fetch of {} failed without an answer (its thread panicked)",
                redact(url)
            ))
        })?
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
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
    stop: &Arc<AtomicBool>,
    limits: FetchLimits,
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
    .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(NonZeroU32::MIN))
    .configure_connection(move |con| http_timeouts(con, limits.timeout));
    if let Some(r) = reference {
        prepare = prepare
            .with_ref_name(Some(r))
            .map_err(|e| bad_url(format!("reference {r:?}: {}", chain(&e))))?;
    }
    let meter = PackMeter::new(limits.max_bytes, stop.clone());
    let over = meter.shared.clone();
    let (repo, _) = prepare.fetch_only(meter, stop).map_err(|e| {
        // Stopped by the meter, not a failure of the server's: say which limit.
        if over.over.load(Ordering::Relaxed) {
            Error::GitTooLarge {
                url: redact(url),
                limit: limits.max_bytes,
            }
        } else {
            fail(&e)
        }
    })?;
    Ok(repo)
}

/// Sets the HTTP client's connect and whole-request timeouts from the fetch's timeout, so a
/// thread abandoned at the deadline ends soon after rather than when the server hangs up.
/// Other transports are left as they are (gitoxide has no such options for them).
fn http_timeouts(
    con: &mut gix::remote::Connection<
        '_,
        '_,
        '_,
        Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
    >,
    timeout: Duration,
) -> gix::Result {
    use gix::protocol::transport::client::blocking_io::http;
    let Some(url) = con
        .remote()
        .url(gix::remote::Direction::Fetch)
        .map(|u| u.to_bstring())
    else {
        return Ok(());
    };
    let Some(mut options) = con.remote().repo().transport_options(url.as_bstr(), None)? else {
        return Ok(());
    };
    if let Some(http) = options.downcast_mut::<http::Options>() {
        // The connection's own limit; the whole request may take the whole timeout.
        let connect = timeout.min(Duration::from_secs(10));
        http.connect_timeout = Some(connect);
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |client| {
                Ok(client.connect_timeout(connect).timeout(timeout))
            })),
            configure_request: None,
        };
        http.backend = Some(Arc::new(Mutex::new(backend)));
        con.set_transport_options(options);
    }
    Ok(())
}

/// Progress receiver that meters the pack bytes read from the server (gitoxide reports them on
/// the progress it opens with id `BWRB`, gix-pack's `bundle::write::ProgressId::ReadPackBytes`) and
/// raises the fetch's stop flag once they pass the cap: gitoxide checks that flag on every
/// read of the pack, so the fetch stops within one buffer of the cap.
struct PackMeter {
    shared: Arc<MeterShared>,
    id: gix::progress::Id,
    step: AtomicUsize,
}

/// What all the progress children of one fetch share.
struct MeterShared {
    bytes: AtomicU64,
    cap: u64,
    /// Set when the cap was passed, to tell the stop apart from a timeout's.
    over: AtomicBool,
    stop: Arc<AtomicBool>,
}

/// The id gitoxide gives the progress counting pack bytes read.
const READ_PACK_BYTES: gix::progress::Id = *b"BWRB";

impl PackMeter {
    fn new(cap: u64, stop: Arc<AtomicBool>) -> Self {
        PackMeter {
            shared: Arc::new(MeterShared {
                bytes: AtomicU64::new(0),
                cap,
                over: AtomicBool::new(false),
                stop,
            }),
            id: gix::progress::UNKNOWN,
            step: AtomicUsize::new(0),
        }
    }

    fn child(&self, id: gix::progress::Id) -> Self {
        PackMeter {
            shared: self.shared.clone(),
            id,
            step: AtomicUsize::new(0),
        }
    }

    /// Counts `n` more bytes if this is the pack-bytes progress.
    fn add(&self, n: usize) {
        if self.id != READ_PACK_BYTES {
            return;
        }
        let total = self.shared.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.shared.cap {
            self.shared.over.store(true, Ordering::Relaxed);
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl gix::progress::Count for PackMeter {
    fn set(&self, step: gix::progress::Step) {
        let before = self.step.swap(step, Ordering::Relaxed);
        self.add(step.saturating_sub(before));
    }

    fn step(&self) -> gix::progress::Step {
        self.step.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: gix::progress::Step) {
        self.step.fetch_add(step, Ordering::Relaxed);
        self.add(step);
    }

    fn counter(&self) -> gix::progress::StepShared {
        // Nothing in a fetch's pack path counts through a shared counter; one handed out is
        // a fresh one, as gitoxide's own `Discard` does.
        Arc::new(AtomicUsize::new(0))
    }
}

impl gix::progress::Progress for PackMeter {
    fn init(&mut self, _max: Option<gix::progress::Step>, _unit: Option<gix::progress::Unit>) {}

    fn set_name(&mut self, _name: String) {}

    fn name(&self) -> Option<String> {
        None
    }

    fn id(&self) -> gix::progress::Id {
        self.id
    }

    fn message(&self, _level: gix::progress::MessageLevel, _message: String) {}
}

impl gix::progress::NestedProgress for PackMeter {
    type SubProgress = PackMeter;

    fn add_child(&mut self, _name: impl Into<String>) -> Self::SubProgress {
        self.child(gix::progress::UNKNOWN)
    }

    fn add_child_with_id(
        &mut self,
        _name: impl Into<String>,
        id: gix::progress::Id,
    ) -> Self::SubProgress {
        self.child(id)
    }
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use gix::progress::{Count, NestedProgress};

    use super::{FETCH_SLOTS, MAX_CONCURRENT_FETCHES, PackMeter, READ_PACK_BYTES, on_thread};
    use super::{redact, scp_user, scrub};
    use crate::deploy::detect::Error;

    #[test]
    fn pack_bytes_past_the_cap_raise_the_stop_flag_and_other_progress_does_not_count() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut meter = PackMeter::new(1_000, stop.clone());
        let objects = meter.add_child_with_id("objects", *b"XXXX");
        objects.inc_by(5_000);
        let pack = meter.add_child_with_id("read pack", READ_PACK_BYTES);
        pack.inc_by(600);
        pack.set(1_000);
        assert!(!stop.load(Ordering::Relaxed), "at the cap is fine");
        pack.inc_by(1);
        assert!(stop.load(Ordering::Relaxed));
        assert!(meter.shared.over.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn no_fetch_starts_while_every_fetch_slot_is_taken() {
        // Every slot taken: the work must not start, and the wait counts against the timeout.
        let held = FETCH_SLOTS
            .acquire_many(MAX_CONCURRENT_FETCHES as u32)
            .await
            .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let e = on_thread(
            "file:///srv/shop.git",
            Duration::from_millis(50),
            move |_| {
                r.store(true, Ordering::Relaxed);
                Ok(())
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::GitTimeout { .. }), "{e:?}");
        assert!(!ran.load(Ordering::Relaxed));
        drop(held);
        // A slot free: the same work runs.
        on_thread("file:///srv/shop.git", Duration::from_secs(60), |_| Ok(()))
            .await
            .unwrap();
    }

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
