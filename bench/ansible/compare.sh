#!/usr/bin/env bash
# pictl against an equivalent minimal Ansible playbook (site.yml), on the
# same 3-node lab, interleaved: each round brings up fresh nodes for each
# tool, times its first bootstrap, then a no-op re-run (changed=0 expected
# from both). Prints every figure, the medians and the ratios.
#   bench/ansible/compare.sh [--rounds 3] [--nodes 3] [--id K] [--debug | --pictl BIN]   (as root)
# Needs the internet once, through the ordinary clients: ansible-core from
# PyPI into a venv, and python3's Debian packages (apt-get download on this
# host; the lab's nodes have no internet, so the packages are installed into
# them from here). Both are cached in /var/cache/pictl-bench. Not part of CI.
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
cache=/var/cache/pictl-bench
ANSIBLE_CORE='ansible-core>=2.17,<2.18'
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
venv=$cache/ansible-venv
if [ ! -x "$venv/bin/ansible-playbook" ]; then
    echo "== ansible-core from PyPI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "$ANSIBLE_CORE"
fi
v=$("$venv/bin/ansible-playbook" --version)
echo "== ${v%%$'\n'*}"
debs=$cache/python3-debs
if [ ! -f "$debs/.complete" ]; then
    echo "== python3 and its dependencies as Debian packages, into $debs"
    mkdir -p "$debs"
    # Exactly what apt would install on a node: resolved against the lab's
    # base image's dpkg status (the nodes' own), downloaded here.
    base=$(ls -d "$(dirname "${PICTL_LAB_CACHE:-/var/cache/pictl-lab/bookworm-base.tar}")"/bookworm-base.rootfs-* 2>/dev/null | head -n1)
    [ -n "$base" ] || { echo "compare.sh: no unpacked lab base image (run tests/lab/lab up once)" >&2; exit 1; }
    mkdir -p "$debs/partial"
    apt-get install -y -qq --download-only --no-install-recommends \
        -o Dir::State::status="$base/var/lib/dpkg/status" -o Dir::Cache::archives="$debs" python3 >/dev/null
    touch "$debs/.complete"
fi

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
    local i pids=()
    for i in $(seq 1 "$nodes"); do
        # (Not /tmp: a node mounts its own tmpfs there.)
        mkdir -p "$dir/nodes/node$i/root/var/tmp/pictl-debs"
        cp "$debs"/*.deb "$dir/nodes/node$i/root/var/tmp/pictl-debs/"
        $lab ssh "node$i" 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /var/tmp/pictl-debs/*.deb >/dev/null && rm -rf /var/tmp/pictl-debs' &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    $lab ssh node1 python3 --version >/dev/null
}

hosts_ini() {
    local i
    {
        echo "[servers]"
        echo "node1 ansible_host=10.77.$id.11"
        echo "[agents]"
        for i in $(seq 2 "$nodes"); do echo "node$i ansible_host=10.77.$id.$((10 + i))"; done
        echo "[all:vars]"
        echo "ansible_user=lab"
        echo "ansible_ssh_private_key_file=$dir/id_ed25519"
        echo "ansible_ssh_common_args='-F /dev/null -o IdentitiesOnly=yes -o UserKnownHostsFile=$dir/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes'"
        echo "mirror=http://10.77.$id.1:8099"
        echo "k3s_version=v1.32.5+k3s1"
        echo "cache_dir=$dir/ansible-cache"
        echo "agent_binary=$(dirname "$pictl")/pictl-agent"
        echo "agent_unit=$root/agent/pictl-agent.service"
    } >"$here/hosts.ini"
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
results=$dir/compare.txt
: >"$results"

run_ansible() {
    local t0 t1 out
    fresh_lab
    hosts_ini
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
hosts_ini
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
