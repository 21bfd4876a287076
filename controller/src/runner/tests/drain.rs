//! Drains that would lose something, as `kubectl drain` refuses them: a
//! bare Pod or one with emptyDir data stops its node's drain before any
//! eviction, unless `--drain-force`; and a Pod left Terminating on a
//! NotReady node does not hold the drain until its timeout.

use super::upgrade::{
    NEW, apply_, apply_with, record, rollout, running, unschedulable, upgrade_fleet,
};
use super::*;
use crate::step::StepId;

const OLD: &str = "v1.32.5+k3s1";

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_pod_or_emptydir_data_stops_the_drain_before_any_eviction_naming_the_pods() {
    let s = upgrade_fleet(1, 2).await;
    s.api
        .pods
        .lock()
        .expect("pods")
        .extend([("default".into(), "bare".into(), "a1".into())]);
    s.api.bare.lock().expect("bare").push("default/bare".into());
    s.api
        .empty_dir
        .lock()
        .expect("empty_dir")
        .push("web/web-a1".into());
    let report = apply_(&s).await;
    assert!(report.failed());
    let why = node(&report, "a1").failed.clone().unwrap_or_default();
    for part in [
        "drain of a1 refused before evicting anything",
        "web/web-a1 (emptyDir data)",
        "default/bare (no controller)",
        "--drain-force",
        "node uncordoned and not upgraded",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    let a1: Vec<String> = rollout(&s)
        .into_iter()
        .filter(|w| w.contains("a1") || w.contains("bare"))
        .collect();
    assert_eq!(a1, ["cordon a1", "uncordon a1"], "nothing evicted");
    assert!(!unschedulable(&s, "a1"));
    assert!(record(&s, "a1").is_none(), "pictl's record dropped");
    assert_eq!(running(&s, "a1").as_deref(), Some(OLD));
    assert!(node(&report, "a2").failed.is_some(), "the rollout stopped");
    assert_eq!(running(&s, "a2").as_deref(), Some(OLD));
    assert_eq!(
        running(&s, "s1").as_deref(),
        Some(NEW),
        "s1 had nothing to lose"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_force_evicts_bare_pods_and_emptydir_data_and_upgrades() {
    let s = upgrade_fleet(1, 1).await;
    s.api
        .pods
        .lock()
        .expect("pods")
        .push(("default".into(), "bare".into(), "a1".into()));
    s.api.bare.lock().expect("bare").push("default/bare".into());
    let mut opts = s.options();
    opts.upgrade.drain_force = true;
    let report = apply_with(&s, &opts).await;
    assert!(!report.failed(), "{report:#?}");
    let a1: Vec<String> = rollout(&s)
        .into_iter()
        .filter(|w| w.contains("a1") || w.contains("bare"))
        .collect();
    assert_eq!(
        a1,
        [
            "cordon a1",
            "evict web/web-a1",
            "evict default/bare",
            "upgrade a1",
            "uncordon a1"
        ]
    );
    assert_eq!(running(&s, "a1").as_deref(), Some(NEW));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_names_the_pods_that_would_stop_a_drain() {
    let s = upgrade_fleet(1, 1).await;
    s.api
        .pods
        .lock()
        .expect("pods")
        .push(("default".into(), "bare".into(), "a1".into()));
    s.api.bare.lock().expect("bare").push("default/bare".into());
    let report = s.plan().await;
    let a1: Vec<String> = node(&report, "a1")
        .steps
        .iter()
        .filter(|r| r.step == StepId::Drain)
        .flat_map(|r| r.changes.iter().map(ToString::to_string))
        .collect();
    let a1 = a1.join("; ");
    assert!(
        a1.contains("drain refused: default/bare (no controller) would be lost (--drain-force evicts them), uncordoned, not upgraded"),
        "{a1}"
    );
    let s1: Vec<String> = node(&report, "s1")
        .steps
        .iter()
        .flat_map(|r| r.changes.iter().map(ToString::to_string))
        .collect();
    assert!(
        s1.join("; ").contains("drained (evicts web/web-s1)"),
        "{s1:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_terminating_on_a_not_ready_node_counts_as_gone_past_its_grace_period() {
    let s = upgrade_fleet(1, 1).await;
    // a1's kubelet is gone: its pod has been Terminating for a minute.
    s.api
        .not_ready
        .lock()
        .expect("not_ready")
        .insert("a1".into(), OLD.into());
    let past = k8s_openapi::jiff::Timestamp::now().as_second() - 60;
    let past = k8s_openapi::jiff::Timestamp::from_second(past).expect("time");
    s.api
        .terminating
        .lock()
        .expect("terminating")
        .insert("web/web-a1".into(), past.to_string());
    let mut opts = s.options();
    opts.upgrade.drain_timeout = Duration::from_secs(60);
    let report = apply_with(&s, &opts).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(running(&s, "a1").as_deref(), Some(NEW));
    assert!(!unschedulable(&s, "a1"));
    assert!(
        s.api
            .pods
            .lock()
            .expect("pods")
            .iter()
            .any(|p| p.1 == "web-a1"),
        "the API still has the pod: only its kubelet could remove it"
    );
}
