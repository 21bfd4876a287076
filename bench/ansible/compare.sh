#!/usr/bin/env bash
# pictl against an equivalent minimal Ansible playbook (site.yml), on the
# same 3-node lab, interleaved: each round brings up fresh nodes for each
# tool, times its first bootstrap, then a no-op re-run (changed=0 expected
# from both). Prints every figure, the medians and the ratios.
#   bench/ansible/compare.sh [--rounds 3] [--nodes 3] [--id K] [--debug | --pictl BIN]   (as root)
# Needs the internet once (see tools.sh). Not part of CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
rounds=3 nodes=3 profile=release pictl_bin=""
id=${PICTL_LAB_ID:-4}
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --id) id=$2; shift 2 ;;
    --debug) profile=debug; shift ;;
    --pictl) pictl_bin=$2; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
export PICTL_LAB_ID=$id
# shellcheck source=bench/ansible/tools.sh
. "$here/tools.sh"
lab=tests/lab/lab
trap '$lab down >/dev/null 2>&1 || true' EXIT

# ---- tools: pictl, ansible-core in a venv, python3 for the nodes
target=${CARGO_TARGET_DIR:-$root/target}
if [ -n "$pictl_bin" ]; then
    pictl=$pictl_bin # (its pictl-agent beside it)
elif [ "$profile" = release ]; then
    cargo build --quiet --release -p pictl -p pictl-agent
    pictl=$target/release/pictl
else
    cargo build --quiet -p pictl -p pictl-agent
    pictl=$target/debug/pictl
fi
ansible_tools

dir=$($lab env | sed -n 's/^LAB_DIR=//p' | tr -d "'\"")
export PICTL_CACHE_DIR=$dir/bench-cache
# The lab's K3s mirror (kept across `lab down`), laid out once.
# Always: a mirror left by an earlier checkout holds an older simulator
# (mirror.sh rewrites only what changed).
tests/k3s-sim/mirror.sh "$dir/mirror" >/dev/null

# A fresh lab of $nodes nodes with python3 installed from the host's packages
# (what a Raspberry Pi OS image has; the base image stays untouched).
fresh_lab() {
    $lab down >/dev/null 2>&1 || true
    $lab up "$nodes" >/dev/null 2>&1
    rm -rf "$dir/state" "$dir/ansible-cache"
    nodes_python "$lab" "$dir" "$nodes"
}

write_hosts() {
    hosts_ini "$here/hosts.ini" "$id" "$dir" "$nodes" "$(dirname "$pictl")/pictl-agent" "$root/agent/pictl-agent.service"
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
results=$dir/compare.txt
: >"$results"

run_ansible() {
    local t0 t1 out
    fresh_lab
    write_hosts
    t0=$(now)
    out=$(cd "$here" && "$venv/bin/ansible-playbook" site.yml 2>&1) || { echo "$out" | tail -n 30 >&2; return 1; }
    t1=$(now)
    echo "ansible bootstrap $(secs "$t0" "$t1")" | tee -a "$results"
    t0=$(now)
    out=$(cd "$here" && "$venv/bin/ansible-playbook" site.yml 2>&1) || { echo "$out" | tail -n 30 >&2; return 1; }
    t1=$(now)
    echo "ansible no-op $(secs "$t0" "$t1") $(echo "$out" | grep -o 'changed=[0-9]*' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')" | tee -a "$results"
}

run_pictl() {
    local t0 t1 out
    fresh_lab
    t0=$(now)
    "$pictl" apply -i "$dir/inventory.toml" >/dev/null 2>&1 || { echo "pictl bootstrap failed" >&2; return 1; }
    t1=$(now)
    echo "pictl bootstrap $(secs "$t0" "$t1")" | tee -a "$results"
    t0=$(now)
    out=$("$pictl" apply -i "$dir/inventory.toml" 2>/dev/null) || { echo "pictl no-op failed" >&2; return 1; }
    t1=$(now)
    echo "pictl no-op $(secs "$t0" "$t1") $(echo "$out" | grep -o 'changed=[0-9]*' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')" | tee -a "$results"
}

echo "== $rounds rounds, $nodes nodes, interleaved (load: $(cut -d' ' -f1-3 /proc/loadavg))"
# The artifact caches of both are filled once, unmeasured.
fresh_lab
write_hosts
(cd "$here" && "$venv/bin/ansible-playbook" site.yml >/dev/null 2>&1) || true
"$pictl" apply -i "$dir/inventory.toml" >/dev/null 2>&1 || true
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then run_pictl; run_ansible; else run_ansible; run_pictl; fi
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    tool, kind, secs = line.split()[:3]
    rows.setdefault((tool, kind), []).append(float(secs))
for kind in ("bootstrap", "no-op"):
    p, a = rows.get(("pictl", kind), []), rows.get(("ansible", kind), [])
    if p and a:
        mp, ma = statistics.median(p), statistics.median(a)
        print(f"{kind:9}  pictl {mp:6.2f} s ({min(p):.2f}-{max(p):.2f})   ansible {ma:6.2f} s ({min(a):.2f}-{max(a):.2f})   ansible/pictl {ma / mp:5.1f}x")
PY
