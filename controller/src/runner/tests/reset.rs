//! `reset`: shown and nothing removed without `--yes`, agents removed
//! before servers, one agent's Node deleted and the rest left.

use super::*;

pub(super) async fn reset(s: &Setup, only: &[&str], confirmed: bool) -> RunReport {
    let only: Vec<String> = only.iter().map(|n| n.to_string()).collect();
    super::reset(&s.inv, &s.options(), &only, confirmed)
        .await
        .expect("reset runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_without_yes_shows_what_it_would_remove_and_removes_nothing() {
    let s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    let before = s.fleet.calls().len();
    let report = reset(&s, &[], false).await;
    assert!(report.changed() && !report.failed(), "{report:#?}");
    let writes: Vec<_> = s.fleet.calls()[before..]
        .iter()
        .filter(|(_, c)| is_write(c))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(
        s.fleet
            .node("s1")
            .lock()
            .expect("node")
            .files
            .contains_key(paths::K3S_BIN)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_removes_agents_before_servers_and_a_second_reset_changes_nothing() {
    let s = setup(1, 2).await;
    assert!(!s.apply().await.failed());
    let before = s.fleet.calls().len();
    let report = reset(&s, &[], true).await;
    assert!(!report.failed(), "{report:#?}");
    let calls = s.fleet.calls();
    let first = |n: &str| {
        calls[before..]
            .iter()
            .position(|(m, c)| m == n && matches!(c, Call::Put(_)))
            .expect("reset")
    };
    assert!(
        first("a1") < first("s1") && first("a2") < first("s1"),
        "{calls:?}"
    );
    for n in ["s1", "a1", "a2"] {
        let st = s.fleet.node(n);
        let st = st.lock().expect("node");
        assert!(
            st.files.is_empty() && st.active.is_empty(),
            "{n} kept {:?}",
            st.files.keys()
        );
    }
    let mark = s.fleet.calls().len();
    let again = reset(&s, &[], true).await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
    let writes: Vec<_> = s.fleet.calls()[mark..]
        .iter()
        .filter(|(_, c)| is_write(c))
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "a second reset wrote (a record is a write too): {writes:?}"
    );
    // The whole cluster is gone: its kubeconfig is forgotten.
    assert!(!crate::state::kubeconfig_path(&s.inv).exists());
    assert!(s.api.deleted.lock().expect("deleted").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn resetting_one_agent_deletes_its_node_and_leaves_the_rest() {
    let s = setup(1, 2).await;
    assert!(!s.apply().await.failed());
    let report = reset(&s, &["a2"], true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(report.nodes.len(), 1);
    assert_eq!(*s.api.deleted.lock().expect("deleted"), ["a2"]);
    assert!(
        s.fleet
            .node("a1")
            .lock()
            .expect("node")
            .active
            .contains("k3s-agent.service")
    );
    assert!(crate::state::kubeconfig_path(&s.inv).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn resetting_two_of_three_ha_servers_is_refused_before_anything_is_touched() {
    let s = setup(3, 1).await;
    assert!(!s.apply().await.failed());
    let mark = s.fleet.calls().len();
    let only = vec!["s2".to_string(), "s3".to_string()];
    for confirmed in [false, true] {
        let e = super::reset(&s.inv, &s.options(), &only, confirmed)
            .await
            .expect_err("two of three servers leave no quorum");
        let text = e.to_string();
        assert!(matches!(e, RunError::QuorumLoss(_)), "{e:?}");
        for words in [
            "resetting servers s2, s3",
            "3 servers hold the cluster, resetting 2 leaves 1",
            "etcd needs 2 of 3",
            "at most 1 of them",
        ] {
            assert!(text.contains(words), "{words:?} not in: {text}");
        }
    }
    let writes: Vec<_> = s.fleet.calls()[mark..]
        .iter()
        .filter(|(_, c)| is_write(c))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    for n in ["s2", "s3"] {
        let st = s.fleet.node(n);
        assert!(
            st.lock().expect("node").active.contains("k3s.service"),
            "{n}"
        );
    }
    assert!(s.api.deleted.lock().expect("deleted").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_ha_server_leaves_etcd_before_its_k3s_is_removed() {
    let mut s = setup(3, 1).await;
    assert!(!s.apply().await.failed());
    for n in ["s1", "s2", "s3"] {
        s.api.etcd_node(n);
    }
    s.api.fleet = Some(s.fleet.clone());
    let mark = s.fleet.calls().len();
    let report = reset(&s, &["s3"], true).await;
    assert!(!report.failed(), "{report:#?}");
    let calls = s.fleet.calls();
    let asked = calls[mark..]
        .iter()
        .position(|(n, c)| n == "api" && matches!(c, Call::Api(w) if w.contains("nodes/s3")))
        .expect("the removal asked through the API");
    let removed = calls[mark..]
        .iter()
        .position(|(n, c)| n == "s3" && is_write(c))
        .expect("s3 reset");
    assert!(asked < removed, "{:?}", &calls[mark..]);
    let steps: Vec<_> = report.nodes[0].steps.iter().map(|r| r.step).collect();
    assert!(
        steps.contains(&crate::step::StepId::EtcdMember),
        "{steps:?}"
    );
    for n in ["s1", "s2"] {
        let st = s.fleet.node(n);
        assert!(
            st.lock().expect("node").active.contains("k3s.service"),
            "{n}"
        );
    }
    assert_eq!(*s.api.deleted.lock().expect("deleted"), ["s3"]);
}
