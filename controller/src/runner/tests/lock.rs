//! The node lock: a node another run holds stops `apply` before anything is
//! written (the holder named); `reset` writes nothing to it; a run's locks
//! end with its connections.

use super::*;

const OTHER: &str = "alice@laptop (pictl pid 7, since 2026-12-07T10:00:00Z), pid 4242 on the node";

/// Another controller's connection holding `node`'s lock.
fn held_elsewhere(s: &Setup, node: &str) {
    s.fleet.node(node).lock().expect("node").lock = Some((u64::MAX, OTHER.into()));
}

fn no_lock_left(s: &Setup) {
    for n in s.fleet.nodes.lock().expect("fleet").values() {
        assert_eq!(
            n.lock().expect("node").lock,
            None,
            "a lock outlived its run"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_another_run_holds_stops_apply_before_any_write_naming_the_holder() {
    let s = setup(1, 2).await;
    held_elsewhere(&s, "a2");
    let err = apply(&s.inv, &s.options()).await.expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "node a2 is being changed by another pictl run ({OTHER})"
        )),
        "{text}"
    );
    assert!(text.contains("sudo kill PID"), "{text}");
    let written = s.writes_since(0);
    assert!(written.is_empty(), "{written:?}");
    assert!(
        !s.fleet
            .calls()
            .iter()
            .any(|(n, c)| n == "a2" && *c == Call::Facts { record: true }),
        "a2's facts were read (and recorded) under another run's lock"
    );

    // That run ended: the next apply converges, and leaves no lock behind.
    s.fleet.node("a2").lock().expect("node").lock = None;
    let report = s.apply().await;
    assert!(report.changed() && !report.failed(), "{report:#?}");
    no_lock_left(&s);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_writes_nothing_to_a_node_another_run_holds() {
    let s = setup(1, 2).await;
    assert!(!s.apply().await.failed());
    held_elsewhere(&s, "a1");
    let mark = s.fleet.calls().len();
    let report = super::reset::reset(&s, &["a1"], true).await;
    let a1 = node(&report, "a1");
    assert!(
        a1.failed.as_deref().is_some_and(|f| f.contains(OTHER)),
        "{report:#?}"
    );
    let writes: Vec<_> = (s.writes_since(mark).into_iter())
        .filter(|(n, _)| n == "a1")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(
        s.fleet
            .node("a1")
            .lock()
            .expect("node")
            .files
            .contains_key("/usr/local/bin/k3s")
    );
}
