//! `--nodes` on plan and apply: only the named nodes change; a server a
//! named agent needs is checked and left as it is; other agents are not
//! contacted.

use super::*;
use crate::report::StepId;

fn drift(s: &Setup, node: &str) {
    let state = s.fleet.node(node);
    state
        .lock()
        .expect("node")
        .files
        .insert(paths::CONFIG.into(), b"edited".to_vec());
}

fn limited(s: &Setup, names: &[&str]) -> Options {
    Options {
        only: names.iter().map(|n| n.to_string()).collect(),
        ..s.options()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_named_nodes_change_and_their_server_is_checked_not_changed() {
    let s = setup(1, 2).await;
    assert!(!s.apply().await.failed());
    for n in ["s1", "a1", "a2"] {
        drift(&s, n);
    }
    let before = s.fleet.calls().len();
    let plan = plan(&s.inv, &limited(&s, &["a1"])).await.expect("plan");
    assert!(
        s.writes_since(before).is_empty(),
        "{:?}",
        s.writes_since(before)
    );
    assert!(step_text(&plan, "a1", StepId::K3sConfig).contains("modified"));
    let held = step_text(&plan, "s1", StepId::K3sConfig);
    assert!(
        held.contains("skipped") && held.contains("not in --nodes"),
        "{held}"
    );
    assert!(plan.nodes.iter().all(|n| n.name != "a2"), "{plan:#?}");

    let before = s.fleet.calls().len();
    let report = apply(&s.inv, &limited(&s, &["a1"])).await.expect("apply");
    assert!(!report.failed(), "{report:#?}");
    let calls = s.fleet.calls()[before..].to_vec();
    assert!(
        calls.iter().all(|(n, _)| n != "a2"),
        "a2 was contacted: {calls:?}"
    );
    let s1_writes: Vec<_> = s
        .writes_since(before)
        .into_iter()
        .filter(|(n, _)| n == "s1")
        .collect();
    assert!(s1_writes.is_empty(), "s1 was changed: {s1_writes:?}");
    assert_eq!(s.config("s1"), "edited");
    assert_eq!(s.config("a2"), "edited");
    assert_ne!(s.config("a1"), "edited");
    // The whole cluster's run then repairs the rest.
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert_ne!(s.config("s1"), "edited");
    assert_ne!(s.config("a2"), "edited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_not_in_the_inventory_is_refused_before_any_node_is_contacted() {
    let s = setup(1, 1).await;
    let err = apply(&s.inv, &limited(&s, &["a1", "a9"]))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("no node named \"a9\""), "{err}");
    assert!(s.fleet.calls().is_empty());
}
