#!/usr/bin/env bash
# Pod start latency, create → Ready, for 100 pods on a 2-node lab (`pontifex up --nodes 2`): all at
# once and one at a time. Figures (Markdown) go to bench/results/pod-start-latest.md and stdout.
# Root only. `PODS=N` changes the count; PROFILE=debug uses the debug build; KEEP=1 keeps the agent logs.
set -euo pipefail
source "$(dirname "$0")/lab-common.sh"
trap lab_down EXIT

mkdir -p bench/results
out=bench/results/pod-start-latest.md
lab_up pbs 2
{
    echo "# pod start latency (bench/pod-start.sh)"
    echo
    machine_header
    echo "- lab: \`pontifex up --nodes 2\` (host-gw), pods run the built-in server, no probes"
    echo "- command: bench/pod-start.sh (PODS=${PODS:-100})"
    echo
    "$node_bench" pod-start --kubeconfig "$KUBECONFIG" --pods "${PODS:-100}" --mode both
} | tee "$out.tmp"
mv "$out.tmp" "$out"
echo "written to $out" >&2
