# Sourced by compare.sh and tests/lab/relay-bench.sh: what running the
# Ansible playbook against a lab needs. Needs the internet once, through the
# ordinary clients: ansible-core from PyPI into a venv, and python3's Debian
# packages (apt-get download on this host; the lab's nodes have no internet,
# so the packages are installed into them from here). Both are cached in
# /var/cache/pictl-bench.

ANSIBLE_CORE='ansible-core>=2.17,<2.18'
bench_cache=/var/cache/pictl-bench

# ansible_tools: sets $venv (ansible-core) and $debs (python3 for the nodes).
ansible_tools() {
    venv=$bench_cache/ansible-venv
    if [ ! -x "$venv/bin/ansible-playbook" ]; then
        echo "== ansible-core from PyPI into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "$ANSIBLE_CORE"
    fi
    local v
    v=$("$venv/bin/ansible-playbook" --version)
    echo "== ${v%%$'\n'*}"
    debs=$bench_cache/python3-debs
    if [ ! -f "$debs/.complete" ]; then
        echo "== python3 and its dependencies as Debian packages, into $debs"
        mkdir -p "$debs"
        # Exactly what apt would install on a node: resolved against the lab's
        # base image's dpkg status (the nodes' own), downloaded here.
        local base
        base=$(ls -d "$(dirname "${PICTL_LAB_CACHE:-/var/cache/pictl-lab/bookworm-base.tar}")"/bookworm-base.rootfs-* 2>/dev/null | head -n1)
        [ -n "$base" ] || { echo "no unpacked lab base image (run tests/lab/lab up once)" >&2; return 1; }
        mkdir -p "$debs/partial"
        apt-get install -y -qq --download-only --no-install-recommends \
            -o Dir::State::status="$base/var/lib/dpkg/status" -o Dir::Cache::archives="$debs" python3 >/dev/null
        touch "$debs/.complete"
    fi
}

# nodes_python LAB_TOOL LAB_DIR N: python3 into the lab's N nodes from
# $debs (what a Raspberry Pi OS image has; the base image stays untouched).
nodes_python() {
    local lab=$1 dir=$2 n=$3 i pids=()
    for i in $(seq 1 "$n"); do
        # (Not /tmp: a node mounts its own tmpfs there.)
        mkdir -p "$dir/nodes/node$i/root/var/tmp/pictl-debs"
        cp "$debs"/*.deb "$dir/nodes/node$i/root/var/tmp/pictl-debs/"
        $lab ssh "node$i" 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /var/tmp/pictl-debs/*.deb >/dev/null && rm -rf /var/tmp/pictl-debs' &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    $lab ssh node1 python3 --version >/dev/null
}

# hosts_ini OUT ID LAB_DIR N AGENT_BIN AGENT_UNIT [LINE...]: the playbook's
# inventory for lab ID's N nodes (node1 the server), extra [all:vars] lines after.
hosts_ini() {
    local out=$1 id=$2 dir=$3 n=$4 agent=$5 unit=$6 i
    shift 6
    {
        echo "[servers]"
        echo "node1 ansible_host=10.77.$id.11"
        echo "[agents]"
        for i in $(seq 2 "$n"); do echo "node$i ansible_host=10.77.$id.$((10 + i))"; done
        echo "[all:vars]"
        echo "ansible_user=lab"
        echo "ansible_ssh_private_key_file=$dir/id_ed25519"
        echo "ansible_ssh_common_args='-F /dev/null -o IdentitiesOnly=yes -o UserKnownHostsFile=$dir/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes'"
        echo "mirror=http://10.77.$id.1:8099"
        echo "k3s_version=v1.32.5+k3s1"
        echo "cache_dir=$dir/ansible-cache"
        echo "agent_binary=$agent"
        echo "agent_unit=$unit"
        for i in "$@"; do echo "$i"; done
    } >"$out"
}
