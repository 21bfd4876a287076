//! The killall, uninstall and link scripts run locally (`test_sh`), their
//! node paths moved into a scratch directory and the programs that would
//! touch the host (systemctl, ip, umount, id) replaced by shims that log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{KILLALL, LINK, UNINSTALL, with_data_dir};
use crate::steps::tests;

fn write_exec(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A scratch node: `bin/` holds shims for the programs that would touch
/// the host; every path the scripts name is moved under `root`.
struct Node {
    _dir: tempfile::TempDir,
    root: String,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().to_string_lossy().into_owned();
        let log = |name: &str| format!("#!/bin/sh\necho \"{name} $*\" >>{root}/calls\n");
        for name in ["systemctl", "ip", "umount"] {
            write_exec(&dir.path().join("bin").join(name), &log(name));
        }
        write_exec(&dir.path().join("bin/id"), "#!/bin/sh\necho 0\n");
        std::fs::write(dir.path().join("mounts"), "").expect("mounts");
        Self { _dir: dir, root }
    }

    fn path(&self, p: &str) -> String {
        format!("{}/{p}", self.root)
    }

    /// `script` with the node's paths under the scratch root.
    fn moved(&self, script: &str) -> String {
        let r = &self.root;
        script
            .replace("/etc/systemd/system/", &format!("{r}/units/"))
            .replace("/usr/local/bin/", &format!("{r}/local-bin/"))
            .replace("/etc/rancher", &format!("{r}/etc-rancher"))
            .replace("/var/lib/rancher", &format!("{r}/var-lib-rancher"))
            .replace("/var/lib/kubelet", &format!("{r}/kubelet"))
            .replace("/var/lib/cni/", &format!("{r}/cni/"))
            .replace("/var/lib/pictl", &format!("{r}/pictl"))
            .replace("/run/", &format!("{r}/run/"))
            .replace("/proc/self/mounts", &format!("{r}/mounts"))
    }

    /// Only the shims and the system's basic tools: no iptables, kubectl.
    fn path_var(&self) -> String {
        format!("{}:/usr/bin:/bin", self.path("bin"))
    }

    fn calls(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path("calls")).unwrap_or_default();
        text.lines().map(String::from).collect()
    }
}

/// K3s's bundled `iptables-save` (with K3s's chains) and `iptables-restore`
/// (keeps what it is given) under `<data dir>/data/<hash>/bin/aux`, as
/// K3s unpacks them; the system has none.
#[test]
fn killall_finds_k3s_bundled_iptables_and_stops_every_k3s_service() {
    let node = Node::new();
    let data = node.path("ssd/k3s's data");
    let aux = format!("{data}/data/0123abcd/bin/aux");
    write_exec(
        Path::new(&format!("{aux}/iptables-save")),
        "#!/bin/sh\nprintf '*filter\\n:INPUT ACCEPT [0:0]\\n:KUBE-SERVICES - [0:0]\\n:CNI-FORWARD - [0:0]\\n-A INPUT -j KUBE-SERVICES\\n-A FORWARD -s 10.42.0.0/16 -m comment --comment \"flannel forwarding\" -j ACCEPT\\nCOMMIT\\n'\n",
    );
    let restored = node.path("restored");
    write_exec(
        Path::new(&format!("{aux}/iptables-restore")),
        &format!("#!/bin/sh\ncat >{restored}\n"),
    );
    for (unit, text) in [
        ("k3s.service", "[Service]\n"),
        ("k3s-edge.service", "[Service]\n"),
        ("k3s-empty.service", ""),
    ] {
        std::fs::create_dir_all(node.path("units")).expect("units");
        std::fs::write(node.path(&format!("units/{unit}")), text).expect("unit");
    }
    let script = node.moved(&with_data_dir(KILLALL, &data));
    crate::test_sh::run(&script, Vec::<&str>::new(), &node.path_var());
    let rules = std::fs::read_to_string(&restored).expect("iptables-restore ran");
    assert_eq!(rules, "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
    let stops: Vec<String> = node
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("systemctl stop"))
        .collect();
    assert!(
        stops.contains(&"systemctl stop k3s-edge.service".into()),
        "{stops:?}"
    );
    assert!(
        stops.contains(&"systemctl stop k3s-agent.service".into()),
        "{stops:?}"
    );
    assert!(
        !stops
            .iter()
            .any(|s| s.contains("k3s-empty") || s.contains('*')),
        "{stops:?}"
    );
}

#[test]
fn uninstall_removes_the_data_dir_the_node_runs_with_and_the_default_one() {
    let node = Node::new();
    let data = node.path("ssd/k3s");
    for f in [
        format!("{data}/server/tls/server-ca.key"),
        format!("{data}/server/token"),
        format!("{data}/server/db/etcd/member/wal/0.wal"),
        node.path("var-lib-rancher/k3s/agent/old"),
        node.path("etc-rancher/node/password"),
        node.path("etc-rancher/k3s/config.yaml"),
    ] {
        std::fs::create_dir_all(Path::new(&f).parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, "x").expect("write");
    }
    // k3s-killall.sh is told the same data dir.
    let seen = node.path("killall-saw");
    write_exec(
        Path::new(&node.path("local-bin/k3s-killall.sh")),
        &format!("#!/bin/sh\necho \"$K3S_DATA_DIR\" >{seen}\n"),
    );
    let script = node.moved(&with_data_dir(UNINSTALL, &data));
    crate::test_sh::run(&script, Vec::<&str>::new(), &node.path_var());
    assert!(!Path::new(&data).exists(), "the data dir is left");
    assert!(
        Path::new(&node.path("ssd")).exists(),
        "its parent is not K3s's"
    );
    assert!(!Path::new(&node.path("var-lib-rancher")).exists());
    assert!(!Path::new(&node.path("etc-rancher/k3s")).exists());
    assert!(Path::new(&node.path("etc-rancher/node/password")).exists());
    let saw = std::fs::read_to_string(&seen).expect("killall ran");
    assert_eq!(saw.trim(), data);
}

#[test]
fn a_data_dir_that_is_a_mount_point_is_emptied_and_kept() {
    let node = Node::new();
    let data = node.path("ssd");
    std::fs::create_dir_all(format!("{data}/server/db")).expect("mkdir");
    std::fs::write(format!("{data}/server/db/state.db"), "x").expect("write");
    std::fs::write(
        node.path("mounts"),
        format!("/dev/sda1 {data} ext4 rw 0 0\n"),
    )
    .expect("mounts");
    write_exec(
        Path::new(&node.path("local-bin/k3s-killall.sh")),
        "#!/bin/sh\n",
    );
    let script = node.moved(&with_data_dir(UNINSTALL, &data));
    crate::test_sh::run(&script, Vec::<&str>::new(), &node.path_var());
    let left: Vec<_> = std::fs::read_dir(&data).expect("kept").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_scripts_refuse_an_empty_or_root_data_dir() {
    for (name, script) in [("killall", KILLALL), ("uninstall", UNINSTALL)] {
        for bad in ["/", "//", "relative"] {
            let node = Node::new();
            std::fs::write(node.path("keep"), "x").expect("write");
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &node.moved(script), "pictl"])
                .env("PATH", node.path_var())
                .env("K3S_DATA_DIR", bad)
                .output()
                .expect("sh");
            assert_eq!(out.status.code(), Some(1), "{name} {bad}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("K3S_DATA_DIR"));
            assert!(node.calls().is_empty(), "{name} {bad}: {:?}", node.calls());
            assert!(Path::new(&node.path("keep")).exists());
        }
    }
}

#[test]
fn the_data_dir_is_quoted_into_the_scripts() {
    assert_eq!(with_data_dir(KILLALL, crate::data_dir::DEFAULT), KILLALL);
    assert_eq!(
        with_data_dir(UNINSTALL, crate::data_dir::DEFAULT),
        UNINSTALL
    );
    let text = with_data_dir(KILLALL, "/srv/it's k3s");
    assert!(
        text.contains("K3S_DATA_DIR=${K3S_DATA_DIR:-'/srv/it'\\''s k3s'}\n"),
        "{text}"
    );
    let out = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "{}\necho \"$K3S_DATA_DIR\"",
                text.lines()
                    .find(|l| l.starts_with("K3S_DATA_DIR="))
                    .expect("line")
            ),
        ])
        .env_remove("K3S_DATA_DIR")
        .output()
        .expect("sh");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/srv/it's k3s\n");
}

/// As install.sh's `create_symlinks`: a dangling link is replaced, a file
/// that is not a command is left, a missing one is linked.
#[test]
fn links_replace_a_dangling_link_and_leave_a_file_that_is_not_ours() {
    let node = Node::new();
    let bin = node.path("local-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::os::unix::fs::symlink("/nowhere/kubectl", format!("{bin}/kubectl")).expect("link");
    std::fs::write(format!("{bin}/crictl"), "not a program").expect("write");
    let tools = node.path("tools");
    std::fs::create_dir_all(&tools).expect("mkdir");
    std::os::unix::fs::symlink("/bin/ln", format!("{tools}/ln")).expect("ln");
    let script = node.moved(LINK);
    crate::test_sh::run(
        &script,
        ["kubectl", "crictl", "ctr"],
        &format!("{bin}:{tools}"),
    );
    for linked in ["kubectl", "ctr"] {
        let target = std::fs::read_link(format!("{bin}/{linked}")).expect("link");
        assert_eq!(target, Path::new("k3s"), "{linked}");
    }
    assert_eq!(
        std::fs::read_to_string(format!("{bin}/crictl")).expect("kept"),
        "not a program"
    );
}

/// The scripts pictl leaves on a node default to the data dir its
/// config.yaml sets, so they are rewritten when that changes.
#[test]
fn the_scripts_follow_the_inventorys_data_dir() {
    let inv = tests::inventory();
    let mut d = tests::desired(&inv);
    let f = tests::converged(&d);
    assert!(matches!(
        tests::check_one(&super::K3sTools, &inv, &d, &f),
        crate::step::Check::Converged
    ));
    d.k3s_settings.insert(
        "data-dir".into(),
        crate::inventory::K3sValue::One("/srv/k3s".into()),
    );
    let crate::step::Check::Change(plan) = tests::check_one(&super::K3sTools, &inv, &d, &f) else {
        panic!("expected the scripts rewritten")
    };
    assert_eq!(plan.scripts.len(), 2, "{plan:?}");
}
