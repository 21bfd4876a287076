#!/bin/sh
# Managed by pictl: edits are reverted by the next `pictl apply`.
# Removes K3s from this node, as K3s's own uninstall script does: stops it
# (k3s-killall.sh), removes its units, environment files, configuration,
# data and binary, and the kubectl/crictl/ctr links to it. Like K3s's, it
# keeps /etc/rancher/node (the node password the cluster knows this node by).
set -u
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR "$0" "$@"
# K3s's data dir on this node (pictl writes its data-dir here; the
# environment may say otherwise, as for K3s's own script). Everything in
# it is removed, so it must be a directory below /.
K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}
case $K3S_DATA_DIR in
/*[!/]*) export K3S_DATA_DIR ;;
*) echo "k3s-uninstall.sh: K3S_DATA_DIR='$K3S_DATA_DIR' is not an absolute directory below /" >&2; exit 1 ;;
esac

/usr/local/bin/k3s-killall.sh

for unit in k3s.service k3s-agent.service; do
    systemctl disable "$unit" 2>/dev/null || true
    systemctl reset-failed "$unit" 2>/dev/null || true
    rm -f "/etc/systemd/system/$unit" "/etc/systemd/system/$unit.env"
done
systemctl daemon-reload

for cmd in kubectl crictl ctr; do
    [ -L "/usr/local/bin/$cmd" ] && rm -f "/usr/local/bin/$cmd"
done

# Never delete through a mount point: unmount what is still mounted below.
# A data dir that is itself a mount point (an SSD mounted there) is
# emptied and kept. K3s's default data dir goes too, if an earlier
# configuration left one.
for dir in "$K3S_DATA_DIR" /var/lib/rancher/k3s /var/lib/kubelet /run/k3s; do
    dir=${dir%"${dir##*[!/]}"}
    awk -v p="$dir/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    if awk -v p="$dir" '$2 == p { found = 1 } END { exit !found }' /proc/self/mounts; then
        find "$dir" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} +
    else
        rm -rf --one-file-system "$dir"
    fi
done
rm -rf /etc/rancher/k3s /run/flannel /var/lib/pictl/k3s-started-with
# The parent goes too when K3s was all it held.
rmdir /var/lib/rancher 2>/dev/null || true
rm -f /usr/local/bin/k3s /usr/local/bin/k3s-killall.sh
rm -f /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh
echo "K3s removed from $(hostname)"
