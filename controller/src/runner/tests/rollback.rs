//! An upgrade that goes wrong loses nothing: agents are never upgraded past
//! a server left behind.

use super::*;
use crate::inventory::K3sRelease;

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
