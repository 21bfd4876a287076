//! Scale-down: a Node the inventory no longer names is warned about and
//! left without `--prune-nodes`; with it, plan lists it and writes nothing,
//! and apply drains it, takes an etcd member out of etcd first (never
//! breaking the quorum), and deletes the Node and its node-password Secret.

use super::*;
use crate::step::StepId;

const PASSWORD: &str = "/api/v1/namespaces/kube-system/secrets/old.node-password.k3s";

/// A converged cluster whose API also lists `old` (not in the inventory),
/// with K3s's node-password Secret; `etcd`: these Nodes are etcd members.
async fn with_stray(servers: usize, agents: usize, etcd: &[&str]) -> Setup {
    let mut s = setup(servers, agents).await;
    assert!(!s.apply().await.failed());
    s.api.nodes.push("old".into());
    for n in etcd {
        s.api.etcd_node(n);
    }
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "old.node-password.k3s", "namespace": "kube-system"}});
    s.api.store.put(PASSWORD, secret);
    s
}

fn pruning(s: &Setup) -> Options {
    Options {
        upgrade: Upgrade {
            prune_nodes: true,
            ..Upgrade::default()
        },
        ..s.options()
    }
}

fn dropped(r: &RunReport) -> Option<&NodeReport> {
    r.nodes
        .iter()
        .find(|n| n.name == "old" && n.role == "dropped")
}

fn step_text(r: &RunReport) -> String {
    let old = dropped(r).expect("old reported");
    let steps = old.steps.iter().filter(|s| s.step == StepId::NodeDeleted);
    steps
        .map(|s| serde_json::to_string(s).expect("json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_flag_a_node_missing_from_the_inventory_is_warned_about_and_left() {
    let s = with_stray(1, 1, &[]).await;
    for is_plan in [true, false] {
        let recorder = Arc::new(super::joining::Warnings::default());
        let mut opts = s.options();
        opts.progress = recorder.clone();
        let report = if is_plan {
            plan(&s.inv, &opts).await
        } else {
            apply(&s.inv, &opts).await
        };
        let report = report.expect("runs");
        assert!(!report.failed() && !report.changed(), "{report:#?}");
        assert!(dropped(&report).is_none());
        let warned = recorder.0.lock().expect("warnings").clone();
        let about: Vec<&String> = warned.iter().filter(|w| w.contains("old")).collect();
        assert_eq!(about.len(), 1, "{warned:?}");
        assert!(about[0].contains("not in the inventory") && about[0].contains("--prune-nodes"));
    }
    assert!(s.api.deleted.lock().expect("deleted").is_empty());
    assert!(s.api.store.get(PASSWORD).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_flag_plan_lists_it_and_apply_drains_and_deletes_it() {
    let s = with_stray(1, 1, &[]).await;
    let opts = pruning(&s);
    let plan = plan(&s.inv, &opts).await.expect("plan");
    assert!(plan.changed() && !plan.failed(), "{plan:#?}");
    let text = step_text(&plan);
    for part in [
        "node old",
        "in the cluster, not in the inventory",
        "cordoned, drained, deleted",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(s.api.deleted.lock().expect("deleted").is_empty());
    s.api
        .pods
        .lock()
        .expect("pods")
        .push(("web".into(), "web-1".into(), "old".into()));

    let report = apply(&s.inv, &opts).await.expect("apply");
    assert!(!report.failed() && report.changed(), "{report:#?}");
    assert!(step_text(&report).contains("drained, deleted"));
    assert_eq!(*s.api.deleted.lock().expect("deleted"), ["old"]);
    assert!(s.api.store.get(PASSWORD).is_none(), "node password kept");
    let requests = s.api.requests.lock().expect("requests").clone();
    let evicted = requests.iter().position(|r| r.contains("web-1/eviction"));
    let deleted = requests
        .iter()
        .position(|r| r.starts_with("DELETE /api/v1/nodes/old"));
    assert!(evicted.is_some() && evicted < deleted, "{requests:?}");
    let again = apply(&s.inv, &opts).await.expect("apply");
    assert!(!again.changed() && !again.failed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_etcd_member_leaves_etcd_first_and_never_below_a_quorum() {
    let s = with_stray(3, 0, &["s1", "s2", "s3", "old"]).await;
    let report = apply(&s.inv, &pruning(&s)).await.expect("apply");
    assert!(!report.failed(), "{report:#?}");
    assert!(step_text(&report).contains("out of etcd, deleted"));
    assert_eq!(*s.api.deleted.lock().expect("deleted"), ["old"]);

    // One member of two: taking it out leaves etcd without a quorum.
    let s = with_stray(1, 0, &["s1", "old"]).await;
    let report = apply(&s.inv, &pruning(&s)).await.expect("apply");
    assert!(report.failed());
    let why = dropped(&report)
        .and_then(|d| d.failed.clone())
        .unwrap_or_default();
    for part in [
        "removing node old would leave etcd 1 of its 2 members",
        "fewer than the 2 a quorum needs",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    assert!(s.api.deleted.lock().expect("deleted").is_empty());
    assert!(s.api.store.get(PASSWORD).is_some());
}
