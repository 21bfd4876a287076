#!/usr/bin/env bash
# pictl's benchmark on the lab, one command (as root):
#   tests/lab/bench.sh [--nodes 3,10,25,50] [--concurrency 8,32] [--runs 3]
#                      [--debug | --pictl BIN] [--pi] [--no-bootstrap] [--id K] [--json FILE]
# For each node count: a fresh lab, a first bootstrap (artifacts cached on the
# controller), no-op re-runs at each concurrency, `pictl status`; wall time,
# the controller's CPU and peak RSS, the nodes' CPU per node (the lab's
# per-node cgroups), per-phase times. Prints a table and the ratio of the
# largest no-op to the 3-node one; writes JSON (default .lab-K/bench.json).
# Release build unless --debug (what users run). The lab instance is
# PICTL_LAB_ID or --id (default 4); it is brought down at the end.
# Figures, not assertions: run it on a quiet machine (the load is recorded).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
profile=release
args=()
json=""
pictl=""
id=${PICTL_LAB_ID:-4}
while [ $# -gt 0 ]; do
    case "$1" in
    --debug) profile=debug; shift ;;
    --pictl) pictl=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --id) id=$2; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
    esac
done
export PICTL_LAB_ID=$id
target=${CARGO_TARGET_DIR:-$root/target}
if [ -z "$pictl" ]; then
    if [ "$profile" = release ]; then
        cargo build --quiet --release -p pictl -p pictl-agent
    else
        cargo build --quiet -p pictl -p pictl-agent
    fi
    pictl=$target/$profile/pictl
fi
dir=$(tests/lab/lab env | sed -n 's/^LAB_DIR=//p' | tr -d "'\"")
mkdir -p "$dir"
# The K3s mirror for the lab (the simulator; built once).
# Always: a mirror left by an earlier checkout holds an older simulator
# (mirror.sh rewrites only what changed).
tests/k3s-sim/mirror.sh "$dir/mirror" >/dev/null
export PICTL_CACHE_DIR="$dir/bench-cache"
exec python3 tests/lab/bench.py --id "$id" --pictl "$pictl" \
    --json "${json:-$dir/bench.json}" "${args[@]}"
