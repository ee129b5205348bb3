#!/usr/bin/env bash
# Kernel proxy benchmarks (root): rule programming (nft vs iptables-restore of kube-proxy's layout,
# full sync and one changed endpoint) and the data path (new connections through a ClusterIP vs
# direct to the pod), each in throw-away network namespaces that the binary deletes on exit.
# Extra arguments: PROXY_RULES_ARGS / PROXY_DATAPATH_ARGS (e.g. PROXY_RULES_ARGS="--services 1000").
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
[ "$(id -u)" = 0 ] || { echo "proxy.sh needs root (network namespaces, nft, iptables)" >&2; exit 1; }
for t in nft iptables-restore iptables-legacy-restore ip; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
cargo build --release -p proxy-bench
bin="$target/release/proxy-bench"
out=bench/results/proxy-latest.md
mkdir -p bench/results
{
    echo "# proxy-bench $(date -u +%FT%TZ)"
    echo
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), $(nft -v), $(iptables -V), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "## Rule programming"
    # shellcheck disable=SC2086
    "$bin" rules ${PROXY_RULES_ARGS:-}
    echo
    echo "## Data path"
    # shellcheck disable=SC2086
    "$bin" datapath ${PROXY_DATAPATH_ARGS:-}
} | tee "$out"
