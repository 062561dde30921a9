#!/usr/bin/env bash
# Intake load test (issue 2): wrk against `aiops serve` and against the bare axum + serde_json
# baseline (benches/baseline/main.rs), one after the other with identical settings, then a summary
# of requests/s, p50/p99 latency, the aiops/baseline throughput ratio and aiops' memory.
#
# The target is a ratio, not an absolute rate, because both servers and wrk share this machine:
# absolute numbers move with core count and other load, the ratio mostly does not.
#
# Usage (from anywhere): bash benches/load.sh
# Environment: DURATION (s, default 15, at most 300), WARMUP (s, default 2), THREADS (default 2),
#              CONNECTIONS (default 64), BODY_FILE (default the grouped-3 Alertmanager fixture),
#              UNIQUE=1 (new startsAt on every request: measures durable writes, not dedup).
# Exit status: 0 when every aiops response was 2xx; 1 when aiops answered anything else or wrk
# saw socket errors against it; 2 on a setup failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-2}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
export BODY_FILE="${BODY_FILE:-$ROOT/tests/fixtures/am-0.25-firing-grouped-3.json}"
LUA="$ROOT/benches/wrk-post.lua"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

die() { echo "load.sh: $*" >&2; exit 2; }

# Bounded: a typo such as DURATION=15m must not keep a shared machine busy for long.
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 300 ]] || die "DURATION must be 1..300 seconds, got '$DURATION'"
[[ "$WARMUP" =~ ^[0-9]+$ && "$WARMUP" -ge 1 && "$WARMUP" -le 60 ]] || die "WARMUP must be 1..60 seconds, got '$WARMUP'"
[[ "$THREADS" =~ ^[0-9]+$ && "$CONNECTIONS" =~ ^[0-9]+$ ]] || die "THREADS and CONNECTIONS must be integers"
[[ -r "$BODY_FILE" ]] || die "cannot read BODY_FILE $BODY_FILE"

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
cargo build --release --bin aiops --example baseline

AIOPS_BIN="$TARGET_DIR/release/aiops"
BASELINE_BIN="$TARGET_DIR/release/examples/baseline"
[[ -x "$AIOPS_BIN" && -x "$BASELINE_BIN" ]] || die "release binaries not found under $TARGET_DIR/release"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/aiops-load.XXXXXX")"
AIOPS_PID=""
BASELINE_PID=""

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
    stop "$AIOPS_PID"
    stop "$BASELINE_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT

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

AIOPS_PORT="$(free_port)"
echo "== starting aiops serve on 127.0.0.1:$AIOPS_PORT (store in $TMP)"
(
    cd "$TMP"
    exec env AIOPS_LISTEN="127.0.0.1:$AIOPS_PORT" \
        AIOPS_DATABASE_URL="sqlite://$TMP/aiops.db?mode=rwc" \
        AIOPS_RULES_DIR="$ROOT/rules" \
        AIOPS_PLAYBOOKS_DIR="$ROOT/playbooks" \
        AIOPS_LOG=warn \
        "$AIOPS_BIN" serve
) >"$TMP/aiops.log" 2>&1 &
AIOPS_PID=$!
wait_http "http://127.0.0.1:$AIOPS_PORT/-/ready" "$AIOPS_PID" aiops "$TMP/aiops.log"
# Idle after start-up, so lazily built state (store pool, rule index) is counted.
sleep 2
AIOPS_RSS_IDLE="$(rss_mib "$AIOPS_PID")"

BASELINE_PORT="$(free_port)"
echo "== starting baseline on 127.0.0.1:$BASELINE_PORT"
BASELINE_LISTEN="127.0.0.1:$BASELINE_PORT" "$BASELINE_BIN" >"$TMP/baseline.log" 2>&1 &
BASELINE_PID=$!
for _ in $(seq 1 300); do
    alive_or_die "$BASELINE_PID" baseline "$TMP/baseline.log"
    grep -q '^listening on ' "$TMP/baseline.log" && break
    sleep 0.1
done
grep -q '^listening on ' "$TMP/baseline.log" || die "baseline did not start listening in 30 s"
sleep 2
BASELINE_RSS_IDLE="$(rss_mib "$BASELINE_PID")"

# run_wrk NAME URL SECONDS OUT: one wrk run; `timeout` bounds it even if a server hangs.
run_wrk() {
    local secs="$3"
    timeout $((secs + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency -s "$LUA" "$2" >"$4" 2>&1 ||
        { echo "load.sh: wrk against $1 failed:" >&2; cat "$4" >&2; exit 2; }
}

field() { sed -n "s/^WRK_RESULT.* $2=\([^ ]*\).*/\1/p" "$1"; }

declare -A RPS P50 P99 NON2XX SOCKERR RSS_AFTER HWM
measure() {
    local name="$1" url="$2" pid="$3"
    echo "== $name: warm-up ${WARMUP}s"
    run_wrk "$name" "$url" "$WARMUP" "$TMP/$name-warmup.txt"
    echo "== $name: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency $url"
    run_wrk "$name" "$url" "$DURATION" "$TMP/$name.txt"
    grep -v '^WRK_RESULT' "$TMP/$name.txt"
    alive_or_die "$pid" "$name" "$TMP/$name.log"
    RPS[$name]="$(field "$TMP/$name.txt" rps)"
    P50[$name]="$(awk -v us="$(field "$TMP/$name.txt" p50_us)" 'BEGIN { printf "%.2f", us / 1000 }')"
    P99[$name]="$(awk -v us="$(field "$TMP/$name.txt" p99_us)" 'BEGIN { printf "%.2f", us / 1000 }')"
    # Warm-up responses count too: a 4xx/5xx there is just as wrong.
    NON2XX[$name]=$(($(field "$TMP/$name.txt" non2xx) + $(field "$TMP/$name-warmup.txt" non2xx)))
    local e=0 k
    for k in connect read write timeout; do
        e=$((e + $(field "$TMP/$name.txt" "$k") + $(field "$TMP/$name-warmup.txt" "$k")))
    done
    SOCKERR[$name]=$e
    RSS_AFTER[$name]="$(rss_mib "$pid")"
    HWM[$name]="$(hwm_mib "$pid")"
}

URL_PATH=/webhook/alertmanager
measure aiops "http://127.0.0.1:$AIOPS_PORT$URL_PATH" "$AIOPS_PID"
measure baseline "http://127.0.0.1:$BASELINE_PORT$URL_PATH" "$BASELINE_PID"

RATIO="$(awk -v a="${RPS[aiops]}" -v b="${RPS[baseline]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')"

echo
echo "== summary: $(nproc) CPU(s), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, body $(basename "$BODY_FILE") ($(wc -c <"$BODY_FILE") bytes)"
printf '%-9s %12s %9s %9s %8s %8s %14s %14s %13s\n' server 'req/s' 'p50 ms' 'p99 ms' non-2xx sock-err 'idle RSS MiB' 'after RSS MiB' 'peak RSS MiB'
printf '%-9s %12s %9s %9s %8s %8s %14s %14s %13s\n' aiops "${RPS[aiops]}" "${P50[aiops]}" "${P99[aiops]}" \
    "${NON2XX[aiops]}" "${SOCKERR[aiops]}" "$AIOPS_RSS_IDLE" "${RSS_AFTER[aiops]}" "${HWM[aiops]}"
printf '%-9s %12s %9s %9s %8s %8s %14s %14s %13s\n' baseline "${RPS[baseline]}" "${P50[baseline]}" "${P99[baseline]}" \
    "${NON2XX[baseline]}" "${SOCKERR[baseline]}" "$BASELINE_RSS_IDLE" "${RSS_AFTER[baseline]}" "${HWM[baseline]}"
echo "ratio aiops/baseline (req/s): $RATIO"

status=0
if [[ "${NON2XX[aiops]}" -ne 0 ]]; then
    {
        echo
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!!! aiops answered ${NON2XX[aiops]} non-2xx response(s): Alertmanager would drop 4xx"
        echo "!!! and retry 5xx. The numbers above are not a valid intake measurement."
        echo "!!! Last lines of the aiops log:"
        tail -n 20 "$TMP/aiops.log" | sed 's/^/!!!   /'
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    } >&2
    status=1
fi
if [[ "${SOCKERR[aiops]}" -ne 0 ]]; then
    echo "load.sh: WARNING: ${SOCKERR[aiops]} socket error(s) against aiops (connect/read/write/timeout)" >&2
    status=1
fi
if [[ "${NON2XX[baseline]}" -ne 0 || "${SOCKERR[baseline]}" -ne 0 ]]; then
    echo "load.sh: WARNING: the baseline had ${NON2XX[baseline]} non-2xx and ${SOCKERR[baseline]} socket errors; the ratio is suspect" >&2
fi
exit "$status"
