//! Upgrades that go wrong lose nothing: a server that never comes up on
//! the new release is rolled back to the one it ran (its datastore
//! snapshotted first), and a pinned downgrade is refused before anything
//! restarts.

use pictl_e2e::Lab;
use pictl_e2e::pictl::text;
use serde_json::Value;
use std::time::Instant;

use super::{NEW, NODES, OLD, inventory, kubectl, nodes, pictl, report};

/// Each node's K3s unit: (main pid, when it last became active).
fn k3s_starts(lab: &Lab) -> Vec<String> {
    NODES
        .iter()
        .map(|n| {
            let unit = if *n == "node1" { "k3s" } else { "k3s-agent" };
            let cmd = format!("systemctl show {unit} -p MainPID -p ActiveEnterTimestampMonotonic");
            lab.ssh_ok(n, "root", &cmd).expect("systemctl show")
        })
        .collect()
}

fn node_report<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == name)
        .expect("node")
}

pub fn a_server_that_never_comes_up_on_the_new_release_is_rolled_back(lab: &Lab) {
    let _ = std::fs::remove_dir_all(lab.dir().join("state"));
    let old = inventory(lab, OLD);
    let out = pictl(lab, &old, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A release that cannot start on node1 (the simulator's fault file).
    let broken = format!("mkdir -p /etc/k3s-sim && echo {NEW} > /etc/k3s-sim/broken-releases");
    lab.ssh_ok("node1", "root", &broken).expect("fault");
    let new = inventory(lab, NEW);
    let started = Instant::now();
    let out = pictl(lab, &new, &["apply", "--output", "json", "--wait", "60"]);
    let took = started.elapsed();
    lab.ssh_ok("node1", "root", "rm -f /etc/k3s-sim/broken-releases")
        .expect("fault removed");
    let v = report(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}\n{}", text(&out));
    let why = node_report(&v, "node1")["failed"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for part in [
        "K3s v1.33.1+k3s1 did not come up on node1",
        "rolled back to v1.32.5+k3s1, Ready again; node uncordoned; the rollout stopped",
        "The snapshot taken before: /var/lib/rancher/k3s/server/db/snapshots/pre-upgrade-v1.33.1+k3s1-node1-",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    // The SQLite snapshot holds the datastore K3s ran on.
    let snap = why
        .rsplit("The snapshot taken before: ")
        .next()
        .unwrap_or_default();
    let snap = snap.split(" on node1").next().unwrap_or_default();
    let files = lab
        .ssh_ok("node1", "root", &format!("ls {snap}"))
        .expect("snapshot dir");
    assert!(files.contains("state.db"), "{files}");
    for (name, version, cordoned) in nodes(lab) {
        assert_eq!(version, OLD, "{name} not on the old release");
        assert!(!cordoned, "{name} left cordoned");
    }
    let v1 = lab
        .ssh_ok("node1", "root", "/usr/local/bin/k3s --version")
        .expect("version");
    assert!(v1.contains(OLD), "{v1}");
    for n in ["node2", "node3"] {
        let why = node_report(&v, n)["failed"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Agents wait for their server: the rollout stopped at node1.
        assert!(why.contains("node1"), "{n}: {why}");
    }
    eprintln!(
        "rollback drill: {:.1} s from apply to node1 Ready on {OLD} again",
        took.as_secs_f64()
    );
    // node1's drain moved its httpbin pod: the next case wants them spread.
    kubectl(
        lab,
        &[
            "delete",
            "namespace",
            "playson",
            "--wait=true",
            "--timeout=60s",
        ],
    );
}

pub fn a_pinned_downgrade_is_refused_with_nothing_restarted(lab: &Lab) {
    let before = k3s_starts(lab);
    let old = inventory(lab, OLD);
    let out = pictl(lab, &old, &["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = text(&out);
    for part in [
        "k3s_version v1.32.5+k3s1 is older than what node node1 (v1.33.1+k3s1)",
        "K3s does not support downgrades",
        "pre-upgrade-",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert_eq!(k3s_starts(lab), before, "a K3s unit restarted");
    for (name, version, cordoned) in nodes(lab) {
        assert_eq!(version, NEW, "{name}");
        assert!(!cordoned, "{name}");
    }
}
