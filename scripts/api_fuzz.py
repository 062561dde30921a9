#!/usr/bin/env python3
"""Fuzzes the /api of a real `aiops serve` with schemathesis, bounded in time.

Starts the daemon on 127.0.0.1 (port 0) with a temporary SQLite store, the repository's rules
and playbooks, the tests' in-memory cluster and a random JWT secret; seeds it with data (the
Alertmanager fixtures' webhooks, which queue and run restart repairs, a registered app and a
note); mints an admin token with `aiops token issue`; then runs `schemathesis run` against
/api/openapi.json with that token. Every response must match the document (status code,
content type, headers, body schema) and none may be a 5xx. The daemon is stopped by its PID
whatever happens, and a panic in its log fails the run too.

    scripts/api_fuzz.py [--max-examples N] [--max-time SECONDS] [--bin PATH] [--schemathesis PATH]

Without --bin, builds the debug binary with cargo; without --schemathesis, uses the one on PATH.
Exit status: schemathesis's (0 when every check passed), or 1 for a daemon or setup problem.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What the document promises, checked on every response; plus the server-error check itself,
# which excuses only the one documented 503 of a daemon without a cluster (api_fuzz_hooks.py).
CHECKS = os.environ.get("API_FUZZ_CHECKS") or ",".join(
    [
        "not_a_server_error_but_unconfigured",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def log(msg: str) -> None:
    print(f"api-fuzz: {msg}", flush=True)


def build_binary() -> Path:
    """`cargo build --bin aiops`, returning the executable cargo reports (honours CARGO_TARGET_DIR)."""
    out = subprocess.run(
        ["cargo", "build", "--bin", "aiops", "--message-format=json-render-diagnostics"],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["name"] == "aiops":
            return Path(msg["executable"])
    raise SystemExit("cargo build did not report the aiops executable")


class Daemon:
    """`aiops serve` as a child process; its JSON log collected, its address read from it."""

    def __init__(self, binary: Path, workdir: Path, env: dict[str, str]):
        self.lines: list[str] = []
        self.addr: str | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [str(binary), "--log-format", "json", "serve"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message") == "listening" and self.addr is None:
                self.addr = event.get("addr")
                self._ready.set()
        self._ready.set()

    def wait_listening(self, timeout: float) -> str:
        if not self._ready.wait(timeout) or self.addr is None:
            raise RuntimeError("the daemon did not start listening")
        return self.addr

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; only this child's PID."""
        if self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log(f"daemon {self.proc.pid} ignored SIGTERM for 30 s; killing it")
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def panics(self) -> list[str]:
        return [line for line in self.lines if "panicked" in line]


class PrometheusStandIn:
    """A stand-in for Prometheus's query API on 127.0.0.1 (port 0), so `/api/monitor` is fuzzed
    through to the query it sends: every query answers an empty vector, as a Prometheus without
    the app's series would. Without one the route answers 503 (not configured), a server error
    to schemathesis. The queries it received are kept: each must carry the app's namespace."""

    def __init__(self) -> None:
        import http.server
        import urllib.parse

        queries = self.queries = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                if url.path in ("/api/v1/query", "/api/v1/query_range"):
                    queries.extend(urllib.parse.parse_qs(url.query).get("query", []))
                    kind = "matrix" if url.path.endswith("_range") else "vector"
                    body, status = {"status": "success", "data": {"resultType": kind, "result": []}}, 200
                else:
                    body, status = {"status": "error", "errorType": "not_found", "error": "no such path"}, 404
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


def request(method: str, url: str, token: str | None, body: bytes | None = None,
            content_type: str = "application/json") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def expect(what: str, got: tuple[int, bytes], *statuses: int) -> bytes:
    status, body = got
    if status not in statuses:
        raise RuntimeError(f"{what}: HTTP {status} (expected {statuses}): {body[:500]!r}")
    return body


def seed(base: str, webhook_token: str, api_token: str) -> None:
    """Data for every listing: alerts and repairs from real payloads, an app, a note."""
    for fixture in sorted((REPO / "tests/fixtures").glob("am-0.25-*.json")):
        expect(f"webhook {fixture.name}",
               request("POST", f"{base}/webhook/alertmanager", webhook_token, fixture.read_bytes()), 200)
    spec = (REPO / "tests/golden/deploy/flask-basic.app.yaml").read_bytes()
    expect("register an app", request("POST", f"{base}/api/apps", api_token, spec, "application/yaml"), 200, 201)
    note = json.dumps({"namespace": "prod", "alertname": "Test", "body": "restart fixes it"}).encode()
    expect("add a note", request("POST", f"{base}/api/kb/notes", api_token, note), 201)
    # The webhook answers once the alerts are recorded; the repair jobs follow within a poll.
    deadline = time.monotonic() + 30
    while True:
        items = json.loads(expect("list repairs", request("GET", f"{base}/api/repairs", api_token), 200))["items"]
        if items:
            log(f"seeded: {len(items)} repairs, an app, a note")
            return
        if time.monotonic() > deadline:
            raise RuntimeError("no repair was recorded within 30 s of the fixtures' webhooks")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-examples", type=int, default=100, help="test cases per operation and phase")
    ap.add_argument("--max-time", type=int, default=180, help="schemathesis's time budget, seconds")
    ap.add_argument("--bin", type=Path, help="the aiops executable (default: cargo build)")
    ap.add_argument("--schemathesis", default=shutil.which("schemathesis") or "schemathesis")
    args = ap.parse_args()

    binary = (args.bin or build_binary()).resolve()
    jwt_secret = secrets.token_urlsafe(48)
    webhook_token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="aiops-api-fuzz-") as tmp:
        work = Path(tmp)
        shutil.copytree(REPO / "rules", work / "rules")
        shutil.copytree(REPO / "playbooks", work / "playbooks")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AIOPS_LISTEN": "127.0.0.1:0",
            "AIOPS_DATABASE_URL": f"sqlite://{work / 'aiops.db'}?mode=rwc",
            "AIOPS_RULES_DIR": str(work / "rules"),
            "AIOPS_PLAYBOOKS_DIR": str(work / "playbooks"),
            "AIOPS_CLUSTER_STATE_FILE": str(REPO / "tests/fixtures/cluster-state.yaml"),
            "AIOPS_POLL_INTERVAL": "200ms",
            "AIOPS_JWT_SECRET": jwt_secret,
            "AIOPS_WEBHOOK_TOKEN": webhook_token,
            "AIOPS_LOG": "info,sqlx=warn",
            # Registering a git app fetches its repository: only ever from this machine.
            "AIOPS_DEPLOY_SOURCE_HOSTS": "127.0.0.1",
        }
        prometheus = PrometheusStandIn()
        env["AIOPS_PROMETHEUS_URL"] = prometheus.url
        token = subprocess.run(
            [str(binary), "token", "issue", "--sub", "schemathesis", "--role", "admin", "--ttl", "2h"],
            cwd=work, env=env, check=True, stdout=subprocess.PIPE, text=True,
        ).stdout.strip().splitlines()[-1]

        daemon = Daemon(binary, work, env)
        try:
            base = f"http://{daemon.wait_listening(30)}"
            log(f"daemon {daemon.proc.pid} listening at {base}")
            seed(base, webhook_token, token)
            cmd = [
                args.schemathesis, "--no-color", "run", f"{base}/api/openapi.json",
                "--header", f"Authorization: Bearer {token}",
                "--checks", CHECKS,
                "--max-examples", str(args.max_examples),
                "--max-time", str(args.max_time),
                "--workers", "2",
                "--request-timeout", "10",
            ]
            log("running: " + " ".join(c if not c.startswith("Authorization") else "Authorization: Bearer ***" for c in cmd))
            started = time.monotonic()
            # Our deserializer for the multi-document YAML of `manifests?format=yaml`.
            hooks = {**os.environ, "SCHEMATHESIS_HOOKS": str(REPO / "scripts/api_fuzz_hooks.py")}
            rc = subprocess.run(cmd, cwd=work, env=hooks).returncode
            log(f"schemathesis exited {rc} after {time.monotonic() - started:.0f} s")
        except Exception as e:  # noqa: BLE001 - any setup failure is reported with the daemon's log
            log(f"setup failed: {e}")
            rc = 1
        finally:
            daemon.stop()
            prometheus.stop()
        # Each query reaches Prometheus confined to one app: its namespace matchers are all
        # `namespace="<one value>"`, never a pattern, a negation or two apps.
        log(f"{len(prometheus.queries)} queries reached the Prometheus stand-in")
        matcher = re.compile(r'(?<![A-Za-z0-9_])namespace\s*(=~|!=|!~|=)\s*"([^"]*)"')
        leaked = [
            q for q in prometheus.queries
            if any(op != "=" for op, _ in matcher.findall(q)) or len({v for _, v in matcher.findall(q)}) > 1
        ]
        if leaked:
            log(f"{len(leaked)} queries reached Prometheus not confined to one app: {leaked[:5]}")
            rc = rc or 1
        if daemon.panics():
            log("the daemon panicked:")
            print("\n".join(daemon.panics()[:20]))
            rc = rc or 1
        if rc != 0:
            log("last lines of the daemon's log:")
            print("\n".join(daemon.lines[-40:]))
        return rc


if __name__ == "__main__":
    sys.exit(main())
