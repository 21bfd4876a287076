#!/usr/bin/env bash
# Prints first-bootstrap times with K3s at its real size (~70 MB) over a
# Wi-Fi-like controller link, without the relay (`--no-relay`: every node
# gets its own upload, as before) and with it (one upload per arch, the
# other nodes fetch from the seed over the LAN). Figures, not assertions.
#
#   tests/lab/relay-bench.sh [NODES...]      (as root; default: 3 10)
#
# Environment: PICTL_LAB_ID (default 50), RUNS per variant (2), RATE of the
# controller's link (50mbit), PAD_TO the K3s size in bytes (73400320),
# PICTL_BIN (default: a release build of this checkout).
#
# The link: a tbf qdisc on the host end of the lab bridge (pictlK), which
# shapes what the host (the controller, and nothing else) sends into the lab;
# node-to-node traffic never passes it, like a wired LAN behind a laptop on
# Wi-Fi. The qdisc is removed on exit. Every run is a fresh lab (`lab up`),
# variants interleaved; the controller's artifact cache is warm. The
# controller's bytes are the bridge's tx_bytes over the run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PICTL_LAB_ID=${PICTL_LAB_ID:-50}
runs=${RUNS:-2}
rate=${RATE:-50mbit}
pad=${PAD_TO:-73400320}
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(3 10)
lab=tests/lab/lab
bridge=pictl$PICTL_LAB_ID
dir="$root/.lab-$PICTL_LAB_ID"
[ "$PICTL_LAB_ID" != 0 ] || dir="$root/.lab"
export PICTL_CACHE_DIR="$dir/relay-bench-cache"
target=${CARGO_TARGET_DIR:-$root/target}

unshape() { tc qdisc del dev "$bridge" root 2>/dev/null || true; }
shape() { tc qdisc replace dev "$bridge" root tbf rate "$rate" burst 64kb latency 100ms; }
trap 'unshape; $lab down >/dev/null 2>&1 || true' EXIT

if [ -z "${PICTL_BIN:-}" ]; then
    cargo build --quiet --release -p pictl --bin pictl -p pictl-agent --bin pictl-agent
    PICTL_BIN=$target/release/pictl
fi
echo "pictl: $PICTL_BIN; K3s padded to $pad bytes; controller link $rate; $runs run(s) per variant"
echo "load before: $(uptime)"

fresh_lab() { # N
    $lab down >/dev/null 2>&1 || true
    $lab up "$1" >/dev/null 2>&1
    rm -rf "$dir/state"
    shape
}

# apply_once N VARIANT -> "seconds bytes"
apply_once() {
    local tx0 tx1 t0 t1 flag=()
    [ "$2" = relay ] || flag=(--no-relay)
    tx0=$(cat "/sys/class/net/$bridge/statistics/tx_bytes")
    t0=$(date +%s.%N)
    if ! "$PICTL_BIN" apply -i "$dir/inventory.toml" "${flag[@]}" --output json >"$dir/relay-bench.json" 2>"$dir/relay-bench.err"; then
        echo "apply failed ($1 nodes, $2); see $dir/relay-bench.err" >&2
        tail -5 "$dir/relay-bench.err" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    tx1=$(cat "/sys/class/net/$bridge/statistics/tx_bytes")
    echo "$(echo "$t1 - $t0" | bc) $((tx1 - tx0))"
}

fresh_lab 3
PICTL_MIRROR_PAD_TO=$pad tests/k3s-sim/mirror.sh "$dir/mirror" >/dev/null 2>&1
echo "== warming the controller's artifact cache (not measured)"
unshape
"$PICTL_BIN" apply -i "$dir/inventory.toml" --output json >/dev/null 2>&1 || true

results=()
for n in "${counts[@]}"; do
    for r in $(seq 1 "$runs"); do
        for variant in no-relay relay; do
            fresh_lab "$n"
            read -r secs bytes < <(apply_once "$n" "$variant")
            printf '%3s nodes  %-8s run %s: %7.1f s  controller sent %6.1f MB\n' \
                "$n" "$variant" "$r" "$secs" "$(echo "$bytes / 1000000" | bc -l)"
            results+=("$n $variant $secs $bytes")
        done
    done
done
unshape

echo
echo "| nodes | before (--no-relay) | after (relay) | controller sent before → after |"
echo "|---|---|---|---|"
for n in "${counts[@]}"; do
    row() { # VARIANT FIELD(3=s,4=bytes) -> "min–max"
        printf '%s\n' "${results[@]}" | awk -v n="$n" -v v="$1" -v f="$2" '
            $1 == n && $2 == v { x = (f == 4 ? $f / 1e6 : $f); if (min == "" || x < min) min = x; if (x > max) max = x }
            END { if (min == max) printf "%.1f", min; else printf "%.1f–%.1f", min, max }'
    }
    echo "| $n | $(row no-relay 3) s | $(row relay 3) s | $(row no-relay 4) → $(row relay 4) MB |"
done
echo
echo "load after: $(uptime)"
