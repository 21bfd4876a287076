#!/usr/bin/env bash
# Prints pictl's convergence figures on a 3-node lab: wall time and SSH round
# trips per node for a first bootstrap (artifacts already cached on the
# controller) and for no-op re-runs. Figures, not assertions: machines are noisy.
#   tests/lab/bench.sh [RUNS]        (as root; uses lab instance PICTL_LAB_ID, default 4)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
runs=${1:-5}
export PICTL_LAB_ID=${PICTL_LAB_ID:-4}
lab=tests/lab/lab
dir=$(tests/lab/lab env | sed -n 's/^LAB_DIR=//p' | tr -d "'\"")
[ -n "$dir" ] || dir="$root/.lab-$PICTL_LAB_ID"
export PICTL_CACHE_DIR="$dir/bench-cache"
trap '$lab down >/dev/null 2>&1 || true' EXIT

cargo build --quiet -p pictl -p pictl-agent -p k3s-sim
pictl="$root/target/debug/pictl"

figures() { # JSON report on stdin -> one line per node
    python3 -c '
import json, sys
r = json.load(sys.stdin)
for n in r["nodes"]:
    changed = sum(1 for s in n["steps"] if s["status"] == "changed")
    print("  %-8s ssh_round_trips=%-3d changed=%-2d node_seconds=%.2f" % (n["name"], n["ssh_round_trips"], changed, n["seconds"]))
print("  wall (pictl total): %.2f s" % r["seconds"])'
}

fresh_lab() {
    $lab down >/dev/null 2>&1 || true
    $lab up 3 --pi node3 >/dev/null
    tests/k3s-sim/mirror.sh "$dir/mirror" >/dev/null
    rm -rf "$dir/state"
}

echo "== warming the controller's artifact cache (one cold bootstrap, not measured)"
fresh_lab
"$pictl" apply -i "$dir/inventory.toml" --output json 2>/dev/null >/dev/null || true

echo "== first bootstrap of 3 fresh nodes (artifacts cached; node3 is a Pi and reboots once)"
fresh_lab
start=$(date +%s.%N)
"$pictl" apply -i "$dir/inventory.toml" --output json 2>/dev/null | figures
echo "  wall (process): $(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')") s"

echo "== no-op re-runs ($runs)"
for i in $(seq 1 "$runs"); do
    start=$(date +%s.%N)
    out=$("$pictl" apply -i "$dir/inventory.toml" --output json 2>/dev/null)
    end=$(date +%s.%N)
    echo "run $i: wall (process) $(python3 -c "print(f'{$end - $start:.3f}')") s"
    echo "$out" | figures
done
