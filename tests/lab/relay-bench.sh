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
#
# AIRGAP=1: first bootstrap with `[cluster] airgap_images = true`, K3s's
# image archive padded to IMAGES_PAD_TO bytes (default 167772160, 160 MiB:
# the order of a real k3s-airgap-images-amd64.tar.zst; measure the release
# you compare with), pictl (relay) against the Ansible playbook in
# bench/ansible copying the same files (`airgap_images=true`; ansible-core
# and python3 for the nodes as bench/ansible/tools.sh sets them up).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PICTL_LAB_ID=${PICTL_LAB_ID:-50}
runs=${RUNS:-2}
rate=${RATE:-50mbit}
pad=${PAD_TO:-73400320}
airgap=${AIRGAP:-0}
images_pad=${IMAGES_PAD_TO:-167772160}
variants=(no-relay relay)
[ "$airgap" = 0 ] || variants=(pictl ansible)
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
if [ "$airgap" != 0 ]; then
    # shellcheck source=bench/ansible/tools.sh
    . "$root/bench/ansible/tools.sh"
    ansible_tools
    echo "airgap images padded to $images_pad bytes"
fi
echo "pictl: $PICTL_BIN; K3s padded to $pad bytes; controller link $rate; $runs run(s) per variant"
echo "load before: $(uptime)"

fresh_lab() { # N [VARIANT]
    $lab down >/dev/null 2>&1 || true
    $lab up "$1" >/dev/null 2>&1
    rm -rf "$dir/state"
    # The playbook's nodes need python3 (installed before the link is shaped).
    [ "${2:-}" != ansible ] || nodes_python "$lab" "$dir" "$1"
    airgap_inventory
    shape
}

# The lab's inventory with airgap_images on (pictl's AIRGAP variant).
airgap_inventory() {
    [ "$airgap" != 0 ] || return 0
    sed 's/^\[cluster\]$/[cluster]\nairgap_images = true/' "$dir/inventory.toml" >"$dir/inventory-airgap.toml"
}

# The playbook, copying what pictl installs (airgap_images=true), on N nodes.
run_ansible() { # N
    hosts_ini "$root/bench/ansible/hosts.ini" "$PICTL_LAB_ID" "$dir" "$1" \
        "$(dirname "$PICTL_BIN")/pictl-agent" "$root/agent/pictl-agent.service" airgap_images=true
    (cd "$root/bench/ansible" && "$venv/bin/ansible-playbook" site.yml)
}

# apply_once N VARIANT -> "seconds bytes"
apply_once() {
    local tx0 tx1 t0 t1 flag=() inv=$dir/inventory.toml
    [ "$2" = relay ] || [ "$2" = pictl ] || flag=(--no-relay)
    [ "$2" != pictl ] || inv=$dir/inventory-airgap.toml
    tx0=$(cat "/sys/class/net/$bridge/statistics/tx_bytes")
    t0=$(date +%s.%N)
    if [ "$2" = ansible ]; then
        if ! run_ansible "$1" >"$dir/relay-bench.json" 2>"$dir/relay-bench.err"; then
            echo "ansible failed ($1 nodes); see $dir/relay-bench.json" >&2
            tail -20 "$dir/relay-bench.json" >&2
            exit 1
        fi
    elif ! "$PICTL_BIN" apply -i "$inv" "${flag[@]}" --output json >"$dir/relay-bench.json" 2>"$dir/relay-bench.err"; then
        echo "apply failed ($1 nodes, $2); see $dir/relay-bench.err" >&2
        tail -5 "$dir/relay-bench.err" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    tx1=$(cat "/sys/class/net/$bridge/statistics/tx_bytes")
    echo "$(echo "$t1 - $t0" | bc) $((tx1 - tx0))"
}

fresh_lab 3
# (The lab's nodes are amd64: no cross builds of the simulator.)
images_env=0
[ "$airgap" = 0 ] || images_env=$images_pad
PICTL_MIRROR_CROSS=${PICTL_MIRROR_CROSS-} PICTL_MIRROR_PAD_TO=$pad PICTL_MIRROR_AIRGAP_PAD_TO=$images_env \
    tests/k3s-sim/mirror.sh "$dir/mirror" >/dev/null 2>&1
echo "== warming the controller's artifact cache (not measured)"
unshape
airgap_inventory
inv=$dir/inventory.toml
[ "$airgap" = 0 ] || inv=$dir/inventory-airgap.toml
"$PICTL_BIN" apply -i "$inv" --output json >/dev/null 2>&1 || true
if [ "$airgap" != 0 ]; then
    fresh_lab 3 ansible
    unshape
    run_ansible 3 >/dev/null 2>&1 || true
fi

results=()
for n in "${counts[@]}"; do
    for r in $(seq 1 "$runs"); do
        for variant in "${variants[@]}"; do
            fresh_lab "$n" "$variant"
            read -r secs bytes < <(apply_once "$n" "$variant")
            printf '%3s nodes  %-8s run %s: %7.1f s  controller sent %6.1f MB\n' \
                "$n" "$variant" "$r" "$secs" "$(echo "$bytes / 1000000" | bc -l)"
            results+=("$n $variant $secs $bytes")
        done
    done
done
unshape

echo
if [ "$airgap" = 0 ]; then
    echo "| nodes | before (--no-relay) | after (relay) | controller sent before → after |"
else
    echo "| nodes (airgap images) | pictl (relay) | Ansible (bench/ansible) | controller sent pictl / Ansible |"
fi
echo "|---|---|---|---|"
for n in "${counts[@]}"; do
    row() { # VARIANT FIELD(3=s,4=bytes) -> "min–max"
        printf '%s\n' "${results[@]}" | awk -v n="$n" -v v="$1" -v f="$2" '
            $1 == n && $2 == v { x = (f == 4 ? $f / 1e6 : $f); if (min == "" || x < min) min = x; if (x > max) max = x }
            END { if (min == max) printf "%.1f", min; else printf "%.1f–%.1f", min, max }'
    }
    if [ "$airgap" = 0 ]; then
        echo "| $n | $(row no-relay 3) s | $(row relay 3) s | $(row no-relay 4) → $(row relay 4) MB |"
    else
        echo "| $n | $(row pictl 3) s | $(row ansible 3) s | $(row pictl 4) / $(row ansible 4) MB |"
    fi
done
echo
echo "load after: $(uptime)"
