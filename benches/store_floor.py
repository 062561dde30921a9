#!/usr/bin/env python3
"""The store's own ceiling for fresh-alert intake, beside the bare server, in one run (issue 20).

Why: `load.sh` says how fast aiops takes new alerts; this says how fast the database alone can
record them the way aiops must, on the same machine, so a throughput target can be checked
against what is possible at all before the daemon is blamed. It is a floor for the store's cost
(a ceiling for throughput): it writes less than the daemon does and in the cheapest way SQL
allows, so no implementation of the daemon on this store and schema can be faster.

What one batch writes, per store, in one transaction (the daemon's group commit):
  - BATCH rows of `alert_events` (the real schema: every migration of `migrations/<backend>/`
    applied in order, its indexes and foreign keys included) with the labels, annotations and
    generator URL of the grouped-3 fixture's alerts, each with a new fingerprint;
  - one `decisions` row per alert (a fresh firing alert matched by a rule is decided once);
  - PostgreSQL only: the intake's advisory lock first, as the daemon takes it.
It leaves out everything else the daemon does (the storm, cooldown and queue reads, the storm
activity upsert, jobs, the HTTP side): cheaper, so the bound holds.
The rows are made by the database itself (`INSERT … SELECT` over a generated series): no client
round trip per row or per statement inside a batch. SQLite runs in the `sqlite3` shell, one
process, WAL, the daemon's `synchronous`; PostgreSQL runs under `pgbench` with two clients (the
two replicas of load.sh's postgres cells).

The http-sqlite-* stores add the HTTP side back: the `intake_floor` example
(benches/intake_floor/main.rs) serves the webhook with the daemon's HTTP stack and typed parse
and answers each webhook once its alerts and one decision each are committed by one SQLite writer
thread (group commit, statements prepared once, no hand-off per statement), under the same wrk
load as the bare server. It keeps the daemon's durability contract (2xx ⇒ stored) as cheaply
as its author could make it, so it bounds what the daemon's design reaches on this machine: the
daemon does all of it and more. Its rows of the measured run are checked against the answered webhooks.

Usage (from anywhere): python3 benches/store_floor.py
Environment:
  STORES      list out of http-sqlite-full, http-sqlite-normal, sqlite-full, sqlite-normal,
              postgres (default all five)
  ALERTS      alerts to write per store (default 30000)
  BATCH       alerts per transaction (default 99: 33 webhooks of 3 alerts, the size of the
              daemon's batches at 64 connections in load.sh's fresh cells)
  DURATION    seconds of the bare-server cell (default 10); BASELINE=0 skips it
  BASELINE_BIN  the bare axum + serde_json server (default: build the `baseline` example in
              release, as load.sh does)
  FLOOR_BIN   the intake_floor example (default: built in release like the baseline)
  PGHOST, PGPORT, PGUSER   as load.sh (default 127.0.0.1, 5432, postgres; trust auth); the
              postgres store is skipped with a message when pg_isready fails, unless CI=true
Output: a markdown table (store, batch, alerts/s, webhooks/s at 3 alerts each, that as a ratio of
the bare server's req/s at 64 connections, p99 for the served ones, the load average), also in
$CARGO_TARGET_DIR/store-floor.md (or target/).
Exit: 0 on success; 2 on a setup failure (a missing tool, a failed statement).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/am-0.25-firing-grouped-3.json"
PG_LOCK_KEY = 6990001116843713839  # src/store/intake.rs: WriteTx::lock_intake


def die(msg):
    print(f"store_floor.py: {msg}", file=sys.stderr)
    sys.exit(2)


def env_int(name, default, lo, hi):
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        die(f"{name} must be {lo}..{hi}, got '{raw}'")
    return int(raw)


def need(tool):
    if shutil.which(tool) is None:
        die(f"{tool} is not installed (apt-get install {'sqlite3' if tool == 'sqlite3' else 'postgresql-client' if tool in ('psql', 'pgbench', 'pg_isready') else tool})")


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def fixture_rows():
    """The fixture's alerts as the daemon stores them: labels and annotations are JSON objects
    with sorted keys (serde_json of a BTreeMap), compact."""
    alerts = json.loads(FIXTURE.read_text())["alerts"]
    out = []
    for a in alerts:
        out.append({
            "alertname": a["labels"].get("alertname", ""),
            "namespace": a["labels"].get("namespace"),
            "severity": a["labels"].get("severity"),
            "labels": json.dumps(a["labels"], sort_keys=True, separators=(",", ":")),
            "annotations": json.dumps(a["annotations"], sort_keys=True, separators=(",", ":")),
            "generator_url": a["generatorURL"],
        })
    return out


def pick(rows, key, k):
    """A SQL CASE choosing row k % len(rows)'s `key`."""
    arms = " ".join(
        f"WHEN {i} THEN {quote(r[key]) if r[key] is not None else 'NULL'}"
        for i, r in enumerate(rows)
    )
    return f"CASE {k} % {len(rows)} {arms} END"


def batch_sql(backend, rows, batch, salt):
    """One batch's statements (no BEGIN/COMMIT). `salt` makes fingerprints unique per batch."""
    cols = ("fingerprint, status, starts_at, ends_at, alertname, namespace, labels, annotations, "
            "generator_url, receiver, group_key, received_at, severity")
    decision = ("'restart', 'prod/Deployment/demo', 'refused', 'cooldown', "
                "'rule restart acted on prod/Deployment/demo 3s ago (cooldown 10m)', NULL")
    vals = lambda k, fp, now: (  # noqa: E731
        f"{fp}, 'firing', {now} - {k}, NULL, {pick(rows, 'alertname', k)}, "
        f"{pick(rows, 'namespace', k)}, {pick(rows, 'labels', k)}, {pick(rows, 'annotations', k)}, "
        f"{pick(rows, 'generator_url', k)}, 'aiops', '{{}}:{{alertname=\"Test\"}}', {now}, "
        f"{pick(rows, 'severity', k)}")
    if backend == "sqlite":
        now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
        fp = f"printf('%08x%08x', {salt}, k)"
        return (
            f"INSERT INTO alert_events ({cols}) "
            f"WITH RECURSIVE s(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM s WHERE k < {batch - 1}) "
            f"SELECT {vals('k', fp, now)} FROM s WHERE true ON CONFLICT DO NOTHING;\n"
            "INSERT INTO decisions (alert_event_id, rule, target_key, verdict, reason, detail, job_id, created_at) "
            f"SELECT id, {decision}, received_at FROM alert_events "
            "WHERE id > (SELECT COALESCE(MAX(alert_event_id), 0) FROM decisions);\n")
    now = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    fp = "substr(md5(random()::text || clock_timestamp()::text), 1, 16)"
    return (
        f"SELECT count(*) FROM (SELECT pg_advisory_xact_lock({PG_LOCK_KEY})) AS l;\n"
        f"WITH ins AS (INSERT INTO alert_events ({cols}) "
        f"SELECT {vals('k', fp, now)} FROM generate_series(0, {batch - 1}) AS s(k) "
        "ON CONFLICT DO NOTHING RETURNING id, received_at) "
        "INSERT INTO decisions (alert_event_id, rule, target_key, verdict, reason, detail, job_id, created_at) "
        f"SELECT id, {decision}, received_at FROM ins;\n")


def migrations(backend):
    files = sorted((ROOT / "migrations" / backend).glob("*.sql"))
    if not files:
        die(f"no migrations under migrations/{backend}")
    return files


def loadavg():
    return Path("/proc/loadavg").read_text().split()[0]


def sqlite_floor(rows, alerts, batch, sync):
    need("sqlite3")
    with tempfile.TemporaryDirectory(prefix="aiops-floor-") as tmp:
        db = Path(tmp) / "floor.db"
        schema = "".join(f.read_text() + "\n" for f in migrations("sqlite"))
        subprocess.run(["sqlite3", "-bail", str(db)], input=schema, text=True, check=True,
                       stdout=subprocess.DEVNULL)
        batches = alerts // batch
        script = ["PRAGMA journal_mode = WAL;", f"PRAGMA synchronous = {sync};",
                  "PRAGMA foreign_keys = ON;", "PRAGMA busy_timeout = 5000;"]
        for b in range(batches):
            script.append("BEGIN IMMEDIATE;")
            script.append(batch_sql("sqlite", rows, batch, b))
            script.append("COMMIT;")
        before = loadavg()
        t = time.perf_counter()
        r = subprocess.run(["sqlite3", "-bail", str(db)], input="\n".join(script), text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        secs = time.perf_counter() - t
        if r.returncode != 0:
            die(f"sqlite3 failed: {r.stderr.strip()[:500]}")
        n = subprocess.run(["sqlite3", str(db), "SELECT count(*) FROM alert_events; SELECT count(*) FROM decisions;"],
                           capture_output=True, text=True, check=True).stdout.split()
        if n != [str(batches * batch)] * 2:
            die(f"sqlite3 wrote {n} rows (alert_events, decisions), expected {batches * batch} each")
        return batches * batch / secs, f"{before} → {loadavg()}"


def postgres_floor(rows, alerts, batch):
    for tool in ("psql", "pgbench", "pg_isready"):
        need(tool)
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    base = ["-h", host, "-p", port, "-U", user]
    if subprocess.run(["pg_isready", *base], capture_output=True).returncode != 0:
        if os.environ.get("CI") == "true":
            die(f"PostgreSQL is not ready at {host}:{port}")
        print(f"store_floor.py: no PostgreSQL at {host}:{port}; postgres skipped", file=sys.stderr)
        return None
    name = f"aiops_floor_{os.getpid()}"
    psql = lambda db, sql: subprocess.run(  # noqa: E731
        ["psql", *base, "-d", db, "-v", "ON_ERROR_STOP=1", "-q", "-X"], input=sql, text=True,
        capture_output=True)
    r = psql("postgres", f"CREATE DATABASE {name};")
    if r.returncode != 0:
        die(f"CREATE DATABASE failed: {r.stderr.strip()}")
    try:
        for f in migrations("postgres"):
            r = psql(name, f.read_text())
            if r.returncode != 0:
                die(f"{f.name}: {r.stderr.strip()[:500]}")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write("BEGIN;\n" + batch_sql("postgres", rows, batch, 0) + "COMMIT;\n")
        clients = 2
        per_client = max(1, alerts // batch // clients)
        before = loadavg()
        r = subprocess.run(["pgbench", *base, "-n", "-c", str(clients), "-j", str(clients),
                            "-t", str(per_client), "-f", script.name, name],
                           capture_output=True, text=True)
        os.unlink(script.name)
        if r.returncode != 0:
            die(f"pgbench failed: {(r.stderr or r.stdout).strip()[:500]}")
        tps = None
        for line in r.stdout.splitlines():
            if line.startswith("tps = "):
                tps = float(line.split()[2])
        if tps is None:
            die(f"no tps in pgbench's output: {r.stdout[-500:]}")
        want = clients * per_client * batch
        r = psql(name, "SELECT count(*) FROM alert_events UNION ALL SELECT count(*) FROM decisions;")
        got = [int(x) for x in r.stdout.split() if x.isdigit()]
        if got != [want, want]:
            die(f"pgbench wrote {got} rows (alert_events, decisions), expected {want} each")
        return tps * batch, f"{before} → {loadavg()}"
    finally:
        psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def examples_built(names):
    """The release builds of these examples (built here unless BASELINE_BIN / FLOOR_BIN name
    them), as load.sh builds the baseline."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    given = {"baseline": os.environ.get("BASELINE_BIN"), "intake_floor": os.environ.get("FLOOR_BIN")}
    build = [n for n in names if not given[n]]
    if build:
        args = ["cargo", "build", "--release"]
        for n in build:
            args += ["--example", n]
        if subprocess.run(args, cwd=ROOT).returncode != 0:
            die(f"{' '.join(args)} failed")
    return {n: given[n] or str(target / "release/examples" / n) for n in names}


def wrk_result(out):
    """(requests, req/s, p99 in ms) from the WRK_RESULT line wrk-post.lua prints; dies on any
    non-2xx answer or socket error (a timed-out request is in neither the count nor the p99)."""
    for line in out.splitlines():
        if line.startswith("WRK_RESULT "):
            r = dict(kv.split("=", 1) for kv in line.split()[1:])
            errors = {k: r[k] for k in ("non2xx", "connect", "read", "write", "timeout") if r[k] != "0"}
            if errors:
                die(f"wrk saw errors {errors}: {line}")
            return int(r["requests"]), float(r["rps"]), int(r["p99_us"]) / 1000
    die(f"no WRK_RESULT line in wrk's output: {out[-300:]}")


def served(binary, args, env_name, duration):
    """(requests measured, req/s, p99 ms, load, the measured run's FRESH_ID: its alerts'
    fingerprints start with it) of a server on a free port, at 64 connections, posting the
    fixture as load.sh's fresh cells do (the same wrk script, a 2 s warm-up first)."""
    need("wrk")
    port = free_port()
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([binary, *args], env={**os.environ, env_name: f"127.0.0.1:{port}"},
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if server.poll() is not None:
                log.seek(0)
                die(f"{binary} exited: {log.read().decode(errors='replace')[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            die(f"{binary} did not listen within 30 s")
        env = {**os.environ, "BODY_FILE": str(FIXTURE), "FRESH": "1", "UNIQUE": "0",
               "FRESH_ID": os.urandom(4).hex(), "RUN_EPOCH": str(int(time.time()))}
        url = f"http://127.0.0.1:{port}/webhook/alertmanager"
        lua = str(ROOT / "benches/wrk-post.lua")
        subprocess.run(["wrk", "-t2", "-c64", "-d2s", "-s", lua, url], env=env,
                       capture_output=True, check=True)
        env["FRESH_ID"] = os.urandom(4).hex()
        before = loadavg()
        r = subprocess.run(["wrk", "-t2", "-c64", f"-d{duration}s", "-s", lua, url],
                           env=env, capture_output=True, text=True, check=True)
        return (*wrk_result(r.stdout), f"{before} → {loadavg()}", env["FRESH_ID"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def http_floor(binary, sync, duration):
    """The intake's floor with HTTP (benches/intake_floor): the daemon's HTTP stack and parse,
    and each alert plus one decision committed by one SQLite writer thread before the answer.
    Checks that every answered alert is stored with its decision."""
    need("sqlite3")
    with tempfile.TemporaryDirectory(prefix="aiops-floor-") as tmp:
        db = Path(tmp) / "floor.db"
        os.environ["FLOOR_SYNC"] = sync
        reqs, rps, p99, load, fresh_id = served(binary, [str(db)], "FLOOR_LISTEN", duration)
        # The measured run's alerts only (the warm-up wrote to the same file), each with its
        # decision. A request still in flight when wrk stopped may be stored but not counted.
        sql = (f"SELECT count(*), count(d.id) FROM alert_events a LEFT JOIN decisions d "
               f"ON d.alert_event_id = a.id WHERE a.fingerprint LIKE '{fresh_id}%';")
        n = subprocess.run(["sqlite3", "-separator", " ", str(db), sql],
                           capture_output=True, text=True, check=True).stdout.split()
        if len(n) != 2 or n[0] != n[1] or not 3 * reqs <= int(n[0]) <= 3 * (reqs + 64):
            die(f"the floor server stored {n} rows (alerts, with a decision) for {reqs} answered "
                f"webhooks of 3 alerts")
        return rps, p99, load


def main():
    kinds = ("http-sqlite-full", "http-sqlite-normal", "sqlite-full", "sqlite-normal", "postgres")
    stores = os.environ.get("STORES", " ".join(kinds)).split()
    for s in stores:
        if s not in kinds:
            die(f"unknown store '{s}' ({', '.join(kinds)})")
    alerts = env_int("ALERTS", 30000, 100, 10_000_000)
    batch = env_int("BATCH", 99, 1, 10_000)
    duration = env_int("DURATION", 10, 1, 300)
    rows = fixture_rows()

    names = (["baseline"] if os.environ.get("BASELINE", "1") != "0" else []) + \
        (["intake_floor"] if any(s.startswith("http-") for s in stores) else [])
    bins = examples_built(names) if names else {}
    bare = None
    if "baseline" in bins:
        _, rps, p99, load, _ = served(bins["baseline"], [], "BASELINE_LISTEN", duration)
        bare = (rps, p99, load)
    table = ["| store | batch (alerts) | alerts/s | webhooks/s (3 alerts) | ratio vs bare | p99 | load |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    if bare:
        table.append(f"| bare server, 64 connections | | | {bare[0]:.0f} req/s | 1 | {bare[1]:.1f} ms | {bare[2]} |")
    for s in stores:
        p99 = ""
        if s.startswith("http-"):
            rps, ms, load = http_floor(bins["intake_floor"], s.rsplit("-", 1)[1], duration)
            per_s, p99 = rps * 3, f"{ms:.1f} ms"
            shown_batch = f"≤ {os.environ.get('FLOOR_BATCH', '1000')}"
        elif s == "postgres":
            got = postgres_floor(rows, alerts, batch)
            if got is None:
                continue
            (per_s, load), shown_batch = got, batch
        else:
            per_s, load = sqlite_floor(rows, alerts, batch, "FULL" if s == "sqlite-full" else "NORMAL")
            shown_batch = batch
        ratio = f"{per_s / 3 / bare[0]:.3f}" if bare else ""
        table.append(f"| {s} | {shown_batch} | {per_s:.0f} | {per_s / 3:.0f} | {ratio} | {p99} | {load} |")
    text = "\n".join(table) + "\n"
    print(f"\nStore floor ({os.cpu_count()} cores):\n\n{text}")
    out = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "store-floor.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
