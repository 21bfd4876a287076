#!/usr/bin/env bash
# The README's main job: bring up the local lab (3 Debian nodes with real
# systemd and sshd under systemd-nspawn, node3 presenting a Raspberry Pi's boot
# files), serve the lab's K3s release mirror, and run `pictl apply` against it.
# Run as root on Debian 12. Safe to run again: the lab is reused when healthy
# and pictl converges (changed=0 when nothing drifted).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: the lab needs root (network namespaces, systemd-nspawn)" >&2
    exit 1
fi
export PICTL_LAB_ID=0

echo "== host packages"
tests/lab/install-deps.sh
echo "== building pictl, its health agent and the K3s simulator"
cargo build --quiet -p pictl -p pictl-agent -p k3s-sim
echo "== lab (first run builds the Debian base image: about a minute)"
tests/lab/lab up 3 --pi node3
echo "== K3s release mirror for the lab"
# The demo's nodes are amd64: no cross builds of the simulator (minutes on a
# fresh machine); the arm64 suites build theirs when they run.
PICTL_MIRROR_CROSS="" tests/k3s-sim/mirror.sh .lab/mirror
echo "== pictl apply -i inventory/lab.toml"
# The pictl cargo just built (CARGO_TARGET_DIR moves it out of target/).
pictl=${CARGO_TARGET_DIR:-target}/debug/pictl
status=0
"$pictl" apply -i inventory/lab.toml || status=$?
cat <<NEXT

Try next:
  $pictl plan  -i inventory/lab.toml    # exit 0: nothing to change
  $pictl apply -i inventory/lab.toml    # changed=0
  $pictl status -i inventory/lab.toml    # every node in one table
  kubectl --kubeconfig .lab/state/kubeconfig get nodes
  kubectl --kubeconfig .lab/state/kubeconfig -n playson get deploy,svc,netpol,hpa,pdb
  tests/lab/lab ssh node2 systemctl status k3s-agent
  tests/lab/lab down                                # when done
NEXT
exit "$status"
