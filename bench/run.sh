#!/usr/bin/env bash
# The benchmark harness: tp side by side with stunnel, haproxy, nginx stream and socat,
# on loopback, with the same load generator (tp-bench); (g), tp-server's Signal relay
# against nginx set up as Signal's TLS proxy; and (h), tunnel opens across an emulated
# link with a round trip (a network namespace and TUN devices: needs root). Writes
# docs/benchmarks.md and the figures behind it, docs/benchmarks.json: commit both.
#
#   bench/run.sh            full run (3 runs per figure; about 15 minutes on 2 cores)
#   bench/run.sh --quick    smoke test: small sizes, one run (about 3 minutes)
#
# Any other option goes to `tp-bench run` (`target/release/tp-bench run --help`), e.g.
#   bench/run.sh --runs 5 --systems tp,haproxy --scenarios a,c
#   bench/run.sh --systems tp,nginx --scenarios g     the Signal relay (g) alone
#   bench/run.sh --scenarios h --rtt-ms 40            opens across a 40 ms round trip
#   bench/run.sh --rev HEAD     tp as committed at HEAD, not the working tree
#   bench/run.sh --systems tp,tp-quic --scenarios f1 --merge docs/benchmarks.json
#                               one scenario again, merged into a saved full run: what
#                               this run set out to measure replaces the saved figures,
#                               every other figure stays, and a ratio between figures of
#                               the two runs is marked † (a scenario with other sizes,
#                               or a quick run and a full one, do not merge)
#
# 1. installs the peers when missing (apt-get; needs root or sudo),
# 2. raises the open-file limit (and pid_max when too low: stunnel runs a thread per
#    connection) for the idle-tunnel scenario,
# 3. builds release binaries (tp, tp-server, tp-bench),
# 4. runs every scenario against every system, prints the table, writes the report.
#
# This is never part of scripts/test.sh or CI: it takes minutes and measures, it does
# not check.
set -euo pipefail
cd "$(dirname "$0")/.."

cmdline="bench/run.sh${*:+ $*}"
step() { printf '\n== %s ==\n' "$*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
command -v stunnel4 >/dev/null 2>&1 || need+=(stunnel4)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# (h): the emulated link (network namespace, TUN devices, the python3 forwarder).
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  step "installing peers: ${need[*]}"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# PATH may lack /usr/sbin for non-root users.
export PATH="$PATH:/usr/sbin:/sbin"

step "limits"
want_files=200000
ulimit -n "$want_files" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open files: $(ulimit -n)"
pid_max=$(cat /proc/sys/kernel/pid_max)
if [ "$pid_max" -lt 65536 ]; then
  if $SUDO sysctl -q -w kernel.pid_max=65536 >/dev/null 2>&1; then
    echo "kernel.pid_max: $pid_max -> 65536 (stunnel: one thread per connection on each side)"
  else
    echo "kernel.pid_max is $pid_max and could not be raised; stunnel may fail in (e)"
  fi
fi

# --rev REV: benchmark tp as committed at REV (a `git archive` export built in its own
# target dir) instead of the working tree; useful while the tree is mid-edit and for
# before/after comparisons. Every other option goes to tp-bench.
# `safe.directory`: as root (sudo, which (h) needs) in a checkout another user owns,
# git would refuse to read it.
git() { command git -c safe.directory="$PWD" "$@"; }
rev=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rev) rev="${2:?--rev needs a git revision}"; shift 2 ;;
    --rev=*) rev="${1#--rev=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd)"
if [ -n "$rev" ]; then
  commit="$(git rev-parse --verify "$rev^{commit}")"
  src="$target_dir/bench-src/$commit"
  step "build tp at $rev ($commit, release)"
  if [ ! -f "$src/Cargo.toml" ]; then
    mkdir -p "$src"
    git archive "$commit" | tar -x -C "$src"
  fi
  (cd "$src" && CARGO_TARGET_DIR="$target_dir/bench-rev" cargo build --release -p tp-server -p tp-client)
  tp_bin="$target_dir/bench-rev/release"
  tp_source="$commit (git archive of $rev)"
else
  step "build tp from the working tree (release)"
  cargo build --release -p tp-server -p tp-client
  tp_bin="$target_dir/release"
  tp_source="$(git describe --always --dirty --abbrev=12 2>/dev/null || echo "unknown (not a git checkout)")"
  case "$tp_source" in
    unknown*) ;;
    *-dirty) tp_source="$tp_source (working tree with uncommitted changes)" ;;
    *) tp_source="$tp_source (working tree, nothing uncommitted)" ;;
  esac
fi
step "build tp-bench (release)"
cargo build --release -p tp-bench

step "benchmark"
exec "$target_dir/release/tp-bench" run --bin-dir "$tp_bin" \
  --work-dir "$target_dir/bench" --command "$cmdline" --tp-source "$tp_source" ${args[@]+"${args[@]}"}
