//! Labels and taints reach the Node through the API, without a restart,
//! and a write racing another writer is planned again and retried once.

use super::*;

/// A Node written by someone else between pictl's read and its patch (K3s's
/// node controller) refuses the patch (409); pictl reads it again, plans
/// against it, and patches once more, without losing the other write.
#[tokio::test(flavor = "multi_thread")]
async fn a_label_write_racing_another_writer_is_planned_again_and_retried_once() {
    let mut s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    s.inv.nodes[1].labels = [("zone".to_string(), "shelf".to_string())].into();
    s.api.requests.lock().expect("requests").clear();
    *s.api.races.lock().expect("races") = 1;
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(s.api.node("a1")["metadata"]["labels"]["zone"], "shelf");
    let requests = s.api.requests.lock().expect("requests").clone();
    let of_a1 = |m: &str| {
        requests
            .iter()
            .filter(|r| r.split('?').next() == Some(&format!("{m} /api/v1/nodes/a1")[..]))
            .count()
    };
    assert_eq!((of_a1("PATCH"), of_a1("GET")), (2, 1), "{requests:#?}");
    // Two racing writes in a row: the second refusal is the run's failure.
    s.inv.nodes[1].labels = [("zone".to_string(), "desk".to_string())].into();
    *s.api.races.lock().expect("races") = 2;
    let report = s.apply().await;
    let a1 = node(&report, "a1");
    let labels = a1
        .steps
        .iter()
        .find(|r| r.step == crate::step::StepId::NodeLabels);
    let message = labels.and_then(|r| r.message.clone()).unwrap_or_default();
    assert!(message.contains("labelling Node a1"), "{a1:#?}");
    assert!(
        message.contains("the object has been modified"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn label_and_taint_changes_reach_the_node_through_the_api_without_a_restart() {
    let mut s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    let execs_before = s
        .fleet
        .calls()
        .iter()
        .filter(|(_, c)| matches!(c, Call::Exec(_)))
        .count();
    s.inv.nodes[1].labels = [("zone".to_string(), "shelf".to_string())].into();
    s.inv.nodes[1].taints = vec!["edge=true:NoSchedule".into()];
    let plan_report = s.plan().await;
    let planned = node(&plan_report, "a1")
        .steps
        .iter()
        .find(|r| r.step == crate::step::StepId::NodeLabels)
        .cloned();
    assert_eq!(planned.map(|r| r.status), Some(Status::Changed));
    assert!(
        s.api
            .requests
            .lock()
            .expect("requests")
            .iter()
            .all(|r| !r.starts_with("PATCH")),
        "plan patched"
    );
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let a1 = s.api.node("a1");
    assert_eq!(a1["metadata"]["labels"]["zone"], "shelf");
    assert_eq!(a1["spec"]["taints"][0]["key"], "edge");
    // No restart: the node's K3s was not touched.
    let execs = s
        .fleet
        .calls()
        .iter()
        .filter(|(_, c)| matches!(c, Call::Exec(_)))
        .count();
    assert_eq!(
        execs, execs_before,
        "a label change ran commands on the node"
    );
    // Removing them from the inventory removes them from the Node.
    s.inv.nodes[1].labels.clear();
    s.inv.nodes[1].taints.clear();
    assert!(!s.apply().await.failed());
    let a1 = s.api.node("a1");
    assert!(a1["metadata"]["labels"].get("zone").is_none(), "{a1}");
    assert_eq!(a1["spec"]["taints"], serde_json::json!([]));
    assert!(!s.apply().await.changed());
}
