#!/usr/bin/env bash
# Pod-to-pod TCP throughput and round-trip latency across two lab nodes, for host-gw and for VXLAN,
# against the same two pod namespaces joined by one direct veth pair (the physical limit of this
# machine), as ratios. Throughput: iperf3 (one stream) when installed, else node-bench's bulk sender;
# latency: node-bench rr (1-byte TCP request/response, netperf's TCP_RR). All traffic stays between
# namespaces the lab made. Figures go to bench/results/netperf-latest.md and stdout. Root only.
# SECONDS_EACH (default 3) per measurement, ROUNDS (default 3, medians reported); PROFILE=debug.
set -euo pipefail
source "$(dirname "$0")/lab-common.sh"
trap lab_down EXIT

each=${SECONDS_EACH:-3}
rounds=${ROUNDS:-3}
if command -v iperf3 >/dev/null; then tput_tool=iperf3; else tput_tool=node-bench; fi
servers=()

stop_servers() {
    for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    servers=()
}

pod_ns() { # pod name → its network namespace
    local uid node
    uid=$(kubectl get pod "$1" -o jsonpath='{.metadata.uid}')
    node=$(kubectl get pod "$1" -o jsonpath='{.spec.nodeName}')
    echo "$lab_prefix-pod-$node-$uid"
}

# throughput NS_FROM NS_TO IP → Gbit/s
throughput() {
    if [ "$tput_tool" = iperf3 ]; then
        ip netns exec "$1" iperf3 -c "$3" -p 5201 -t "$each" -J |
            jq '.end.sum_received.bits_per_second / 1e9'
    else
        ip netns exec "$1" "$node_bench" bulk-client --to "$3:5202" --seconds "$each"
    fi
}

# rr NS_FROM IP → "trans/s mean p50 p99"
rr() { ip netns exec "$1" "$node_bench" rr-client --to "$2:7000" --seconds "$each"; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure BACKEND: one lab, two pods on two nodes, the pod path and the direct pair in turn.
measure() {
    local backend=$1
    lab_up pbn 2 --backend "$backend"
    for n in 1 2; do
        kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: np-$n}
spec:
  nodeName: node-$n
  terminationGracePeriodSeconds: 0
  containers: [{name: idle, image: busybox, command: [sleep, "3600"]}]
YAML
    done
    kubectl wait --for=condition=Ready pod/np-1 pod/np-2 --timeout=60s >/dev/null
    local ns_a ns_b ip_b
    ns_a=$(pod_ns np-1)
    ns_b=$(pod_ns np-2)
    ip_b=$(kubectl get pod np-2 -o jsonpath='{.status.podIP}')
    # The direct pair between the same two namespaces; it goes with them.
    ip link add pbnxa netns "$ns_a" type veth peer name pbnxb netns "$ns_b"
    ip -n "$ns_a" addr add 10.250.0.1/30 dev pbnxa
    ip -n "$ns_b" addr add 10.250.0.2/30 dev pbnxb
    ip -n "$ns_a" link set pbnxa up
    ip -n "$ns_b" link set pbnxb up
    local mtu
    mtu=$(ip -n "$ns_a" -o link show eth0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    if [ "$tput_tool" = iperf3 ]; then
        ip netns exec "$ns_b" iperf3 -s -p 5201 >/dev/null 2>&1 &
    else
        ip netns exec "$ns_b" "$node_bench" bulk-server --listen 0.0.0.0:5202 &
    fi
    servers+=($!)
    ip netns exec "$ns_b" "$node_bench" rr-server --listen 0.0.0.0:7000 &
    servers+=($!)
    sleep 0.5
    local r pod_t=() dir_t=() pod_rr=() dir_rr=()
    for ((r = 0; r < rounds; r++)); do
        pod_t+=("$(throughput "$ns_a" "$ns_b" "$ip_b")")
        dir_t+=("$(throughput "$ns_a" "$ns_b" 10.250.0.2)")
        pod_rr+=("$(rr "$ns_a" "$ip_b")")
        dir_rr+=("$(rr "$ns_a" 10.250.0.2)")
    done
    stop_servers
    local pt dt prr drr pp50 dp50 pp99 dp99
    pt=$(printf '%s\n' "${pod_t[@]}" | median)
    dt=$(printf '%s\n' "${dir_t[@]}" | median)
    prr=$(printf '%s\n' "${pod_rr[@]}" | awk '{print $1}' | median)
    drr=$(printf '%s\n' "${dir_rr[@]}" | awk '{print $1}' | median)
    pp50=$(printf '%s\n' "${pod_rr[@]}" | awk '{print $3}' | median)
    dp50=$(printf '%s\n' "${dir_rr[@]}" | awk '{print $3}' | median)
    pp99=$(printf '%s\n' "${pod_rr[@]}" | awk '{print $4}' | median)
    dp99=$(printf '%s\n' "${dir_rr[@]}" | awk '{print $4}' | median)
    awk -v b="$backend" -v mtu="$mtu" -v pt="$pt" -v dt="$dt" -v prr="$prr" -v drr="$drr" \
        -v pp50="$pp50" -v dp50="$dp50" -v pp99="$pp99" -v dp99="$dp99" 'BEGIN {
        printf "| %s (pod MTU %s) | %.2f Gbit/s | %.2f Gbit/s | **%.2f** | %.0f/s, p50 %.0f µs, p99 %.0f µs | %.0f/s, p50 %.0f µs, p99 %.0f µs | **%.2f** |\n",
            b, mtu, pt, dt, pt / dt, prr, pp50, pp99, drr, dp50, dp99, prr / drr
    }'
    lab_down
}

mkdir -p bench/results
out=bench/results/netperf-latest.md
{
    # This block is a subshell (the pipe): it cleans up its own lab.
    trap 'stop_servers; lab_down' EXIT
    echo "# pod-to-pod across nodes (bench/netperf.sh)"
    echo
    machine_header
    echo "- throughput: $tput_tool, one TCP stream, ${each} s; round trips: node-bench rr (1-byte TCP_RR), ${each} s; medians of $rounds rounds"
    echo "- lab: \`pontifex up --nodes 2 --backend B\`, pod np-1 on node-1 → pod np-2 on node-2; direct: a veth pair (MTU 1500) between the same two pod namespaces"
    echo "- command: bench/netperf.sh (PROFILE=$profile SECONDS_EACH=$each ROUNDS=$rounds)"
    echo
    echo "| backend | pod → pod throughput | direct veth | ratio | pod → pod round trips | direct veth | ratio (trans/s) |"
    echo "|---|---|---|---|---|---|---|"
    measure host-gw
    measure vxlan
} | tee "$out.tmp"
mv "$out.tmp" "$out"
echo "written to $out" >&2
