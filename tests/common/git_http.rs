//! Git's smart HTTP on 127.0.0.1: git's own `git http-backend` (a CGI program) behind a small
//! axum server on the test's runtime, as Apache or nginx with fcgiwrap serve repositories. The
//! server does what a web server does for CGI: each request runs the backend with the request in
//! its environment (`PATH_INFO`, `QUERY_STRING`, `REQUEST_METHOD`, `CONTENT_TYPE`,
//! `CONTENT_LENGTH`, `HTTP_CONTENT_ENCODING`, and `GIT_PROTOCOL` from the `Git-Protocol` header,
//! which git's documentation asks servers to pass for protocol v2) and the body on its stdin, and
//! turns its output (headers with a `Status:`, a blank line, the body) into the response.
//!
//! Why http and not `git daemon`: an in-cluster build (Kaniko) fetches http(s) only, so a test
//! deploying a git app needs a repository served over http.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use super::git::git;

/// `git http-backend` serving the bare repositories under a directory; stopped on drop.
pub struct GitHttp {
    pub addr: SocketAddr,
    served: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What each request runs.
struct Backend {
    /// git-http-backend itself (in git's exec path), not `git http-backend`: nothing is left
    /// behind by a wrapper process.
    program: PathBuf,
    root: PathBuf,
    served: Arc<Mutex<Vec<String>>>,
}

impl GitHttp {
    /// Serves every repository under `root` (`GIT_PROJECT_ROOT`, all exported) on a free port of
    /// 127.0.0.1: `root/shop.git` is `http://127.0.0.1:PORT/shop.git`.
    pub async fn start(git_bin: &Path, root: &Path) -> GitHttp {
        let exec_path = git(git_bin, root, &["--exec-path"]);
        let program = Path::new(&exec_path).join("git-http-backend");
        assert!(program.is_file(), "{} is not installed", program.display());
        let served = Arc::new(Mutex::new(Vec::new()));
        let backend = Arc::new(Backend {
            program,
            root: root.to_path_buf(),
            served: served.clone(),
        });
        let router = axum::Router::new().fallback(cgi).with_state(backend);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        GitHttp { addr, served, task }
    }

    /// The URL of repository `path` (`shop.git`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// The requests served so far: `METHOD /path?query → status`.
    pub fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request through the CGI program.
async fn cgi(State(backend): State<Arc<Backend>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 256 << 20).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut cmd = Command::new(&backend.program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &backend.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default());
    if !body.is_empty() || parts.method == axum::http::Method::POST {
        cmd.env("CONTENT_LENGTH", body.len().to_string());
    }
    if let Some(v) = header("content-type") {
        cmd.env("CONTENT_TYPE", v);
    }
    // A gzipped request body (git gzips large ones) is passed as it came: the backend inflates it.
    if let Some(v) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", v);
    }
    let request = format!(
        "{} {}",
        parts.method,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_default()
    );
    let output = tokio::task::spawn_blocking(move || run(cmd, &body))
        .await
        .unwrap();
    let response = match output {
        Ok(out) => from_cgi(&out),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    backend
        .served
        .lock()
        .unwrap()
        .push(format!("{request} → {}", response.status().as_u16()));
    response
}

/// Runs the CGI program with `body` on its stdin (written by a thread of its own, so a program
/// that answers before it has read everything cannot deadlock with us); its stdout.
fn run(mut cmd: Command, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting git-http-backend: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        // The program may exit without reading it all (an error answer): not ours to report.
        let _ = stdin.write_all(&body);
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running git-http-backend: {e}"))?;
    let _ = writer.join();
    if !out.status.success() && out.stdout.is_empty() {
        return Err(format!(
            "git-http-backend {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

/// A CGI program's output as a response: its headers up to the first blank line (`Status:`
/// gives the status, 200 without one), then the body.
fn from_cgi(out: &[u8]) -> Response {
    let (head, body) = match find(out, b"\r\n\r\n") {
        Some(at) => (&out[..at], &out[at + 4..]),
        None => match find(out, b"\n\n") {
            Some(at) => (&out[..at], &out[at + 2..]),
            None => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "git-http-backend printed no header end".into(),
                );
            }
        },
    };
    let mut response = Response::new(Body::from(body.to_vec()));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or_default();
            *response.status_mut() = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn plain(status: StatusCode, text: String) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}
