//! The HTTP server: an accept loop over hyper's HTTP/1 connection builder, with a connection cap
//! and per-connection timeouts.
//!
//! `axum::serve` has no timer and no limits: a client that never finishes its headers, never
//! sends the body it declared, or keeps an idle connection open holds a file descriptor forever,
//! and enough of them starve Alertmanager. Here every connection is in one of four phases, and a
//! watchdog closes it when a phase lasts too long:
//!
//! - waiting for a request's headers (from accept, or from the first byte of a kept-alive
//!   connection's next request): `http.header_read_timeout`, kind `header`;
//! - running a handler: no watchdog deadline; the request body must arrive within
//!   `http.body_read_timeout` of the headers ([`BodyTimeout`], answered 408), and handlers bound
//!   their own waits (store acquire timeout, playbook deadlines);
//! - writing the response: `http.idle_timeout`, kind `write` (a client that never reads);
//! - idle between requests: `http.idle_timeout`, kind `idle`.
//!
//! hyper's own header-read timer (which also runs while idle) is kept as a backstop at the larger
//! of the two. At most `http.max_connections` connections are served; one more is answered 503
//! and closed at once, so the process never runs out of file descriptors. Every trip counts in
//! `aiops_http_timeouts_total{kind}` or `aiops_http_connections_rejected_total{reason}` and is
//! logged (at most one line per kind every 10 s under a flood, with the number left out).
//!
//! The unit tests are in `server/tests.rs`; the accept loop and its guards are one concern, read
//! whole.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::HttpSettings;
use crate::metrics::Metrics;

/// How long shutdown waits for in-flight requests before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// At most one log line per kind of event in this interval; the rest are counted in the next.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the server enforces (from `http.*` in the settings).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Headers must be complete within this.
    pub header_read_timeout: Duration,
    /// The body must be complete within this after the headers.
    pub body_read_timeout: Duration,
    /// Idle keep-alive connections, and responses nobody reads, are closed after this.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// The limits the settings name.
    pub fn new(s: &HttpSettings) -> Limits {
        Limits {
            header_read_timeout: s.header_read_timeout.0,
            body_read_timeout: s.body_read_timeout.0,
            idle_timeout: s.idle_timeout.0,
            max_connections: s.max_connections,
        }
    }
}

/// The request body did not arrive within `http.body_read_timeout` of the headers.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (http.body_read_timeout)")]
pub struct BodyTimeout(Duration);

/// Whether `e`, or an error it wraps, is a [`BodyTimeout`]: handlers answer those 408.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<BodyTimeout>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (at most 30 s) while idle connections close at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    warn_if_descriptors_are_short(limits.max_connections);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shared = Arc::new(Shared {
        limits,
        metrics,
        logs: Throttles::default(),
    });
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                shared
                    .metrics
                    .http_connections_rejected
                    .with_label_values(&["accept_error"])
                    .inc();
                if let Some(more) = shared.logs.accept_error.ready() {
                    tracing::error!(error = %e, suppressed = more, "cannot accept connections (out of file descriptors? see http.max_connections and ulimit -n)");
                }
                if !is_per_connection(&e) {
                    // Out of descriptors or memory: the next accept fails the same way at once.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared
                .metrics
                .http_connections_rejected
                .with_label_values(&["limit"])
                .inc();
            if let Some(more) = shared.logs.limit.ready() {
                tracing::warn!(%peer, max_connections = shared.limits.max_connections, suppressed = more, "connection refused: http.max_connections connections are open");
            }
            // Best effort, never waiting: a client that reads sees why; Alertmanager retries 5xx.
            let _ = stream.try_write(REFUSED);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let service = ConnService {
            router: router.clone(),
            peer,
            activity: activity.clone(),
            shared: shared.clone(),
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(
                shared
                    .limits
                    .header_read_timeout
                    .max(shared.limits.idle_timeout)
                    + Duration::from_secs(1),
            )
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = OpenGauge::new(&shared.metrics.http_connections_open);
            tokio::select! {
                ended = conn => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                kind = watchdog(&activity, &shared.limits) => shared.timed_out(kind, peer),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still in flight after the shutdown grace; closing their connections");
    }
}

const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 55\r\n\r\n{\"error\":\"too many connections (http.max_connections)\"}";

/// Counts a connection in `aiops_http_connections_open` while it lives, however its task ends.
struct OpenGauge(prometheus::IntGauge);

impl OpenGauge {
    fn new(gauge: &prometheus::IntGauge) -> OpenGauge {
        gauge.inc();
        OpenGauge(gauge.clone())
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Descriptors kept for everything but served connections: the store pool, rule and playbook
/// files, outbound connections (Kubernetes, notifications), the listener.
const FD_RESERVE: usize = 128;

/// Warns at start when `max_connections` plus [`FD_RESERVE`] exceeds the soft `RLIMIT_NOFILE`:
/// the cap would then not keep accept from failing. Read from /proc/self/limits (Linux; a
/// dependency for one number is not worth it); skipped where that file does not exist.
fn warn_if_descriptors_are_short(max_connections: usize) {
    let Some(soft) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(soft_open_files)
    else {
        return;
    };
    if max_connections + FD_RESERVE > soft {
        tracing::warn!(
            max_connections,
            open_files_limit = soft,
            "http.max_connections leaves too few file descriptors under ulimit -n: lower it to {} or raise the limit",
            soft.saturating_sub(FD_RESERVE)
        );
    }
}

/// The soft "Max open files" of a /proc/<pid>/limits text (None when unlimited or absent).
fn soft_open_files(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Accept errors about one connection (the client gave up), as opposed to the process's.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// What every connection task shares.
struct Shared {
    limits: Limits,
    metrics: Metrics,
    logs: Throttles,
}

impl Shared {
    fn timed_out(&self, kind: Tripped, peer: SocketAddr) {
        let (label, throttle, limit) = match kind {
            Tripped::Header => ("header", &self.logs.header, self.limits.header_read_timeout),
            Tripped::Write => ("write", &self.logs.write, self.limits.idle_timeout),
            Tripped::Idle => ("idle", &self.logs.idle, self.limits.idle_timeout),
        };
        self.metrics.http_timeouts.with_label_values(&[label]).inc();
        if let Some(more) = throttle.ready() {
            if kind == Tripped::Idle {
                // Routine: Alertmanager keeps connections alive between notifications.
                tracing::info!(kind = label, %peer, timeout = ?limit, suppressed = more, "closed an idle keep-alive connection (http.idle_timeout)");
            } else {
                tracing::warn!(kind = label, %peer, timeout = ?limit, suppressed = more, "closed a connection that timed out");
            }
        }
    }

    fn body_timed_out(&self, peer: SocketAddr) {
        self.metrics
            .http_timeouts
            .with_label_values(&["body"])
            .inc();
        if let Some(more) = self.logs.body.ready() {
            tracing::warn!(kind = "body", %peer, timeout = ?self.limits.body_read_timeout, suppressed = more, "request body did not arrive in time; answering 408");
        }
    }
}

/// One log line per interval for each kind of event.
#[derive(Default)]
struct Throttles {
    header: LogThrottle,
    body: LogThrottle,
    write: LogThrottle,
    idle: LogThrottle,
    limit: LogThrottle,
    accept_error: LogThrottle,
}

/// Lets one log line through every [`LOG_EVERY`] and counts the others.
#[derive(Default)]
struct LogThrottle {
    last: Mutex<Option<std::time::Instant>>,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// `Some(events left unlogged since the last line)` when this one may be logged.
    fn ready(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Where a connection is in its life; each phase but `Busy` has a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's headers to complete.
    Head,
    /// A handler runs.
    Busy,
    /// The response is being written.
    Writing,
    /// Kept alive, no request begun.
    Idle,
}

/// A connection's phase and when it began, updated by its I/O and its service; each change
/// wakes the watchdog, whose deadline it moves.
struct Activity {
    state: Mutex<(Phase, Instant)>,
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new((Phase::Head, Instant::now())),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn get(&self) -> (Phase, Instant) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (phase, Instant::now());
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection they begin the next request's headers.
    fn read_some(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 == Phase::Idle {
            *s = (Phase::Head, Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }
}

/// Which deadline the watchdog found passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tripped {
    /// Headers incomplete after `http.header_read_timeout`.
    Header,
    /// Response unread after `http.idle_timeout`.
    Write,
    /// No request for `http.idle_timeout`.
    Idle,
}

/// Resolves with the deadline that passed.
async fn watchdog(activity: &Activity, limits: &Limits) -> Tripped {
    loop {
        // A change between `get` and the wait leaves a permit: `notified` returns at once.
        let (phase, since) = activity.get();
        let (limit, kind) = match phase {
            Phase::Head => (limits.header_read_timeout, Tripped::Header),
            Phase::Writing => (limits.idle_timeout, Tripped::Write),
            Phase::Idle => (limits.idle_timeout, Tripped::Idle),
            Phase::Busy => {
                activity.changed.notified().await;
                continue;
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(since + limit) => {
                if activity.get() == (phase, since) {
                    return kind;
                }
            }
            () = activity.changed.notified() => {}
        }
    }
}

/// The socket, telling the connection's [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The per-connection hyper service: adds the peer address, bounds the body, tracks phases.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.set(Phase::Busy);
        let (mut parts, incoming) = req.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let body = if hyper::body::Body::is_end_stream(&incoming) {
            Body::new(incoming)
        } else {
            let shared = self.shared.clone();
            let peer = self.peer;
            Body::new(Deadline {
                inner: incoming,
                limit: shared.limits.body_read_timeout,
                sleep: Box::pin(tokio::time::sleep(shared.limits.body_read_timeout)),
                on_trip: Some(Box::new(move || shared.body_timed_out(peer))),
            })
        };
        let mut router = self.router.clone();
        let activity = self.activity.clone();
        Box::pin(async move {
            let resp = tower_service::Service::call(&mut router, Request::from_parts(parts, body))
                .await
                .unwrap_or_else(|never| match never {});
            activity.set(Phase::Writing);
            let (parts, body) = resp.into_parts();
            Ok(Response::from_parts(
                parts,
                Tracked {
                    inner: body,
                    _idle: IdleOnDrop(activity),
                },
            ))
        })
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
struct Deadline {
    inner: Incoming,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    on_trip: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            if let Some(trip) = self.on_trip.take() {
                trip();
            }
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks the connection idle once hyper has written (dropped) it.
struct Tracked {
    inner: Body,
    _idle: IdleOnDrop,
}

struct IdleOnDrop(Arc<Activity>);

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        self.0.set(Phase::Idle);
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
