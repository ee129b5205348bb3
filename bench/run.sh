#!/usr/bin/env bash
# Build pontifex and the benchmark in release mode, run every scenario on 127.0.0.1, and write the
# figures with the machine they ran on to bench/results/latest.md (printed as well).
# Bounded: about a minute of load on the default settings. Extra arguments go to apiserver-bench
# (e.g. `bench/run.sh --only creates --seconds 1`).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

if ! command -v etcd >/dev/null; then
    # The side-by-side storage layer; Debian packages it as etcd-server.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y etcd-server >/dev/null || echo "etcd-server could not be installed; etcd is skipped" >&2
    else
        echo "etcd not found; the etcd comparison is skipped" >&2
    fi
fi

cargo build --release -p pontifex -p apiserver-bench

mkdir -p bench/results
out=bench/results/latest.md
{
    echo "# apiserver-bench run"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- disk under ${TMPDIR:-/tmp}: $(df -hT "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2, $1}')"
    echo "- etcd: $(etcd --version 2>/dev/null | head -1 || echo absent)"
    echo "- command: bench/run.sh $*"
    echo
    "$target/release/apiserver-bench" --pontifex "$target/release/pontifex" "$@"
} | tee "$out.tmp"
mv "$out.tmp" "$out"
echo "written to $out" >&2
