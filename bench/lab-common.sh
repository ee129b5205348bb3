# Shared by bench/pod-start.sh and bench/netperf.sh (sourced, not run): build, machine header, and a
# lab (`pontifex up --nodes N`) that is always taken down again.
#
# PROFILE=release (default) or PROFILE=debug picks the build; figures say which.

cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
profile="${PROFILE:-release}"
if [ "$(id -u)" != 0 ]; then
    echo "the lab needs root (network namespaces)" >&2
    exit 1
fi
if [ "$profile" = release ]; then
    cargo build --release -p pontifex -p node-bench
else
    cargo build -p pontifex -p node-bench
fi
bin="$target/$profile"
pontifex="$bin/pontifex"
node_bench="$bin/node-bench"

machine_header() {
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), build: $profile"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

lab_dir=""
up_pid=""
lab_prefix=""

# lab_up PREFIX NODES [extra up flags...]: starts the lab and waits for its nodes to be Ready.
lab_up() {
    lab_prefix=$1
    local nodes=$2
    shift 2
    lab_dir=$(mktemp -d /tmp/pontifex-bench.XXXXXX)
    "$pontifex" up --data-dir "$lab_dir/data" --secure-port 0 --lab-prefix "$lab_prefix" \
        --nodes "$nodes" "$@" >"$lab_dir/up.log" 2>&1 &
    up_pid=$!
    export KUBECONFIG="$lab_dir/data/kubeconfig"
    local deadline=$((SECONDS + 60))
    until [ -s "$KUBECONFIG" ] &&
        [ "$(kubectl get nodes --no-headers 2>/dev/null | grep -c ' Ready ')" = "$nodes" ]; do
        if ((SECONDS > deadline)); then
            echo "the lab did not come up; its log:" >&2
            cat "$lab_dir/up.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

# lab_down: stops `up` and removes the lab; KEEP=1 keeps the data directory (agent logs) for a look.
lab_down() {
    if [ -n "$up_pid" ]; then
        kill "$up_pid" 2>/dev/null || true
        wait "$up_pid" 2>/dev/null || true
        up_pid=""
    fi
    if [ -n "$lab_dir" ]; then
        "$pontifex" down --lab-prefix "$lab_prefix" --data-dir "$lab_dir/data" >/dev/null 2>&1 || true
        if [ "${KEEP:-0}" = 1 ]; then
            echo "lab data kept in $lab_dir" >&2
        else
            rm -rf "$lab_dir"
        fi
        lab_dir=""
    fi
}
