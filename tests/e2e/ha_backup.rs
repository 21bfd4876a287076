//! The backup drill on an HA cluster (three servers on embedded etcd, two
//! agents): `pictl backup` takes K3s's etcd snapshot, `pictl restore`
//! puts it back K3s's way (cluster-reset on the first server, the others
//! rejoin) and the cluster is as it was, through every server.

use std::path::PathBuf;
use std::time::Instant;

use pictl_e2e::Lab;
use pictl_e2e::pictl::text;

use super::ha_lab::{ALL, SERVERS, etcd_members, inventory, kubectl_via, ok, pictl, ready_nodes};

fn exists(lab: &Lab, via: &str, cm: &str) -> bool {
    kubectl_via(lab, via, &["get", "configmap", cm, "-n", "default"])
        .status
        .success()
}

pub fn a_backup_restores_an_ha_cluster_as_it_was(lab: &Lab) {
    let three = inventory(lab, "ha-three.toml", &SERVERS, true);
    let out = pictl(lab, &three, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    ok(kubectl_via(
        lab,
        "node1",
        &["create", "configmap", "kept", "--from-literal=a=b"],
    ));
    let started = Instant::now();
    let out = pictl(lab, &three, &["backup"]);
    let took_backup = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(file.exists(), "{}", file.display());
    ok(kubectl_via(lab, "node2", &["delete", "configmap", "kept"]));
    ok(kubectl_via(
        lab,
        "node3",
        &["create", "configmap", "later", "--from-literal=a=b"],
    ));

    let f = file.to_str().expect("utf8");
    let out = pictl(lab, &three, &["restore", f]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let plan = text(&out);
    assert!(
        plan.contains("--cluster-reset-restore-path on node1"),
        "{plan}"
    );
    assert!(plan.contains("node2, node3 one at a time"), "{plan}");
    let started = Instant::now();
    let out = pictl(lab, &three, &["restore", f, "--yes"]);
    let took_restore = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for via in SERVERS {
        assert!(exists(lab, via, "kept"), "kept not back through {via}");
        assert!(!exists(lab, via, "later"), "later survived through {via}");
    }
    let ready = ready_nodes(lab, "node2");
    assert_eq!(ready.len(), ALL.len(), "{ready:?}");
    let members = etcd_members(lab, "node1");
    for s in SERVERS {
        assert!(
            members.contains(&format!("\"{s}-")),
            "{s} not a member: {members}"
        );
    }
    let recap = text(&pictl(lab, &three, &["apply"]));
    assert_eq!(recap.matches("changed=0 ").count(), 5, "{recap}");
    eprintln!(
        "backup drill (etcd, 3 servers + 2 agents): backup {:.1} s, restore to every node Ready {:.1} s",
        took_backup.as_secs_f64(),
        took_restore.as_secs_f64()
    );
}
