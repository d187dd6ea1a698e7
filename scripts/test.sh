#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this), and what you run locally.
#
# 1. installs the real peers the end-to-end tests use when missing (OpenSSH server and
#    client, openssl, curl, nginx, dnsmasq, dig); needs root or sudo for apt-get on a fresh machine,
# 2. checks formatting, lints and the dependency rules (sans-IO crates, one rustls, no ring),
# 3. builds the binaries the e2e tests run (tp, tp-server),
# 4. runs every test with cargo-nextest (falls back to cargo test if nextest is absent).
#
# No test is skipped because a peer is missing: a missing peer is installed here, and
# the e2e harness fails loudly if it still cannot find one.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

need_pkgs=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_pkgs+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || need_pkgs+=(bind9-dnsutils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  step "installing test peers: ${need_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

step "format"
cargo fmt --all -- --check

step "dependency rules"
for crate in tp-proto policy; do
  if cargo tree -p "$crate" -e normal --prefix none | grep -Eq '^(tokio|rustls|socket2) '; then
    echo "error: $crate must stay sans-IO (no tokio, rustls or sockets in its dependencies)" >&2
    exit 1
  fi
done
if cargo tree --workspace -e normal --prefix none | grep -Eq '^ring v'; then
  echo "error: ring is in the dependency tree; tp uses aws-lc-rs only" >&2
  exit 1
fi
rustls_versions=$(cargo tree --workspace -e normal --prefix none | grep -E '^rustls v' | awk '{print $2}' | sort -u | wc -l)
if [ "$rustls_versions" -ne 1 ]; then
  echo "error: expected exactly one rustls version in the tree, found $rustls_versions" >&2
  exit 1
fi

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "build binaries for the e2e tests"
cargo build --workspace --bins

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doctests
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
