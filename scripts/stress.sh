#!/usr/bin/env bash
# Runs the test suite several times while busy loops compete for every core: the
# way to find a test that assumes one thing happens before another (a log line
# before a count, a server's side of a handshake before the client's). CI runs
# on an idle machine and rarely shows such races; a loaded machine shows them in
# minutes. Not part of the test command.
#
# usage: scripts/stress.sh [RUNS] [BUSY]   (defaults: 3 runs, 2 busy loops per core)
#
# Needs what scripts/test.sh installs (run that once first). Each run's nextest
# output is kept in target/stress/run-N.log; exits 1 if any run had a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
busy=${2:-$((2 * $(nproc)))}
case "$runs$busy" in *[!0-9]*) echo "usage: $0 [RUNS] [BUSY]" >&2; exit 2 ;; esac
command -v cargo-nextest >/dev/null 2>&1 || cargo nextest --version >/dev/null 2>&1 || {
  echo "error: cargo-nextest is needed (cargo install cargo-nextest)" >&2
  exit 2
}

logs=target/stress
mkdir -p "$logs"
cargo build --workspace --bins
cargo nextest run --workspace --no-run

pids=()
stop_busy() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap stop_busy EXIT
for _ in $(seq "$busy"); do
  (while :; do :; done) &
  pids+=($!)
done

failed=0
for run in $(seq "$runs"); do
  log="$logs/run-$run.log"
  if cargo nextest run --workspace --no-fail-fast --retries 0 >"$log" 2>&1; then
    echo "run $run of $runs: passed ($log)"
  else
    failed=1
    echo "run $run of $runs: FAILED ($log):"
    grep -E '^\s+FAIL ' "$log" | sort -u || true
  fi
done
exit "$failed"
