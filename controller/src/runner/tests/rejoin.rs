//! A re-flashed first server of an HA cluster joins the cluster the other
//! servers hold, with their token, instead of starting a second one.

use super::*;

/// The node as a re-flash leaves it: no K3s, no data, no pictl files.
fn reflash(s: &Setup, name: &str) {
    let node = s.fleet.node(name);
    let mut n = node.lock().expect("node");
    n.files.clear();
    n.active.clear();
    n.enabled.clear();
    n.started_with.clear();
    n.server_token = None;
    n.agent_token = None;
    n.datastore = None;
    n.running = None;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reflashed_first_server_joins_the_server_holding_the_cluster_with_its_token() {
    let s = setup(3, 1).await;
    assert!(!s.apply().await.failed());
    let token = s
        .fleet
        .node("s2")
        .lock()
        .expect("node")
        .server_token
        .clone();
    let token = token.expect("s2's token");
    let agent_config = s.config("a1");
    reflash(&s, "s1");
    // The controller's records are gone too: the secrets come from s2.
    for f in ["token", "agent-token"] {
        std::fs::remove_file(s.dir.path().join("state").join(f)).expect("state file");
    }
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let s1 = s.config("s1");
    assert!(
        s1.contains("server: https://10.0.0.2:6443") && !s1.contains("cluster-init"),
        "{s1}"
    );
    assert!(s1.contains(&format!("token: {token}")), "{s1}");
    // One cluster: s1 joined its etcd, and the agent kept its token.
    let datastore = s.fleet.node("s1").lock().expect("node").datastore;
    assert_eq!(datastore, Some("etcd"));
    assert_eq!(s.config("a1"), agent_config);
    for n in ["s2", "s3", "a1"] {
        let changed = node(&report, n).count(crate::report::Status::Changed);
        assert_eq!(changed, 0, "{n}: {report:#?}");
    }
    // s1 holds etcd data now and keeps the server it joined.
    let again = s.apply().await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
    assert!(s.config("s1").contains("server: https://10.0.0.2:6443"));
}
