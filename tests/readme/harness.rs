//! Reading README.md's examples and running them as a user would: each in a fresh directory (a
//! clean copy of the repository's tracked files, or an empty one), with `bash -euo pipefail`,
//! the built `aiops` first on PATH, and nothing of the test's own environment but PATH, HOME and
//! the variables that locate caches.
//!
//! What a user does by hand between the lines of an example, the harness does in the script it
//! writes around the example, and says so there:
//! - `cargo run [--release] --` becomes `aiops` (the binary this test was built with: the same
//!   code, in debug);
//! - the daemon's port 9095 becomes a free port on 127.0.0.1, everywhere in the example at once
//!   (`:9095` in URLs, and `AIOPS_LISTEN` for the daemon, which the example leaves at its
//!   default), so examples run side by side and never meet a daemon of someone else;
//! - a line that starts the daemon (`aiops serve`, "in another shell") runs in the background,
//!   and the next line waits until its `/-/ready` answers, as a user waits for the daemon;
//! - a pause ([`Example::before`]) waits, with a deadline, for what a user would see before
//!   typing the next line (a repair finishing before the cluster is stopped);
//! - a line the test cannot run ([`Example::skip`]) is replaced by a comment giving the reason.
//!
//! A daemon started by an example is stopped (SIGTERM, by PID) when the [`Ran`] is dropped; an
//! example still running at its deadline is killed with its process group.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::files::repo;
use crate::common::stand_ins::closed_addr;
use crate::common::wait::PROBE_EVERY;

/// One fenced block of README.md.
#[derive(Clone, Debug)]
pub struct Block {
    /// The line of its opening fence (1-based), for messages.
    pub line: usize,
    /// The fence's info string (`sh`, `console`, `yaml`, … or empty).
    pub lang: String,
    /// Its text, without the fence's own indentation.
    pub body: String,
}

/// README.md's fenced blocks, in order.
pub fn blocks() -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    parse_blocks(&text)
}

/// The fenced blocks of a Markdown text. A fence may be indented (inside a list item); its
/// indentation is taken off every line of the block.
pub fn parse_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, String, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((i + 1, indent, info.trim().to_string(), Vec::new()));
                }
            }
            Some((start, ind, lang, lines)) => {
                if trimmed == "```" {
                    blocks.push(Block {
                        line: *start,
                        lang: lang.clone(),
                        body: lines.join("\n"),
                    });
                    open = None;
                } else {
                    let cut = line.len() - line.trim_start().len();
                    lines.push(line[cut.min(*ind)..].to_string());
                }
            }
        }
    }
    assert!(open.is_none(), "README.md: a fence is never closed");
    blocks
}

/// What kind of example a block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `sh`: commands, run as a script.
    Commands,
    /// `console`: `$ ` commands, each followed by the output it prints.
    Transcript,
    /// Anything else (`yaml`, `text`, …): not a command.
    Other,
}

impl Block {
    /// Its kind; a block without a language, or with `$ ` prompts outside a `console` block, is
    /// an error naming its line and what to do, so no example escapes the test by its label.
    pub fn kind(&self) -> Result<Kind, String> {
        let prompts = self.body.lines().any(|l| l.starts_with("$ "));
        match self.lang.as_str() {
            "sh" | "bash" | "shell" if !prompts => Ok(Kind::Commands),
            "console" => Ok(Kind::Transcript),
            "" => Err(format!(
                "README.md line {}: a fence without a language. Label it `sh` (commands: \
                 tests/readme.rs runs them), `console` (a `$ ` transcript: run, and its output \
                 compared) or `text`/`yaml` (not commands)",
                self.line
            )),
            _ if prompts => Err(format!(
                "README.md line {}: `$ ` prompts in a `{}` block: label it `console`",
                self.line, self.lang
            )),
            _ => Ok(Kind::Other),
        }
    }

    /// The transcript's commands, each with the output lines shown after it (`...` lines, "some
    /// lines left out", are dropped: the shown lines are matched in order, not necessarily
    /// adjacent, since a command may also log).
    pub fn transcript(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for line in self.body.lines() {
            if let Some(cmd) = line.strip_prefix("$ ") {
                out.push((cmd.to_string(), Vec::new()));
            } else if line.trim() != "..." && !line.trim().is_empty() {
                out.last_mut()
                    .unwrap_or_else(|| {
                        panic!("README.md line {}: output before any `$ `", self.line)
                    })
                    .1
                    .push(line.to_string());
            }
        }
        out
    }
}

/// Runs `f` (an example: blocking, seconds long) off the test's runtime, so the stand-ins on it
/// keep answering; its panic is the test's.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The one shell example whose text contains `key`.
pub fn block(key: &str) -> Block {
    let found: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.body.contains(key) && b.kind() != Ok(Kind::Other))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "README.md: expected exactly one example containing {key:?}, found {}: the README \
         changed; update tests/readme.rs (its EXAMPLES table and the test that runs it)",
        found.len()
    );
    found.into_iter().next().unwrap()
}

/// How to run one example: where, with what around it.
pub struct Example {
    /// The example's working directory.
    pub dir: tempfile::TempDir,
    /// The harness's own files: the script, the daemon's output, the PIDs, `bin/aiops`.
    work: tempfile::TempDir,
    /// The port standing in for 9095.
    pub port: u16,
    env: Vec<(String, String)>,
    skips: Vec<(String, String)>,
    pauses: Vec<Pause>,
    within: Duration,
}

/// Something a user waits for before typing a line.
struct Pause {
    before: String,
    what: String,
    condition: String,
    within: Duration,
}

/// What an example did.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The script as run, for failure messages.
    pub script: String,
    /// The daemons it started, stopped on drop.
    daemons: Vec<i32>,
    /// Output of those daemons so far.
    work: PathBuf,
}

impl Ran {
    /// Everything a failure message needs.
    pub fn report(&self) -> String {
        // The example as run, without the helpers above it (tests/readme/harness.rs has them).
        let example = self
            .script
            .split_once(EXAMPLE_STARTS)
            .map_or(self.script.as_str(), |(_, e)| e);
        format!(
            "exit: {}\n--- the example as run\n{}\n--- stdout\n{}\n--- stderr\n{}\n--- daemon\n{}",
            self.status,
            example,
            self.stdout,
            self.stderr,
            std::fs::read_to_string(self.work.join("daemon.log")).unwrap_or_default()
        )
    }

    /// Asserts the example exited 0.
    pub fn assert_success(&self) {
        assert!(self.status.success(), "{}", self.report());
    }
}

impl Drop for Ran {
    fn drop(&mut self) {
        stop(&self.daemons);
    }
}

/// SIGTERM to each PID, then waits (deadline 30 s, the daemon's own shutdown grace) until each
/// is gone; SIGKILL after that.
fn stop(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: kill(2) with a PID this harness started; no memory is shared.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for &pid in pids {
        // SAFETY: as above; signal 0 only asks whether the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }
}

impl Example {
    /// In a clean copy of the repository: its tracked files as checked out (a clone of the work
    /// tree, without `target/`, a store or anything else left behind).
    pub fn in_clean_copy() -> Example {
        let ex = Example::in_empty_dir();
        let out = Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(repo())
            .output()
            .expect("git ls-files");
        assert!(out.status.success(), "git ls-files failed");
        for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name).into_owned();
            let from = repo().join(&name);
            if !from.is_file() {
                continue; // deleted in the work tree: not part of what is checked out
            }
            let to = ex.dir.path().join(&name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {name}: {e}"));
        }
        ex
    }

    /// In an empty directory ("from any directory").
    pub fn in_empty_dir() -> Example {
        let work = tempfile::tempdir().unwrap();
        let bin = work.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_aiops"), bin.join("aiops")).unwrap();
        let port = closed_addr().port();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env = vec![
            ("PATH".to_string(), path),
            // The daemon's default port, 9095, moved to `port` (see the module's docs).
            ("AIOPS_LISTEN".to_string(), format!("127.0.0.1:{port}")),
        ];
        // A user's shell has these; the control plane's script finds its cache through them.
        for k in [
            "HOME",
            "USER",
            "LANG",
            "TMPDIR",
            "AIOPS_KUBE_ENV_CACHE",
            "GOFLAGS",
            "GOPATH",
            "GOMODCACHE",
            "GOCACHE",
            "GOTOOLCHAIN",
        ] {
            if let Ok(v) = std::env::var(k) {
                env.push((k.to_string(), v));
            }
        }
        Example {
            dir: tempfile::tempdir().unwrap(),
            work,
            port,
            env,
            skips: Vec::new(),
            pauses: Vec::new(),
            within: Duration::from_secs(120),
        }
    }

    /// Adds an environment variable (the example's context: a kubeconfig, a token).
    pub fn env(mut self, k: &str, v: &str) -> Example {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Does not run the line containing `line` (it must exist): `why` says where it is verified.
    pub fn skip(mut self, line: &str, why: &str) -> Example {
        self.skips.push((line.into(), why.into()));
        self
    }

    /// Before the line containing `line`, waits (at most `within`) until the shell condition
    /// `condition` holds, as a user would wait to see `what`.
    pub fn before(mut self, line: &str, what: &str, condition: &str, within: Duration) -> Example {
        self.pauses.push(Pause {
            before: line.into(),
            what: what.into(),
            condition: condition.into(),
            within,
        });
        self
    }

    /// The script that runs `block` (see the module's docs for what is added to it).
    pub fn script(&self, block: &Block) -> String {
        let text = rewrite(&block.body, self.port);
        let mut out = prelude(self.work.path(), self.port);
        for (line, _) in &self.skips {
            assert!(
                text.contains(line.as_str()),
                "README.md line {}: no line {line:?} to skip any more: update tests/readme.rs",
                block.line
            );
        }
        for p in &self.pauses {
            assert!(
                text.contains(p.before.as_str()),
                "README.md line {}: no line {:?} to pause before any more: update tests/readme.rs",
                block.line,
                p.before
            );
        }
        let mut in_quote: Option<char> = None;
        for line in text.lines() {
            let starts_command = in_quote.is_none();
            let (code, comment) = split_comment(line, &mut in_quote);
            if starts_command {
                if let Some((_, why)) = self.skips.iter().find(|(l, _)| line.contains(l.as_str())) {
                    out.push_str(&format!("# tests/readme.rs skips: {line}\n#   ({why})\n"));
                    continue;
                }
                for p in self
                    .pauses
                    .iter()
                    .filter(|p| line.contains(p.before.as_str()))
                {
                    out.push_str(&format!(
                        "__readme_until {} {} {}\n",
                        p.within.as_secs(),
                        shell_quote(&p.what),
                        shell_quote(&p.condition)
                    ));
                }
                if starts_daemon(code) {
                    out.push_str(&format!(
                        "{} >>\"$__readme_work/daemon.log\" 2>&1 & {comment}\n__readme_daemon $!\n",
                        code.trim_end()
                    ));
                    continue;
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Runs a `sh` block; returns what it did (its daemons still running).
    pub fn run(&self, block: &Block) -> Ran {
        let script = self.script(block);
        self.bash(&script)
    }

    /// Runs one transcript command with its stderr in the same stream as its stdout, as a
    /// terminal shows them.
    pub fn run_command(&self, command: &str) -> Ran {
        let script = format!(
            "{}{{ {}\n}} 2>&1\n",
            prelude(self.work.path(), self.port),
            rewrite(command, self.port)
        );
        self.bash(&script)
    }

    fn bash(&self, script: &str) -> Ran {
        let path = self.work.path().join("example.sh");
        std::fs::write(&path, script).unwrap();
        let (stdout_path, stderr_path) = (
            self.work.path().join("stdout"),
            self.work.path().join("stderr"),
        );
        let mut child = Command::new("bash")
            .args(["-euo", "pipefail"])
            .arg(&path)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            // Its own process group, so a timeout kills the example and whatever it started.
            .process_group(0)
            .spawn()
            .expect("bash");
        let deadline = Instant::now() + self.within;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                // SAFETY: kill(2) on the process group this harness created.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let status = child.wait().unwrap();
                let ran = self.ran(status, script);
                panic!(
                    "the example ran past {:?} and was killed\n{}",
                    self.within,
                    ran.report()
                );
            }
            std::thread::sleep(PROBE_EVERY);
        };
        self.ran(status, script)
    }

    fn ran(&self, status: ExitStatus, script: &str) -> Ran {
        let read = |name: &str| {
            let mut s = String::new();
            if let Ok(mut f) = std::fs::File::open(self.work.path().join(name)) {
                let _ = f.read_to_string(&mut s);
            }
            s
        };
        let daemons = read("pids")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        Ran {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
            script: script.to_string(),
            daemons,
            work: self.work.path().to_path_buf(),
        }
    }

    /// A path in the example's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// What the example's text becomes before it runs: `cargo run` is the built binary, and 9095
/// the example's port.
pub fn rewrite(text: &str, port: u16) -> String {
    text.replace("cargo run --release -- ", "aiops ")
        .replace("cargo run -- ", "aiops ")
        .replace(":9095", &format!(":{port}"))
}

/// Whether a command line (without its comment) starts the daemon: `aiops [options] serve`.
fn starts_daemon(code: &str) -> bool {
    let words: Vec<&str> = code.split_whitespace().collect();
    words.last() == Some(&"serve") && words.contains(&"aiops")
}

/// A line's code and its trailing `# comment` (empty when none); `in_quote` carries an open
/// quote over to the next line, whose `#` are then not comments.
fn split_comment<'a>(line: &'a str, in_quote: &mut Option<char>) -> (&'a str, &'a str) {
    let mut prev_space = true;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match *in_quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    *in_quote = None;
                }
            }
            None => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '\'' || c == '"' {
                    *in_quote = Some(c);
                } else if c == '#' && prev_space {
                    return (&line[..i], &line[i..]);
                }
            }
        }
        prev_space = c.is_whitespace();
    }
    (line, "")
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The line between the helpers and the README's example in a script.
const EXAMPLE_STARTS: &str = "# --- the README's example\n";

/// The helpers every example's script starts with.
fn prelude(work: &Path, port: u16) -> String {
    format!(
        r#"# Written by tests/readme.rs around a README example (see tests/readme/harness.rs).
__readme_work={work}
__readme_port={port}
# The daemon a line started "in another shell": recorded for the test to stop, then waited on
# until /-/ready answers, as a user waits before the next line.
__readme_daemon() {{
  local pid=$1 deadline=$((SECONDS + 60))
  echo "$pid" >>"$__readme_work/pids"
  until curl -sf -o /dev/null "http://127.0.0.1:$__readme_port/-/ready"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tests/readme.rs: the daemon started in another shell exited:" >&2
      cat "$__readme_work/daemon.log" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "tests/readme.rs: no answer on http://127.0.0.1:$__readme_port/-/ready in 60 s" >&2
      return 1
    fi
    sleep 0.1
  done
}}
# What a user waits to see before the next line: a condition, with a deadline.
__readme_until() {{
  local deadline=$((SECONDS + $1)) what=$2 condition=$3
  until eval "$condition" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "tests/readme.rs: timed out after $1 s waiting for $what ($condition)" >&2
      return 1
    fi
    sleep 0.2
  done
}}
if ! command -v kubectl >/dev/null 2>&1; then
  # No kubectl here (the README makes it optional): `kubectl create deployment NAME
  # --image=IMAGE --replicas=N` is done as the one POST kubectl sends, with the kubeconfig's
  # server, CA and token. Nothing else of kubectl is stood in for.
  kubectl() {{
    if [[ "${{1:-}} ${{2:-}}" != "create deployment" ]]; then
      echo "tests/readme.rs: kubectl is not installed: cannot run kubectl $*" >&2
      return 127
    fi
    local name=$3 image="" replicas=1 a server token
    for a in "${{@:4}}"; do
      case $a in --image=*) image=${{a#--image=}} ;; --replicas=*) replicas=${{a#--replicas=}} ;; esac
    done
    echo "tests/readme.rs: no kubectl: creating Deployment default/$name through the API" >&2
    server=$(sed -n 's/^ *server: *//p' "$KUBECONFIG" | head -n 1)
    token=$(sed -n 's/^ *token: *//p' "$KUBECONFIG" | head -n 1)
    sed -n 's/^ *certificate-authority-data: *//p' "$KUBECONFIG" | head -n 1 | base64 -d >"$__readme_work/ca.crt"
    curl -sSf --cacert "$__readme_work/ca.crt" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -o /dev/null \
      "$server/apis/apps/v1/namespaces/default/deployments" \
      -d '{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"'"$name"'","labels":{{"app":"'"$name"'"}}}},"spec":{{"replicas":'"$replicas"',"selector":{{"matchLabels":{{"app":"'"$name"'"}}}},"template":{{"metadata":{{"labels":{{"app":"'"$name"'"}}}},"spec":{{"containers":[{{"name":"'"${{image%%:*}}"'","image":"'"$image"'"}}]}}}}}}}}'
    echo "deployment.apps/$name created"
  }}
fi
{EXAMPLE_STARTS}"#,
        work = shell_quote(&work.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_starts_at_a_hash_after_a_space_outside_quotes() {
        let mut q = None;
        assert_eq!(
            split_comment("aiops serve   # in another shell", &mut q),
            ("aiops serve   ", "# in another shell")
        );
        assert_eq!(split_comment("curl -d '{\"a#b\": 1} #x", &mut q).1, "");
        assert_eq!(q, Some('\''));
        assert_eq!(split_comment("  x # y' # z", &mut q), ("  x # y' ", "# z"));
        assert_eq!(q, None);
    }

    #[test]
    fn only_a_line_ending_in_serve_starts_the_daemon() {
        assert!(starts_daemon("AIOPS_KUBECONFIG=$k aiops serve  "));
        assert!(starts_daemon("aiops --config x.yaml serve"));
        assert!(!starts_daemon("aiops serve --help"));
        assert!(!starts_daemon("echo serve"));
    }

    #[test]
    fn fences_keep_their_language_and_lose_their_indentation() {
        let b = parse_blocks("x\n  ```sh\n  a\n    b\n  ```\n```\n$ c\nout\n...\n```\n");
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].line, b[0].lang.as_str(), b[0].body.as_str()),
            (2, "sh", "a\n  b")
        );
        assert!(b[1].kind().is_err());
        let t = Block {
            lang: "console".into(),
            ..b[1].clone()
        };
        assert_eq!(
            t.transcript(),
            vec![("c".to_string(), vec!["out".to_string()])]
        );
    }
}
