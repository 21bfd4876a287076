//! An upgrade that goes wrong loses nothing: agents are never upgraded past
//! a server left behind.

use super::*;
use crate::inventory::K3sRelease;
use crate::step::StepId;

const OLD: &str = "v1.32.5+k3s1";
const NEW: &str = "v1.33.1+k3s1";

/// A cluster converged on v1.32.5 whose inventory now asks for v1.33.1
/// (uploaded binaries report it).
async fn upgrade_fleet(servers: usize, agents: usize) -> Setup {
    let mut s = setup(servers, agents).await;
    let first = apply(&s.inv, &s.options()).await.expect("apply");
    assert!(!first.failed(), "{first:#?}");
    *s.fleet.release.lock().expect("release") = Some(NEW.into());
    s.api.fleet = Some(s.fleet.clone());
    s.inv.cluster.k3s = K3sRelease::Version(NEW.into());
    s.fleet.log.lock().expect("log").clear();
    s
}

fn running(s: &Setup, name: &str) -> Option<String> {
    s.fleet.node(name).lock().expect("node").running.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_are_never_upgraded_past_a_server_whose_upgrade_failed() {
    // Regression (issue 25): s2's upgrade failed, the rollout stopped for
    // the servers, and the agents were upgraded all the same, to a kubelet
    // newer than s2's API server.
    let s = upgrade_fleet(3, 2).await;
    s.fleet.node("s2").lock().expect("node").refuse = Some("systemctl: failed".into());
    let report = apply(&s.inv, &s.options()).await.expect("apply");
    assert!(report.failed());
    assert_eq!(running(&s, "s1").as_deref(), Some(NEW));
    for a in ["a1", "a2"] {
        assert_eq!(running(&s, a).as_deref(), Some(OLD), "{a} upgraded");
        let why = node(&report, a).failed.clone().unwrap_or_default();
        for part in [
            "not upgraded: server s2 is still on v1.32.5+k3s1, not v1.33.1+k3s1",
            "a kubelet must not be newer than its API server",
        ] {
            assert!(why.contains(part), "{a}: {part:?} not in {why}");
        }
    }
}

/// The node's calls, as the rollout log shows them: the guard's and
/// rollback's scripts, and the binary's upload.
fn guard_calls(s: &Setup, name: &str) -> Vec<String> {
    s.fleet
        .calls()
        .into_iter()
        .filter(|(n, _)| n == name)
        .filter_map(|(_, c)| match c {
            Call::Exec(w) if w.starts_with("prev=") => Some("guard".to_string()),
            Call::Put(p) if p == paths::K3S_BIN => Some("binary".to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_server_upgrade_starts_with_a_snapshot_and_agents_take_none() {
    for (servers, store) in [(1, "sqlite"), (3, "etcd")] {
        let s = upgrade_fleet(servers, 1).await;
        let report = apply(&s.inv, &s.options()).await.expect("apply");
        assert!(!report.failed(), "{report:#?}");
        let snap = step_text(&report, "s1", StepId::Snapshot);
        let path = "/var/lib/rancher/k3s/server/db/snapshots/pre-upgrade-v1.33.1+k3s1-s1-";
        assert!(snap.contains(path), "{snap}");
        let kept = s.fleet.node("s1").lock().expect("node").files.clone();
        let file = kept
            .keys()
            .find(|k| k.starts_with(path))
            .expect("snapshot on s1");
        assert_eq!(
            kept[file],
            format!("{store} snapshot").into_bytes(),
            "{store}"
        );
        // The guard before the new binary; the first upload is the guard's,
        // the binary's comes after it.
        assert_eq!(guard_calls(&s, "s1"), ["guard", "binary"], "{store}");
        assert!(step_text(&report, "a1", StepId::Snapshot).is_empty());
        assert_eq!(guard_calls(&s, "a1"), ["binary"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_not_up_on_the_new_release_is_rolled_back_and_the_rollout_stops() {
    let s = upgrade_fleet(3, 1).await;
    s.fleet.node("s1").lock().expect("node").broken_release = Some(NEW.into());
    let report = apply(&s.inv, &s.options()).await.expect("apply");
    assert!(report.failed());
    let why = node(&report, "s1").failed.clone().unwrap_or_default();
    for part in [
        "K3s v1.33.1+k3s1 did not come up on s1",
        "rolled back to v1.32.5+k3s1, Ready again; node uncordoned; the rollout stopped",
        "The snapshot taken before: /var/lib/rancher/k3s/server/db/snapshots/pre-upgrade-v1.33.1+k3s1-s1-",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    assert!(step_text(&report, "s1", StepId::Rollback).contains("rolled back"));
    assert_eq!(running(&s, "s1").as_deref(), Some(OLD));
    assert!(
        s.api.node("s1")["spec"]["unschedulable"].is_null(),
        "s1 left cordoned"
    );
    for n in ["s2", "s3", "a1"] {
        assert_eq!(running(&s, n).as_deref(), Some(OLD), "{n} upgraded");
        assert!(node(&report, n).failed.is_some(), "{n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_names_the_snapshot_each_server_upgrade_takes() {
    let s = upgrade_fleet(1, 1).await;
    let report = s.plan().await;
    let s1 = step_text(&report, "s1", StepId::Drain);
    assert!(
        s1.contains("pre-upgrade-v1.33.1+k3s1 in /var/lib/rancher/k3s/server/db/snapshots"),
        "{s1}"
    );
    assert!(s1.contains("kept in /var/lib/pictl/previous"), "{s1}");
    assert!(!step_text(&report, "a1", StepId::Drain).contains("snapshot"));
    s.assert_nothing_written();
}

#[tokio::test(flavor = "multi_thread")]
async fn no_server_is_upgraded_without_its_snapshot() {
    let s = upgrade_fleet(3, 1).await;
    // K3s's etcd-snapshot fails on s1 (its etcd does not answer).
    s.fleet.node("s1").lock().expect("node").snapshot_fails = true;
    let report = apply(&s.inv, &s.options()).await.expect("apply");
    assert!(report.failed());
    let why = node(&report, "s1").failed.clone().unwrap_or_default();
    for part in [
        "no upgrade without a snapshot",
        "failed to check etcd status for snapshot",
        "node uncordoned",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    assert_eq!(guard_calls(&s, "s1"), ["guard"], "the binary went up");
    assert!(s.api.node("s1")["spec"]["unschedulable"].is_null());
    for n in ["s1", "s2", "s3", "a1"] {
        assert_eq!(running(&s, n).as_deref(), Some(OLD), "{n}");
    }
}
