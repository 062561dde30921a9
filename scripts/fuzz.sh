#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a bounded time each, then prints one summary line per
# target (executions, corpus size, result). Any crash, panic, hang or memory blow-up fails the
# run; its input is kept under the work directory and printed so it can be turned into a
# regression test (see README.md, "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 30 s, every target)
#
# Toolchain: the stable one, without a sanitizer (`--sanitizer none`). cargo-fuzz's coverage
# instrumentation (-Cpasses=sancov-module, -Cllvm-args=...) is stable `-C` flags; only the
# sanitizers need nightly's -Zsanitizer, and a fresh machine has no nightly (nor, maybe, a
# reachable toolchain server). What the targets look for in safe Rust (panics, overflow with
# debug assertions, hangs, OOM) libFuzzer sees without a sanitizer.
#
# Work directory (grown corpus, crash artifacts, the build), kept between runs so a rerun
# builds incrementally and fuzzes from where the last run stopped: $AIOPS_FUZZ_WORK, default
# ~/.cache/aiops-fuzz. Committed inputs are only read: fuzz/seeds/<target>/ and
# fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install --locked cargo-fuzz --version 0.13.2" >&2
  exit 1
fi

work=${AIOPS_FUZZ_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/aiops-fuzz}
mkdir -p "$work"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Release with debug assertions and overflow checks (cargo-fuzz's default, said explicitly);
# 16 codegen units: a cold build in minutes rather than tens of minutes, for a few percent of
# executions per second.
build_flags=(--fuzz-dir fuzz --sanitizer none --release --debug-assertions
  --codegen-units 16 --target-dir "$work/target")

if (($# > 0)); then
  targets=("$@")
  build_targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
  build_targets=("") # one `cargo fuzz build` builds them all
fi

# cargo never collects garbage in a target directory: each dependency or flag change adds a
# build beside the old ones (this cache reached 18 GB in a day of work). Past the limit the
# build starts over; the corpus, which is what is worth keeping, stays.
limit_gb=${AIOPS_FUZZ_TARGET_LIMIT_GB:-6}
if [[ -d $work/target ]] && (($(du -s --block-size=1G "$work/target" | cut -f1) > limit_gb)); then
  echo "the fuzz build cache is over ${limit_gb} GB; removing it ($work/target)"
  rm -rf "$work/target"
fi

started=$(date +%s)
for t in "${build_targets[@]}"; do
  if ! cargo fuzz build "${build_flags[@]}" ${t:+"$t"} >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log"
    echo "building the fuzz targets failed (log: $work/build.log)" >&2
    exit 1
  fi
done
echo "built ${#targets[@]} fuzz targets in $(($(date +%s) - started)) s"

summary=()
failed=0
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  inputs=("$corpus")
  for d in "fuzz/seeds/$t" "fuzz/regressions/$t"; do
    [[ -d $d ]] && inputs+=("$d")
  done
  log="$work/$t.log"
  echo
  echo "--- fuzzing $t for ${seconds}s (inputs: ${inputs[*]})"
  # -timeout: one input running 10 s is a hang; -rss_limit_mb: 2 GiB is a memory blow-up
  # (the daemon's whole budget is far below); -max_len: the largest seed, or 64 KiB, so YAML
  # and JSON documents of realistic size can grow.
  set +e
  cargo fuzz run "${build_flags[@]}" "$t" "${inputs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  units=$(find "$corpus" -type f | wc -l)
  if ((rc == 0)); then
    result=ok
  else
    failed=1
    result="FAILED (exit $rc)"
    echo "fuzz target $t failed; the end of its log ($log):"
    tail -n 40 "$log"
    for a in "$artifacts"*; do
      [[ -f $a ]] || continue
      echo "input $a (base64): $(base64 -w0 "$a")"
    done
  fi
  grep -E '^(INFO: seed corpus|#[0-9]+ *(INITED|DONE))' "$log" | tail -n 2 || true
  summary+=("$(printf '%-16s %12s executions  %6s corpus files  %s' "$t" "${execs:-?}" "$units" "$result")")
done

echo
echo "=== fuzz summary (${seconds}s per target, $(($(date +%s) - started)) s in all)"
printf '%s\n' "${summary[@]}"
exit "$failed"
