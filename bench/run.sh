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

# CPU-seconds the whole machine has been busy (all cores), from /proc/stat.
busy_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

# Wait (up to 3 minutes) until the machine has been nearly idle for 3 s: on a shared 2-core machine a
# build next door halves every figure. Proceeds anyway after that, and the report says so.
wait_quiet() {
    local deadline=$((SECONDS + 180)) a b
    while ((SECONDS < deadline)); do
        a=$(busy_seconds); sleep 3; b=$(busy_seconds)
        if awk -v a="$a" -v b="$b" 'BEGIN { exit !((b - a) / 3 < 0.15) }'; then return 0; fi
    done
    echo "the machine did not become quiet; measuring anyway" >&2
}
wait_quiet

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
    if command -v etcd >/dev/null; then echo "- etcd: $(etcd --version | sed -n 1p)"; else echo "- etcd: absent"; fi
    # Client and servers share the cores: anything else running skews every figure.
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- command: bench/run.sh $*"
    echo
    if [ ! -x /usr/bin/time ]; then
        "$target/release/apiserver-bench" --pontifex "$target/release/pontifex" "$@"
        exit 0
    fi
    busy_before=$(busy_seconds)
    /usr/bin/time -o "$out.cpu" -f '%U %S %e' \
        "$target/release/apiserver-bench" --pontifex "$target/release/pontifex" "$@"
    busy_after=$(busy_seconds)
    # The bench waits for every server it started, so its CPU time includes theirs; whatever else the
    # machine did meanwhile ran on the same two cores as the measurement.
    read -r user sys wall <"$out.cpu"
    awk -v b="$busy_before" -v a="$busy_after" -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN {
        other = (a - b) - (u + s); if (other < 0) other = 0
        printf "_CPU during the run: %.1f s wall; the bench and its servers used %.1f CPU-s, other processes %.1f CPU-s (%.0f%% of one core on average)._\n", w, u + s, other, 100 * other / w
    }'
    rm -f "$out.cpu"
} | tee "$out.tmp"
mv "$out.tmp" "$out"
echo "written to $out" >&2
