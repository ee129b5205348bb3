#!/usr/bin/env bash
# Runs every test of the workspace: pure unit tests, and the black-box suite that drives the real
# `pontifex` binary with the real kubectl 1.32 and 1.33. Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use (kernel tools for the dataplane suites, dig for DNS).
packages=(nftables iptables conntrack bind9-dnsutils)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: missing packages (${missing[*]}); run as root to install them" >&2
  fi
fi
for v in 1.32 1.33; do
  if [[ ! -x /usr/lib/google-cloud-sdk/bin/kubectl.$v && -z "${PONTIFEX_KUBECTL_DIR:-}" ]]; then
    echo "error: kubectl $v not found at /usr/lib/google-cloud-sdk/bin/kubectl.$v (set PONTIFEX_KUBECTL_DIR)" >&2
    exit 1
  fi
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The black-box tests each run a server (and controllers) on the same two cores; a bounded number at
# once keeps timing-sensitive ones (rolling-update limits, crash cycles) from starving.
cargo test --workspace --locked "$@" -- --test-threads="${PONTIFEX_TEST_THREADS:-4}" 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
