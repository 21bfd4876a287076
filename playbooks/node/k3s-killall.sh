#!/bin/sh
# Managed by pictl: edits are reverted by the next `pictl apply`.
# Stops K3s and everything it started on this node, as K3s's own killall
# script does: the services, the containers (their shims outlive the service,
# which runs with KillMode=process), the mounts and network namespaces of the
# pods, and the CNI interfaces and iptables rules.
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR "$0" "$@"
# K3s's data dir on this node (pictl writes its data-dir here; the
# environment may say otherwise, as for K3s's own script).
K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}
case $K3S_DATA_DIR in
/*[!/]*) export K3S_DATA_DIR ;;
*) echo "k3s-killall.sh: K3S_DATA_DIR='$K3S_DATA_DIR' is not an absolute directory below /" >&2; exit 1 ;;
esac

# K3s carries its own userspace (iptables and friends in bin/aux): a node
# without them on PATH still has K3s's rules removed. After the system's.
for bin in "$K3S_DATA_DIR"/data/*/bin; do
    [ -d "$bin" ] && PATH=$PATH:$bin:$bin/aux
done
export PATH

# Every K3s service, whatever its name (install.sh's INSTALL_K3S_NAME
# makes k3s-NAME.service), and pictl's two wherever their files are.
for unit in /etc/systemd/system/k3s*.service k3s.service k3s-agent.service; do
    case $unit in /*) [ -s "$unit" ] || continue ;; esac
    systemctl stop "${unit##*/}" 2>/dev/null || true
done

# Every descendant of the given processes, then the processes themselves.
tree() {
    for pid in "$@"; do
        tree $(ps -e -o ppid= -o pid= | awk -v p="$pid" '$1 == p { print $2 }')
        echo "$pid"
    done
}
shims=$(ps -e -o pid= -o args= | awk -v d="$K3S_DATA_DIR/data/" 'index($0, d) && /containerd-shim/ { print $1 }')
[ -z "$shims" ] || kill -9 $(tree $shims) 2>/dev/null || true

# Unmount what the pods mounted, deepest first.
unmount_under() {
    awk -v p="$1" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
        umount -f "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}
unmount_under /run/k3s
unmount_under /var/lib/kubelet/pods
unmount_under /var/lib/kubelet/plugins
unmount_under /run/netns/cni-

ip netns show 2>/dev/null | awk '/^cni-/ { print $1 }' | while read -r ns; do ip netns delete "$ns"; done
ip -o link show 2>/dev/null | awk -F': ' '/master cni0/ { sub(/@.*/, "", $2); print $2 }' | while read -r link; do
    ip link delete "$link" 2>/dev/null || true
done
for link in cni0 flannel.1 flannel-v6.1 kube-ipvs0 flannel-wg flannel-wg-v6; do
    ip link delete "$link" 2>/dev/null || true
done
rm -rf /var/lib/cni/
for t in iptables ip6tables; do
    if command -v "$t-save" >/dev/null 2>&1 && command -v "$t-restore" >/dev/null 2>&1; then
        "$t-save" | grep -v KUBE- | grep -v CNI- | grep -iv flannel | "$t-restore" || true
    fi
done
exit 0
