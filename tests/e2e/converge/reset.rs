//! Reset and failed starts: `pictl reset` leaving nothing behind (data dir
//! elsewhere, a dangling kubectl link, K3s's bundled iptables), and first
//! starts that fail naming the cause (a wrong token, a slow start, a
//! reflashed node, a kernel without vxlan).

use super::*;

/// What K3s or pictl left on `node` (empty when nothing): files, units,
/// processes, mounts, interfaces, iptables chains and the health agent.
fn k3s_leftovers(lab: &Lab, node: &str) -> String {
    lab.ssh_ok(
        node,
        "root",
        "for f in /usr/local/bin/k3s /usr/local/bin/kubectl /usr/local/bin/crictl /usr/local/bin/ctr \
         /usr/local/bin/k3s-killall.sh /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh \
         /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service /etc/rancher/k3s \
         /var/lib/rancher /var/lib/kubelet /run/k3s /var/lib/cni /var/lib/pictl \
         /usr/local/bin/pictl-agent /etc/systemd/system/pictl-agent.service; do [ -e $f ] && echo file $f; done; \
         pgrep -a -f '^/usr/local/bin/(k3s|pictl-agent)( |$)' | sed 's/^/process /'; \
         awk '$2 ~ \"^/run/k3s|^/var/lib/kubelet\" { print \"mount \" $2 }' /proc/self/mounts; \
         for l in cni0 flannel.1 kube-ipvs0; do ip link show $l >/dev/null 2>&1 && echo link $l; done; \
         if command -v iptables-save >/dev/null; then iptables-save | grep -E '^:(KUBE|CNI|FLANNEL)' | sed 's/^/chain /'; fi; \
         id pictl-agent >/dev/null 2>&1 && echo user pictl-agent; true",
    )
    .expect("leftovers")
}

pub fn reset_removes_k3s_everywhere_and_apply_bootstraps_again(lab: &Lab) {
    ensure_converged(lab);
    let dry = pictl(lab, &lab.inventory(), &["reset"]);
    assert_eq!(dry.status.code(), Some(2), "{}", text(&dry));
    assert!(k3s_leftovers(lab, "node2").contains("file /usr/local/bin/k3s"));
    // One agent: its Node goes from the cluster, the rest stays.
    let one = pictl(
        lab,
        &lab.inventory(),
        &["reset", "--nodes", "node3", "--yes"],
    );
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));
    assert_eq!(k3s_leftovers(lab, "node3"), "");
    let nodes: Vec<String> = node_table(lab).into_iter().map(|(n, ..)| n).collect();
    assert_eq!(nodes, ["node1", "node2"]);
    let all = pictl(
        lab,
        &lab.inventory(),
        &["reset", "--yes", "--output", "json"],
    );
    assert_eq!(all.status.code(), Some(0), "{}", text(&all));
    for n in ["node1", "node2", "node3"] {
        assert_eq!(k3s_leftovers(lab, n), "", "{n} kept things");
    }
    // Nothing of the user's is reverted: the Pi keeps its cgroup flags.
    let cmdline = lab
        .ssh_ok("node3", "root", "cat /boot/firmware/cmdline.txt")
        .expect("cmdline");
    assert!(cmdline.contains("cgroup_enable=memory"), "{cmdline}");
    let again = pictl(
        lab,
        &lab.inventory(),
        &["reset", "--yes", "--output", "json"],
    );
    let v: Value = serde_json::from_slice(&again.stdout).expect("json");
    for n in ["node1", "node2", "node3"] {
        assert!(
            steps(&v, n, "changed").is_empty(),
            "second reset changed {n}: {v:#}"
        );
    }
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let table = wait_all_ready(lab, OLD);
    assert!(
        table.len() == 3 && table.iter().all(|(_, s, _, _)| s == "Ready"),
        "{table:?}"
    );
}

/// `pictl apply --wait SECONDS --output json` with the lab's inventory.
fn apply_waiting(lab: &Lab, wait: u64) -> (i32, Value, Output) {
    let out = pictl(
        lab,
        &lab.inventory(),
        &["apply", "--wait", &wait.to_string(), "--output", "json"],
    );
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(&out)));
    (out.status.code().unwrap_or(-1), v, out)
}

/// `apply --wait SECONDS`, which must fail (exit 1): why `node` failed, and the report.
fn failed_apply(lab: &Lab, wait: u64, node_name: &str) -> (String, Value) {
    let (code, v, out) = apply_waiting(lab, wait);
    assert_eq!(code, 1, "{}", text(&out));
    let why = node(&v, node_name)["failed"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (why, v)
}

pub fn a_wrong_token_on_an_agent_fails_with_the_agents_own_journal_lines(lab: &Lab) {
    ensure_converged(lab);
    // A drop-in K3s merges over pictl's config.yaml, with a wrong token: the
    // cluster's CA hash (so it looks right) and a mistyped secret.
    let token = lab
        .ssh_ok("node1", "root", "cat /var/lib/rancher/k3s/server/token")
        .expect("token");
    let ca = token
        .trim()
        .split("::")
        .next()
        .unwrap_or_default()
        .to_string();
    lab.ssh_ok(
        "node2",
        "root",
        &format!(
            "systemctl stop k3s-agent; mkdir -p /etc/rancher/k3s/config.yaml.d; \
             echo 'token: {ca}::node:mistyped' > /etc/rancher/k3s/config.yaml.d/99-wrong.yaml"
        ),
    )
    .expect("drop-in");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert!(
        String::from_utf8_lossy(&plan.stderr).contains("99-wrong.yaml"),
        "{}",
        text(&plan)
    );
    let (why, v) = failed_apply(lab, 15, "node2");
    assert!(
        why.contains("Failed to validate connection to cluster"),
        "{v:#}"
    );
    assert!(why.contains("did not become ready within 15 s"), "{v:#}");
    lab.ssh_ok(
        "node2",
        "root",
        "rm -f /etc/rancher/k3s/config.yaml.d/99-wrong.yaml",
    )
    .expect("rm");
    ensure_converged(lab);
}

pub fn a_slow_first_start_succeeds_within_wait_and_fails_beyond_it_with_the_journal(lab: &Lab) {
    ensure_converged(lab);
    // A fresh data dir to unpack, slowly, as on a Pi's SD card: K3s's data
    // dir (data/<hash>/bin: containerd, runc, the CNI plugins, …) is ~250 MB,
    // and a good SD card writes ~20 MB/s sequentially (the Raspberry Pi
    // sdtest figures in k3s-io/k3s#2822: 19.9-21.0 MB/s), so ~12 s before
    // K3s even starts its API. pictl's default --wait (300 s) leaves room for
    // that and for an API server whose writes take seconds on a slow card
    // (k3s-io/k3s#2644); this case shows 4 s failing with the journal and
    // 60 s succeeding.
    let reset = pictl(
        lab,
        &lab.inventory(),
        &["reset", "--nodes", "node3", "--yes"],
    );
    assert_eq!(reset.status.code(), Some(0), "{}", text(&reset));
    lab.ssh_ok(
        "node3",
        "root",
        "echo K3S_SIM_UNPACK_DELAY=12s > /etc/default/k3s-agent",
    )
    .expect("slow");
    let (why, v) = failed_apply(lab, 4, "node3");
    assert!(why.contains("did not become ready within 4 s"), "{v:#}");
    let (code, v, out) = apply_waiting(lab, 60);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    lab.ssh_ok("node3", "root", "rm -f /etc/default/k3s-agent")
        .expect("rm");
}

pub fn a_reflashed_node_is_named_with_the_fix(lab: &Lab) {
    ensure_converged(lab);
    // A re-flashed SD card: the node comes back with a new node password.
    lab.ssh_ok(
        "node3",
        "root",
        "systemctl stop k3s-agent; rm -f /etc/rancher/node/password",
    )
    .expect("reflash");
    let (why, v) = failed_apply(lab, 15, "node3");
    assert!(
        why.contains("Node password rejected") && why.contains("kubectl delete node node3"),
        "{v:#}"
    );
    kubectl(lab, &["delete", "node", "node3"]);
    ensure_converged(lab);
    let table = wait_all_ready(lab, OLD);
    assert!(table.iter().all(|(_, s, _, _)| s == "Ready"), "{table:?}");
}

/// A kernel whose module list has no vxlan (Ubuntu's Raspberry Pi kernel
/// without linux-modules-extra-raspi): flannel's default backend could not
/// connect Pods across nodes, so the node is refused, saying what to install.
/// (Lab nodes have no /sys/module and no /lib/modules: unknown, not refused.)
pub fn a_kernel_without_vxlan_is_refused_naming_the_package(lab: &Lab) {
    ensure_converged(lab);
    let modules = |line: &str| {
        lab.ssh_ok(
            "node2",
            "root",
            &format!(
                "d=/lib/modules/$(uname -r); mkdir -p \"$d\" && echo '{line}' > \"$d/modules.dep\""
            ),
        )
        .expect("modules.dep");
    };
    modules("kernel/fs/overlayfs/overlay.ko.zst:");
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 1, "{v:#}\n{}", text(&out));
    let why = node(&v, "node2")["failed"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("has no vxlan module") && why.contains("linux-modules-extra-raspi"),
        "{v:#}"
    );
    for n in ["node1", "node3"] {
        assert!(steps(&v, n, "changed").is_empty(), "{n}: {v:#}");
    }
    modules("kernel/drivers/net/vxlan/vxlan.ko.zst: kernel/net/ipv4/udp_tunnel.ko.zst");
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    lab.ssh_ok("node2", "root", "rm -rf /lib/modules")
        .expect("rm");
}

/// What is at K3s's data dir and its default parent on `node` (empty when nothing).
fn data_dirs(lab: &Lab, node: &str, data_dir: &str) -> String {
    lab.ssh_ok(
        node,
        "root",
        &format!("for d in {data_dir} /var/lib/rancher; do [ -e $d ] && echo $d; done; true"),
    )
    .expect("data dirs")
}

/// A Pi that boots from SD and keeps K3s on an SSD: `data-dir` elsewhere,
/// from the inventory (pictl's config.yaml): the server's token is read
/// there, and a re-run changes nothing. The reset removes the data dir each
/// node runs with (read from the node: the lab's own inventory resets them).
pub fn a_reset_with_the_data_dir_elsewhere_leaves_nothing_there(lab: &Lab) {
    ensure_converged(lab);
    let clean = pictl(lab, &lab.inventory(), &["reset", "--yes"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    let inv = inventory_with(
        lab,
        "server_config = { \"data-dir\" = \"/srv/k3s\" }\nagent_config = { \"data-dir\" = \"/srv/k3s\" }",
        "inventory-data-dir.toml",
    );
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    lab.ssh_ok(
        "node1",
        "root",
        "test -s /srv/k3s/server/token && test -s /srv/k3s/server/tls/server-ca.key && test ! -e /var/lib/rancher",
    )
    .expect("the server keeps its data in /srv/k3s");
    // The token is read where the server keeps it: nothing to change.
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{}", text(&out));
    for n in ["node1", "node2", "node3"] {
        assert!(
            steps(&v, n, "changed").is_empty(),
            "second run changed {n}: {v:#}"
        );
    }
    for n in ["node1", "node2", "node3"] {
        assert_eq!(data_dirs(lab, n, "/srv/k3s"), "/srv/k3s", "{n}");
    }
    let plan = pictl(lab, &lab.inventory(), &["reset"]);
    assert!(
        text(&plan).contains("/srv/k3s, /var/lib/rancher"),
        "{}",
        text(&plan)
    );
    let reset = pictl(lab, &lab.inventory(), &["reset", "--yes"]);
    assert_eq!(reset.status.code(), Some(0), "{}", text(&reset));
    for n in ["node1", "node2", "node3"] {
        assert_eq!(data_dirs(lab, n, "/srv/k3s"), "", "{n} kept K3s's data");
        assert_eq!(k3s_leftovers(lab, n), "", "{n} kept things");
    }
    ensure_converged(lab);
}

/// As install.sh's `create_symlinks`: a dangling `kubectl` link is
/// replaced; a `crictl` that is no command and no link is left and named.
pub fn a_dangling_kubectl_link_is_replaced_and_a_file_not_k3s_is_left(lab: &Lab) {
    ensure_converged(lab);
    lab.ssh_ok(
        "node2",
        "root",
        "ln -sfn /opt/gone/kubectl /usr/local/bin/kubectl && rm -f /usr/local/bin/crictl \
         && echo 'not k3s' > /usr/local/bin/crictl",
    )
    .expect("a dangling link and a file");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert!(
        String::from_utf8_lossy(&plan.stderr).contains("/usr/local/bin/crictl is not a command"),
        "{}",
        text(&plan)
    );
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let found = lab
        .ssh_ok(
            "node2",
            "root",
            "readlink /usr/local/bin/kubectl; cat /usr/local/bin/crictl",
        )
        .expect("tools");
    assert_eq!(found, "k3s\nnot k3s");
    let (_, v, _) = apply_json(lab, &lab.inventory());
    assert!(steps(&v, "node2", "changed").is_empty(), "{v:#}");
    lab.ssh_ok("node2", "root", "rm -f /usr/local/bin/crictl")
        .expect("rm");
    ensure_converged(lab);
}

/// A node without iptables: K3s's killall finds K3s's own under the data
/// dir's `data/<hash>/bin/aux` and removes K3s's chains, keeping the node's.
pub fn a_reset_finds_k3s_bundled_iptables_on_a_node_without_any(lab: &Lab) {
    ensure_converged(lab);
    // The lab's image has iptables: node2 is made a node without any.
    let hide = "for t in iptables-save iptables-restore ip6tables-save ip6tables-restore; do \
                p=$(command -v $t) && mv $p $p.off; done; true";
    lab.ssh_ok("node2", "root", hide).expect("hide iptables");
    let before = lab
        .ssh_ok(
            "node2",
            "root",
            "command -v iptables-save || echo none; \
             ls /var/lib/rancher/k3s/data/*/bin/aux/iptables-save >/dev/null && \
             cat /run/k3s-sim/xtables/iptables",
        )
        .expect("tables");
    assert!(before.starts_with("none\n"), "{before}");
    assert!(
        before.contains(":KUBE-SERVICES") && before.contains("FLANNEL-"),
        "{before}"
    );
    let reset = pictl(
        lab,
        &lab.inventory(),
        &["reset", "--nodes", "node2", "--yes"],
    );
    assert_eq!(reset.status.code(), Some(0), "{}", text(&reset));
    let after = lab
        .ssh_ok("node2", "root", "cat /run/k3s-sim/xtables/iptables")
        .expect("tables");
    assert!(
        !after.contains("KUBE-")
            && !after.contains("CNI-")
            && !after.to_lowercase().contains("flannel"),
        "K3s's chains survived the reset:\n{after}"
    );
    assert!(after.contains("-A INPUT -i lo -j ACCEPT"), "{after}");
    lab.ssh_ok(
        "node2",
        "root",
        "for p in /usr/sbin/*.off; do [ -e \"$p\" ] && mv \"$p\" \"${p%.off}\"; done; true",
    )
    .expect("iptables back");
    ensure_converged(lab);
}
