#!/usr/bin/env bash
# Intake load test (issues 2 and 20): wrk against `aiops serve` and against the bare axum +
# serde_json baseline (benches/baseline/main.rs), cell by cell with identical settings, then a
# summary of requests/s, p50/p99 latency, the aiops/baseline throughput ratio, machine load and
# aiops' memory, as a markdown table on stdout and in $RESULTS.
#
# The target is a ratio, not an absolute rate, because both servers and wrk share this machine:
# absolute numbers move with core count and other load, the ratio mostly does not. So every aiops
# cell runs right after a baseline cell with the same connections, in the same run.
#
# Usage (from anywhere): bash benches/load.sh
#   With no environment this is the dedup-path run it always was: the same grouped-3 webhook on
#   every request, SQLite (default durability, FULL), 64 connections.
#   FRESH=1 DURATION=15 bash benches/load.sh     fresh alerts, 8/64/256 connections, all 3 stores
#
# Environment:
#   FRESH=1        every alert of every request is new (fingerprint and startsAt rewritten per
#                  request by benches/wrk-post.lua, from a random per-run prefix), so each request
#                  pays for a durable store write; the run fails if the daemon counts a duplicate.
#                  UNIQUE=1 is the older name and means the same.
#   CONNECTIONS    list of wrk connection counts, 2..10000, one cell each (default "64"; "8 64 256"
#                  with FRESH=1)
#   STORES         list out of sqlite-full, sqlite-normal, postgres (default "sqlite-full"; all
#                  three with FRESH=1; may be empty to run only the MEMORY_ALERTS step).
#                  sqlite-*: one daemon, store in a temp dir, AIOPS_SQLITE_SYNCHRONOUS=full|normal.
#                  postgres: a fresh database (dropped at exit) shared by two aiops replicas, the
#                  load split over them (two wrk at once, half the connections each: req/s summed,
#                  the worse p50/p99 reported). Skipped with a message when pg_isready fails,
#                  unless CI=true (then a setup failure).
#   PGHOST, PGPORT, PGUSER   where PostgreSQL is (default 127.0.0.1, 5432, postgres; trust auth)
#   MEMORY_ALERTS  N > 0: after the matrix, a fresh SQLite (FULL) daemon receives fresh alerts
#                  until its aiops_alerts_received_total reaches N (at most 300 s), then its RSS
#                  is reported (default 0: off)
#   DURATION       seconds per measured cell, 1..300 (default 15); WARMUP 1..60 (default 2)
#   THREADS        wrk threads per cell (default 2; split between the two wrk of a postgres cell)
#   BODY_FILE      the webhook to post (default the grouped-3 Alertmanager fixture)
#   AIOPS_BIN      an aiops binary to measure instead of building this checkout's (e.g. an older
#                  commit's, to compare before and after on the same machine)
#   RESULTS        where the markdown summary goes (default $CARGO_TARGET_DIR or target/, load-results.md)
# Exit status: 0 when every aiops response was 2xx; 1 when aiops answered anything else, wrk saw
# socket errors against it, or (FRESH=1) a replica counted a duplicate; 2 on a setup failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() { echo "load.sh: $*" >&2; exit 2; }

FRESH="${FRESH:-}"
UNIQUE="${UNIQUE:-}"
[[ "$FRESH" =~ ^[01]?$ ]] || die "FRESH must be 1 or 0, got '$FRESH'"
[[ "$UNIQUE" =~ ^[01]?$ ]] || die "UNIQUE (the older name of FRESH) must be 1 or 0, got '$UNIQUE'"
if [[ "$FRESH" == 1 || "$UNIQUE" == 1 ]]; then MODE=fresh; else MODE=dedup; fi
[[ -z "${PEER:-}" ]] || die "PEER='$PEER': no peer server is supported (prometheus-am-executor is not wired in; see benches/README.md)"

DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-2}"
THREADS="${THREADS:-2}"
if [[ "$MODE" == fresh ]]; then
    CONNECTIONS="${CONNECTIONS-8 64 256}"
    STORES="${STORES-sqlite-full sqlite-normal postgres}"
else
    CONNECTIONS="${CONNECTIONS-64}"
    STORES="${STORES-sqlite-full}"
fi
MEMORY_ALERTS="${MEMORY_ALERTS:-0}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
export BODY_FILE="${BODY_FILE:-$ROOT/tests/fixtures/am-0.25-firing-grouped-3.json}"
LUA="$ROOT/benches/wrk-post.lua"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RESULTS="${RESULTS:-$TARGET_DIR/load-results.md}"
URL_PATH=/webhook/alertmanager

# Bounded: a typo such as DURATION=15m must not keep a shared machine busy for long.
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 300 ]] || die "DURATION must be 1..300 seconds, got '$DURATION'"
[[ "$WARMUP" =~ ^[0-9]+$ && "$WARMUP" -ge 1 && "$WARMUP" -le 60 ]] || die "WARMUP must be 1..60 seconds, got '$WARMUP'"
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 && "$THREADS" -le 16 ]] || die "THREADS must be 1..16, got '$THREADS'"
[[ "$MEMORY_ALERTS" =~ ^[0-9]+$ && "$MEMORY_ALERTS" -le 10000000 ]] || die "MEMORY_ALERTS must be 0..10000000, got '$MEMORY_ALERTS'"
read -r -a CONN_LIST <<<"$CONNECTIONS"
read -r -a STORE_LIST <<<"$STORES"
[[ ${#CONN_LIST[@]} -ge 1 ]] || die "CONNECTIONS is empty"
for c in "${CONN_LIST[@]}"; do
    [[ "$c" =~ ^[0-9]+$ && "$c" -ge 2 && "$c" -le 10000 ]] || die "each of CONNECTIONS must be 2..10000, got '$c'"
done
for s in "${STORE_LIST[@]}"; do
    case "$s" in
        sqlite-full | sqlite-normal | postgres) ;;
        *) die "unknown store '$s' in STORES (known: sqlite-full sqlite-normal postgres)" ;;
    esac
done
[[ ${#STORE_LIST[@]} -ge 1 || "$MEMORY_ALERTS" -gt 0 ]] || die "STORES is empty and MEMORY_ALERTS is 0: nothing to run"
[[ -r "$BODY_FILE" ]] || die "cannot read BODY_FILE $BODY_FILE"
mkdir -p "$(dirname "$RESULTS")" || die "cannot create the directory of RESULTS ($RESULTS)"

# PostgreSQL: skipped with a message when not reachable, except in CI where a missing service is a
# broken setup rather than a reason to measure less.
if [[ " ${STORE_LIST[*]} " == *" postgres "* ]]; then
    if ! command -v psql >/dev/null 2>&1 || ! pg_isready -q -h "$PGHOST" -p "$PGPORT" -t 5; then
        if [[ "${CI:-}" == true ]]; then
            die "STORES has postgres but PostgreSQL at $PGHOST:$PGPORT is not ready (pg_isready/psql) and CI=true"
        fi
        echo "== SKIPPING postgres: PostgreSQL at $PGHOST:$PGPORT is not ready (pg_isready failed or psql missing)" >&2
        kept=()
        for s in "${STORE_LIST[@]}"; do [[ "$s" == postgres ]] || kept+=("$s"); done
        STORE_LIST=("${kept[@]+"${kept[@]}"}")
        [[ ${#STORE_LIST[@]} -ge 1 || "$MEMORY_ALERTS" -gt 0 ]] || die "postgres was the only store and it is skipped: nothing to run"
    fi
fi

if ! command -v wrk >/dev/null 2>&1; then
    echo "== installing wrk"
    # apt-cache knows nothing before the first update on a fresh machine.
    if ! apt-get install -y wrk >/dev/null 2>&1; then
        apt-get update >/dev/null
        apt-get install -y wrk >/dev/null
    fi
    command -v wrk >/dev/null 2>&1 || die "wrk is still missing after apt-get install"
fi

echo "== building release binaries"
if [[ -n "${AIOPS_BIN:-}" ]]; then
    # Another build of aiops (an older commit, for a before/after comparison in one run).
    [[ -x "$AIOPS_BIN" ]] || die "AIOPS_BIN $AIOPS_BIN is not an executable"
    cargo build --release --example baseline || die "cargo build failed"
else
    cargo build --release --bin aiops --example baseline || die "cargo build failed"
    AIOPS_BIN="$TARGET_DIR/release/aiops"
fi
BASELINE_BIN="$TARGET_DIR/release/examples/baseline"
[[ -x "$AIOPS_BIN" && -x "$BASELINE_BIN" ]] || die "release binaries not found under $TARGET_DIR/release"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/aiops-load.XXXXXX")"
SERVER_PIDS=() # every server this script started, stopped at exit
PG_DBS=()      # every database this script created, dropped at exit
WRK_PIDS=()    # wrk processes running right now

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -c "$1"; }

# shellcheck disable=SC2317  # called from the EXIT trap, which shellcheck cannot follow
stop() {
    local pid="$1"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    # The daemon drains on SIGTERM; give it a moment, then make sure it is gone.
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317
cleanup() {
    local p d
    for p in "${WRK_PIDS[@]+"${WRK_PIDS[@]}"}"; do stop "$p"; done
    for p in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do stop "$p"; done
    for d in "${PG_DBS[@]+"${PG_DBS[@]}"}"; do
        psql_admin "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 ||
            echo "load.sh: could not drop database $d; drop it by hand" >&2
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# A port nothing listens on right now. Racy in theory; on loopback for a few seconds it is fine,
# and it needs nothing beyond bash.
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# Resident memory in MiB from /proc (the figure `ps` and Kubernetes' working set start from).
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }

alive_or_die() {
    local pid="$1" name="$2" log="$3"
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "load.sh: $name exited; last lines of its log:" >&2
        tail -n 30 "$log" >&2 || true
        exit 2
    fi
}

wait_http() {
    local url="$1" pid="$2" name="$3" log="$4"
    for _ in $(seq 1 300); do
        alive_or_die "$pid" "$name" "$log"
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    echo "load.sh: $name not ready at $url after 30 s; last lines of its log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 2
}

# A counter from a daemon's /metrics, summed over its labels (0 when absent).
metric() {
    local port="$1" name="$2" text
    text="$(curl -sf --max-time 5 "http://127.0.0.1:$port/metrics")" || die "cannot read /metrics from aiops on port $port"
    awk -v m="$name" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f", s }' <<<"$text"
}

# start_aiops NAME DATABASE_URL SYNCHRONOUS: sets STARTED_PID and STARTED_PORT.
start_aiops() {
    local name="$1" url="$2" sync="$3" port
    port="$(free_port)"
    mkdir -p "$TMP/$name"
    echo "== starting aiops $name on 127.0.0.1:$port"
    (
        cd "$TMP/$name"
        exec env AIOPS_LISTEN="127.0.0.1:$port" \
            AIOPS_DATABASE_URL="$url" \
            AIOPS_SQLITE_SYNCHRONOUS="$sync" \
            AIOPS_RULES_DIR="$ROOT/rules" \
            AIOPS_PLAYBOOKS_DIR="$ROOT/playbooks" \
            AIOPS_LOG=warn \
            "$AIOPS_BIN" serve
    ) >"$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    STARTED_PORT="$port"
    SERVER_PIDS+=("$STARTED_PID")
    wait_http "http://127.0.0.1:$port/-/ready" "$STARTED_PID" "aiops $name" "$TMP/$name.log"
}

BASELINE_PORT="$(free_port)"
echo "== starting baseline on 127.0.0.1:$BASELINE_PORT"
BASELINE_LISTEN="127.0.0.1:$BASELINE_PORT" "$BASELINE_BIN" >"$TMP/baseline.log" 2>&1 &
BASELINE_PID=$!
SERVER_PIDS+=("$BASELINE_PID")
for _ in $(seq 1 300); do
    alive_or_die "$BASELINE_PID" baseline "$TMP/baseline.log"
    grep -q '^listening on ' "$TMP/baseline.log" && break
    sleep 0.1
done
grep -q '^listening on ' "$TMP/baseline.log" || die "baseline did not start listening in 30 s"
sleep 2
BASELINE_RSS_IDLE="$(rss_mib "$BASELINE_PID")"

# Fresh mode: every wrk process gets its own fingerprint prefix, this run's random 6 hex digits
# and the process's number in the run, so no two of them (warm-ups included) ever collide.
RUN_PREFIX="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
RUN_EPOCH="$(date +%s)"
WRK_SEQ=0
WRK_DIR="$TMP/wrk"
mkdir -p "$WRK_DIR"

# start_wrk OUT SECONDS CONNECTIONS THREADS URL: one wrk in the background (pid appended to
# WRK_PIDS); `timeout` bounds it even if a server hangs.
start_wrk() {
    local out="$1" secs="$2" conns="$3" threads="$4" url="$5" id
    [[ "$WRK_SEQ" -le 255 ]] || die "more than 256 wrk processes in one run: fingerprint prefixes would repeat"
    id="$RUN_PREFIX$(printf '%02x' "$WRK_SEQ")"
    WRK_SEQ=$((WRK_SEQ + 1))
    FRESH="$([[ "$MODE" == fresh ]] && echo 1 || echo 0)" UNIQUE=0 FRESH_ID="$id" RUN_EPOCH="$RUN_EPOCH" \
        timeout $((secs + 30)) wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$LUA" "$url" >"$out" 2>&1 &
    WRK_PIDS+=($!)
}

# wait_wrk NAME: waits for every running wrk; any failure is a setup failure.
wait_wrk() {
    local p failed=0
    for p in "${WRK_PIDS[@]}"; do wait "$p" || failed=1; done
    WRK_PIDS=()
    if [[ "$failed" -ne 0 ]]; then
        echo "load.sh: wrk against $1 failed:" >&2
        cat "$WRK_DIR"/current-* >&2 || true
        exit 2
    fi
}

field() { sed -n "s/^WRK_RESULT.* $2=\([^ ]*\).*/\1/p" "$1"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

# run_load NAME SECONDS CONNECTIONS URL...: the connections split over one wrk per URL, all at
# once; leaves their outputs in $WRK_DIR/current-*.
run_load() {
    local name="$1" secs="$2" conns="$3" n i c t
    shift 3
    n=$#
    rm -f "$WRK_DIR"/current-*
    i=0
    for url in "$@"; do
        c=$((conns / n + (i < conns % n ? 1 : 0)))
        t=$((THREADS / n > 0 ? THREADS / n : 1))
        t=$((t < c ? t : c))
        start_wrk "$WRK_DIR/current-$i" "$secs" "$c" "$t" "$url"
        i=$((i + 1))
    done
    wait_wrk "$name"
}

# Results, one row per cell.
ROWS=0
declare -a R_STORE R_CONNS R_SERVER R_RPS R_P50 R_P99 R_RATIO R_NON2XX R_SOCK R_LOAD R_RSS R_RECV R_DUP
STATUS=0

# cell STORE CONNECTIONS SERVER "PID..." "PORT..." LOG URL...: warm-up, measurement, one result
# row. SERVER is aiops or baseline; for aiops the ports are read for the alert counters.
cell() {
    local store="$1" conns="$2" server="$3" pids="$4" ports="$5" log="$6"
    shift 6
    local name="$server-$store-c$conns" f rps=0 p50=0 p99=0 non2xx=0 sock=0 before after k
    local recv_before=0 dup_before=0 recv=0 dup=0 p rss=""
    if [[ "$server" == aiops ]]; then
        for p in $ports; do
            recv_before=$((recv_before + $(metric "$p" aiops_alerts_received_total)))
            dup_before=$((dup_before + $(metric "$p" aiops_alerts_duplicate_total)))
        done
    fi
    echo "== $name: warm-up ${WARMUP}s"
    run_load "$name" "$WARMUP" "$conns" "$@"
    for f in "$WRK_DIR"/current-*; do
        non2xx=$((non2xx + $(field "$f" non2xx)))
        for k in connect read write timeout; do sock=$((sock + $(field "$f" "$k"))); done
        # Warm-up reports are not printed; what went wrong in one is.
        grep -E '^ *(Socket errors|Non-2xx)' "$f" | sed "s/^ */load.sh: $name warm-up: /" >&2 || true
    done
    before="$(loadavg)"
    echo "== $name: wrk -t$THREADS -c$conns -d${DURATION}s --latency over $# URL(s): $*"
    run_load "$name" "$DURATION" "$conns" "$@"
    after="$(loadavg)"
    for f in "$WRK_DIR"/current-*; do
        grep -v '^WRK_RESULT' "$f"
        rps="$(awk -v a="$rps" -v b="$(field "$f" rps)" 'BEGIN { printf "%.2f", a + b }')"
        p50="$(awk -v a="$p50" -v b="$(field "$f" p50_us)" 'BEGIN { print (b > a ? b : a) }')"
        p99="$(awk -v a="$p99" -v b="$(field "$f" p99_us)" 'BEGIN { print (b > a ? b : a) }')"
        non2xx=$((non2xx + $(field "$f" non2xx)))
        for k in connect read write timeout; do sock=$((sock + $(field "$f" "$k"))); done
    done
    for p in $pids; do
        alive_or_die "$p" "$name" "$log"
        rss+="${rss:+, }$(rss_mib "$p")/$(hwm_mib "$p")"
    done
    if [[ "$server" == aiops ]]; then
        for p in $ports; do
            recv=$((recv + $(metric "$p" aiops_alerts_received_total)))
            dup=$((dup + $(metric "$p" aiops_alerts_duplicate_total)))
        done
        recv=$((recv - recv_before))
        dup=$((dup - dup_before))
    fi
    ROWS=$((ROWS + 1))
    R_STORE[ROWS]="$store"
    R_CONNS[ROWS]="$conns"
    R_SERVER[ROWS]="$server"
    R_RPS[ROWS]="$rps"
    R_P50[ROWS]="$(ms "$p50")"
    R_P99[ROWS]="$(ms "$p99")"
    R_NON2XX[ROWS]="$non2xx"
    R_SOCK[ROWS]="$sock"
    R_LOAD[ROWS]="$before → $after"
    R_RSS[ROWS]="$rss"
    R_RECV[ROWS]="$( [[ "$server" == aiops ]] && echo "$recv" || echo "")"
    R_DUP[ROWS]="$( [[ "$server" == aiops ]] && echo "$dup" || echo "")"
    R_RATIO[ROWS]=""
}

# check_aiops ROW IDLE_RSS LOG...: the exit-status contract for one aiops row.
check_aiops() {
    local r="$1" idle="$2" log
    shift 2
    if [[ "${R_NON2XX[r]}" -ne 0 ]]; then
        {
            echo
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            echo "!!! aiops (${R_STORE[r]}, ${R_CONNS[r]} connections) answered ${R_NON2XX[r]} non-2xx response(s):"
            echo "!!! Alertmanager would drop 4xx and retry 5xx. Not a valid intake measurement."
            for log in "$@"; do
                echo "!!! Last lines of $(basename "$log"):"
                tail -n 20 "$log" | sed 's/^/!!!   /'
            done
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        } >&2
        STATUS=1
    fi
    if [[ "${R_SOCK[r]}" -ne 0 ]]; then
        echo "load.sh: WARNING: ${R_SOCK[r]} socket error(s) against aiops (${R_STORE[r]}, ${R_CONNS[r]} connections)" >&2
        STATUS=1
    fi
    if [[ "$MODE" == fresh && "${R_DUP[r]}" -ne 0 ]]; then
        {
            echo
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            echo "!!! FRESH=1 but aiops (${R_STORE[r]}) counted ${R_DUP[r]} duplicate alert(s)"
            echo "!!! (aiops_alerts_duplicate_total): some requests took the dedup path, so this"
            echo "!!! is not a fresh-alert measurement."
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        } >&2
        STATUS=1
    fi
    R_RSS[r]="idle $idle; after/peak ${R_RSS[r]}"
}

# The summary block this script printed before the matrix existed (dedup mode only, one per cell).
legacy_summary() {
    local a="$1" b="$2" idle="$3"
    echo
    echo "== summary: $(nproc) CPU(s), wrk -t$THREADS -c${R_CONNS[a]} -d${DURATION}s, body $(basename "$BODY_FILE") ($(wc -c <"$BODY_FILE") bytes), store ${R_STORE[a]}"
    printf '%-9s %12s %9s %9s %8s %8s %14s %26s\n' server 'req/s' 'p50 ms' 'p99 ms' non-2xx sock-err 'idle RSS MiB' 'after/peak RSS MiB'
    printf '%-9s %12s %9s %9s %8s %8s %14s %26s\n' aiops "${R_RPS[a]}" "${R_P50[a]}" "${R_P99[a]}" \
        "${R_NON2XX[a]}" "${R_SOCK[a]}" "$idle" "${R_RSS[a]##*after/peak }"
    printf '%-9s %12s %9s %9s %8s %8s %14s %26s\n' baseline "${R_RPS[b]}" "${R_P50[b]}" "${R_P99[b]}" \
        "${R_NON2XX[b]}" "${R_SOCK[b]}" "$BASELINE_RSS_IDLE" "${R_RSS[b]##*after/peak }"
    echo "ratio aiops/baseline (req/s): ${R_RATIO[a]}"
}

DB_SEQ=0
for store in "${STORE_LIST[@]+"${STORE_LIST[@]}"}"; do
    pids=()
    ports=()
    logs=()
    case "$store" in
        sqlite-full | sqlite-normal)
            start_aiops "$store" "sqlite://$TMP/$store.db?mode=rwc" "${store#sqlite-}"
            pids+=("$STARTED_PID")
            ports+=("$STARTED_PORT")
            logs+=("$TMP/$store.log")
            ;;
        postgres)
            db="aiops_load_${RUN_PREFIX}_$DB_SEQ"
            DB_SEQ=$((DB_SEQ + 1))
            echo "== creating database $db on $PGHOST:$PGPORT"
            PG_DBS+=("$db")
            psql_admin "CREATE DATABASE \"$db\"" || die "cannot create database $db as $PGUSER on $PGHOST:$PGPORT"
            # One after the other: the first migrates, the second finds the schema current.
            for replica in 1 2; do
                start_aiops "postgres-$replica" "postgres://$PGUSER@$PGHOST:$PGPORT/$db" full
                pids+=("$STARTED_PID")
                ports+=("$STARTED_PORT")
                logs+=("$TMP/postgres-$replica.log")
            done
            ;;
    esac
    # Idle after start-up, so lazily built state (store pool, rule index) is counted.
    sleep 2
    idle=""
    for p in "${pids[@]}"; do idle+="${idle:+, }$(rss_mib "$p")"; done
    urls=()
    base_urls=()
    for p in "${ports[@]}"; do
        urls+=("http://127.0.0.1:$p$URL_PATH")
        base_urls+=("http://127.0.0.1:$BASELINE_PORT$URL_PATH")
    done
    for conns in "${CONN_LIST[@]}"; do
        cell "$store" "$conns" baseline "$BASELINE_PID" "" "$TMP/baseline.log" "${base_urls[@]}"
        b=$ROWS
        cell "$store" "$conns" aiops "${pids[*]}" "${ports[*]}" "${logs[0]}" "${urls[@]}"
        a=$ROWS
        R_RSS[b]="idle $BASELINE_RSS_IDLE; after/peak ${R_RSS[b]}"
        R_RATIO[a]="$(awk -v a="${R_RPS[a]}" -v b="${R_RPS[b]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')"
        check_aiops "$a" "$idle" "${logs[@]}"
        if [[ "${R_NON2XX[b]}" -ne 0 || "${R_SOCK[b]}" -ne 0 ]]; then
            echo "load.sh: WARNING: the baseline had ${R_NON2XX[b]} non-2xx and ${R_SOCK[b]} socket errors; the ratio is suspect" >&2
        fi
        [[ "$MODE" == dedup ]] && legacy_summary "$a" "$b" "$idle"
    done
    for p in "${pids[@]}"; do stop "$p"; done
done

# Memory after MEMORY_ALERTS fresh alerts: a new SQLite (FULL, the default) daemon, fresh alerts
# at 64 connections until its received counter reaches the goal, then its RSS once settled.
MEM_LINE=""
if [[ "$MEMORY_ALERTS" -gt 0 ]]; then
    start_aiops memory "sqlite://$TMP/memory.db?mode=rwc" full
    mem_pid="$STARTED_PID"
    mem_port="$STARTED_PORT"
    sleep 2
    mem_idle="$(rss_mib "$mem_pid")"
    echo "== memory: fresh alerts into aiops until it has received $MEMORY_ALERTS (at most 300 s)"
    saved_mode="$MODE"
    MODE=fresh
    rm -f "$WRK_DIR"/current-*
    start_wrk "$WRK_DIR/current-memory" 300 64 "$THREADS" "http://127.0.0.1:$mem_port$URL_PATH"
    MODE="$saved_mode"
    mem_wrk="${WRK_PIDS[0]}"
    received=0
    while kill -0 "$mem_wrk" 2>/dev/null; do
        received="$(metric "$mem_port" aiops_alerts_received_total)"
        [[ "$received" -ge "$MEMORY_ALERTS" ]] && break
        sleep 0.5
    done
    # SIGINT (forwarded by `timeout`) makes wrk stop and still print its report, non-2xx included.
    kill -INT "$mem_wrk" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$mem_wrk" 2>/dev/null || break
        sleep 0.1
    done
    stop "$mem_wrk"
    WRK_PIDS=()
    mem_non2xx="$(field "$WRK_DIR/current-memory" non2xx)"
    mem_sock=0
    for k in connect read write timeout; do mem_sock=$((mem_sock + $(field "$WRK_DIR/current-memory" "$k"))); done
    if [[ -z "$mem_non2xx" ]]; then
        echo "load.sh: the memory step's wrk printed no report:" >&2
        cat "$WRK_DIR/current-memory" >&2
        exit 2
    fi
    if [[ "$mem_non2xx" -ne 0 || "$mem_sock" -ne 0 ]]; then
        echo "load.sh: the memory step's aiops answered $mem_non2xx non-2xx and had $mem_sock socket error(s)" >&2
        STATUS=1
    fi
    alive_or_die "$mem_pid" "aiops memory" "$TMP/memory.log"
    sleep 2
    received="$(metric "$mem_port" aiops_alerts_received_total)"
    mem_dup="$(metric "$mem_port" aiops_alerts_duplicate_total)"
    MEM_LINE="| memory | sqlite-full, 64 connections | aiops received $received new alerts (goal $MEMORY_ALERTS), duplicates $mem_dup, non-2xx $mem_non2xx | RSS idle $mem_idle MiB, after $(rss_mib "$mem_pid") MiB, peak $(hwm_mib "$mem_pid") MiB |"
    if [[ "$received" -lt "$MEMORY_ALERTS" ]]; then
        echo "load.sh: WARNING: aiops received only $received of $MEMORY_ALERTS alerts in 300 s; the memory figure is for fewer alerts" >&2
        STATUS=1
    fi
    if [[ "$mem_dup" -ne 0 ]]; then
        echo "load.sh: the memory step's daemon counted $mem_dup duplicate(s) of fresh alerts" >&2
        STATUS=1
    fi
    stop "$mem_pid"
fi

{
    echo "# aiops intake load test"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU(s), mode $MODE ($([[ "$MODE" == fresh ]] && echo "every alert new" || echo "the same webhook every time: dedup path")),"
    echo "wrk ${DURATION}s per cell after ${WARMUP}s warm-up, $THREADS thread(s) per cell, body $(basename "$BODY_FILE") ($(wc -c <"$BODY_FILE") bytes)."
    echo "Latencies in ms; for postgres (two replicas, two wrk) req/s is the sum and p50/p99 the worse of the two."
    echo "New alerts and duplicates: aiops_alerts_received_total (alerts recorded as new) and aiops_alerts_duplicate_total, during the cell (warm-up included), all replicas."
    echo "RSS in MiB, per replica: idle after start, then after the cell / peak (VmHWM). Load: 1-minute loadavg before → after the cell."
    echo
    if [[ "$ROWS" -gt 0 ]]; then
        echo "| store | conns | server | req/s | p50 | p99 | ratio vs bare | non-2xx | sock err | new alerts | duplicates | load | RSS |"
        echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
        for ((r = 1; r <= ROWS; r++)); do
            echo "| ${R_STORE[r]} | ${R_CONNS[r]} | ${R_SERVER[r]} | ${R_RPS[r]} | ${R_P50[r]} | ${R_P99[r]} | ${R_RATIO[r]} | ${R_NON2XX[r]} | ${R_SOCK[r]} | ${R_RECV[r]} | ${R_DUP[r]} | ${R_LOAD[r]} | ${R_RSS[r]} |"
        done
    fi
    if [[ -n "$MEM_LINE" ]]; then
        echo
        echo "| step | setup | result | memory |"
        echo "| --- | --- | --- | --- |"
        echo "$MEM_LINE"
    fi
} >"$TMP/results.md"
echo
cat "$TMP/results.md"
cp "$TMP/results.md" "$RESULTS"
echo
echo "== written to $RESULTS"
exit "$STATUS"
