//! Certificates inside K3s's renewal window are renewed by a restart, one
//! node at a time, servers first, each drained and uncordoned; a K3s that
//! does not renew fails its node by name and stops the rollout.

use super::*;
use crate::step::StepId;

/// A converged cluster (the fake API knows its nodes) whose `due` nodes'
/// certificates end in 30 days, the others' in 300.
async fn expiring(servers: usize, agents: usize, due: &[&str]) -> Setup {
    let mut s = setup(servers, agents).await;
    let first = s.apply().await;
    assert!(!first.failed(), "{first:#?}");
    s.api.fleet = Some(s.fleet.clone());
    for n in s.inv.nodes.iter().map(|n| n.name.clone()) {
        let days = if due.contains(&n.as_str()) { 30 } else { 300 };
        s.fleet.node(&n).lock().expect("node").sign_certs(days);
    }
    s.fleet.log.lock().expect("log").clear();
    s
}

fn days(s: &Setup, name: &str) -> i64 {
    s.fleet
        .node(name)
        .lock()
        .expect("node")
        .certs
        .as_ref()
        .expect("certs")
        .0
}

/// The nodes restarted by a renewal, in order.
fn renewals(s: &Setup) -> Vec<String> {
    s.fleet
        .calls()
        .into_iter()
        .filter(|(_, c)| matches!(c, Call::Exec(w) if w == "dd=$2"))
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_names_the_nodes_inside_the_window_and_apply_renews_them_one_at_a_time() {
    let s = expiring(3, 2, &["a1", "s2"]).await;
    let plan = s.plan().await;
    assert!(plan.changed() && !plan.failed(), "{plan:#?}");
    for (n, order) in [("s2", "node 1 of 2"), ("a1", "node 2 of 2")] {
        let text = step_text(&plan, n, StepId::Certificates);
        for part in ["client-", "(29 days left)", order, "renewed by a restart"] {
            assert!(text.contains(part), "{n}: {part:?} not in {text}");
        }
    }
    for n in ["s1", "s3", "a2"] {
        assert!(step_text(&plan, n, StepId::Certificates).is_empty(), "{n}");
    }
    s.assert_nothing_written();
    assert_eq!((days(&s, "s2"), days(&s, "a1")), (30, 30));

    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    // Servers first, one at a time: s2's restart, then a1's.
    assert_eq!(renewals(&s), ["s2", "a1"]);
    let calls = s.fleet.calls();
    let at = |n: &str, what: &str| {
        calls
            .iter()
            .position(|(who, c)| {
                matches!(c, Call::Api(a) if a == &format!("{what} {n}")) && who == "api"
            })
            .unwrap_or_else(|| panic!("no {what} {n}: {calls:?}"))
    };
    assert!(at("s2", "uncordon") < at("a1", "cordon"), "{calls:?}");
    for n in ["s2", "a1"] {
        assert_eq!(days(&s, n), 365, "{n} not renewed");
        assert!(step_text(&report, n, StepId::Certificates).contains("364 days left"));
        assert!(
            s.api.node(n)["spec"]["unschedulable"].is_null(),
            "{n} left cordoned"
        );
    }
    assert_eq!((days(&s, "s1"), days(&s, "a2")), (300, 300));
    let again = s.apply().await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_k3s_that_does_not_renew_fails_its_node_by_name_and_stops_the_rollout() {
    let s = expiring(1, 2, &["s1", "a1"]).await;
    s.fleet.node("s1").lock().expect("node").keeps_certs = true;
    let report = s.apply().await;
    assert!(report.failed());
    let why = node(&report, "s1").failed.clone().unwrap_or_default();
    for part in [
        "K3s restarted but did not renew",
        "client-",
        "29 days left",
        "120 days",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    let a1 = node(&report, "a1").failed.clone().unwrap_or_default();
    assert!(a1.contains("renewal of s1 failed before it"), "{a1}");
    assert_eq!(renewals(&s), ["s1"]);
    assert_eq!(days(&s, "a1"), 30);
    assert!(
        s.api.node("s1")["spec"]["unschedulable"].is_null(),
        "s1 left cordoned"
    );
}
