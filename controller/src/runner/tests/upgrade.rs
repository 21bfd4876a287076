//! Upgrades with cordon and drain, against the fake fleet and API: the
//! order, `--max-unavailable`, a drain blocked by a budget, what the next
//! run finishes, and a plan that writes nothing.

use super::*;
use crate::inventory::K3sRelease;
use crate::step::StepId;

pub(super) const NEW: &str = "v1.33.1+k3s1";

/// An apply, retried while the cluster lock is busy: other tests of this
/// process fork children (`sh`) that hold a copy of the lock's file until
/// they exec, so a lock released a moment ago can still be held.
pub(super) async fn apply_with(s: &Setup, opts: &Options) -> RunReport {
    for _ in 0..100 {
        match apply(&s.inv, opts).await {
            Err(RunError::State(crate::state::StateError::Locked { .. })) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.expect("apply runs"),
        }
    }
    panic!("the cluster lock stayed busy");
}

pub(super) async fn apply_(s: &Setup) -> RunReport {
    apply_with(s, &s.options()).await
}

/// A cluster converged on v1.32.5 with one pod per node, whose inventory
/// now asks for v1.33.1 (uploaded binaries report it).
pub(super) async fn upgrade_fleet(servers: usize, agents: usize) -> Setup {
    let mut s = setup(servers, agents).await;
    let first = apply_(&s).await;
    assert!(!first.failed(), "{first:#?}");
    *s.fleet.release.lock().expect("release") = Some(NEW.into());
    s.api.fleet = Some(s.fleet.clone());
    let pods: Vec<(String, String, String)> = s
        .api
        .nodes
        .iter()
        .map(|n| ("web".into(), format!("web-{n}"), n.clone()))
        .collect();
    *s.api.pods.lock().expect("pods") = pods;
    s.inv.cluster.k3s = K3sRelease::Version(NEW.into());
    s.fleet.log.lock().expect("log").clear();
    s
}

/// The rollout as it happened: `cordon N`, `evict NS/P`, `upgrade N`
/// (its binary uploaded), `uncordon N`, in order.
pub(super) fn rollout(s: &Setup) -> Vec<String> {
    s.fleet
        .calls()
        .into_iter()
        .filter_map(|(n, c)| match c {
            Call::Api(what) if !what.starts_with("PATCH") && !what.starts_with("refused") => {
                Some(what)
            }
            Call::Put(p) if p == paths::K3S_BIN => Some(format!("upgrade {n}")),
            _ => None,
        })
        .collect()
}

pub(super) fn running(s: &Setup, name: &str) -> Option<String> {
    s.fleet.node(name).lock().expect("node").running.clone()
}

pub(super) fn unschedulable(s: &Setup, name: &str) -> bool {
    s.api.node(name)["spec"]["unschedulable"] == serde_json::json!(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_one_at_a_time_then_agents_each_cordoned_drained_upgraded_and_uncordoned() {
    let s = upgrade_fleet(3, 2).await;
    let clients_before = s.api.servers.lock().expect("servers").len();
    let report = apply_(&s).await;
    assert!(!report.failed(), "{report:#?}");
    // The upgrade's client is the run's: the kubeconfig phase builds no other.
    let clients = s.api.servers.lock().expect("servers").len() - clients_before;
    assert_eq!(clients, 1, "API clients built in one upgrade run");
    let mut want = Vec::new();
    for n in ["s1", "s2", "s3", "a1", "a2"] {
        want.extend([
            format!("cordon {n}"),
            format!("evict web/web-{n}"),
            format!("upgrade {n}"),
            format!("uncordon {n}"),
        ]);
    }
    assert_eq!(rollout(&s), want);
    for n in ["s1", "s2", "s3", "a1", "a2"] {
        assert_eq!(running(&s, n).as_deref(), Some(NEW), "{n}");
        assert!(!unschedulable(&s, n), "{n} left cordoned");
        let steps: Vec<StepId> = node(&report, n).steps.iter().map(|r| r.step).collect();
        assert!(
            steps.contains(&StepId::Drain) && steps.contains(&StepId::Uncordon),
            "{n}: {steps:?}"
        );
    }
    let again = apply_(&s).await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_unavailable_upgrades_that_many_agents_at_once_and_no_more() {
    let s = upgrade_fleet(1, 3).await;
    let mut opts = s.options();
    opts.upgrade.max_unavailable = 2;
    let report = apply_with(&s, &opts).await;
    assert!(!report.failed(), "{report:#?}");
    let (mut cordoned, mut most) = (std::collections::BTreeSet::new(), 0);
    for step in rollout(&s) {
        if let Some(n) = step.strip_prefix("cordon ") {
            cordoned.insert(n.to_string());
        } else if let Some(n) = step.strip_prefix("uncordon ") {
            cordoned.remove(n);
        }
        most = most.max(cordoned.len());
    }
    assert_eq!(most, 2, "{:?}", rollout(&s));
    for n in ["s1", "a1", "a2", "a3"] {
        assert_eq!(running(&s, n).as_deref(), Some(NEW), "{n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_that_times_out_names_the_budget_and_leaves_the_node_uncordoned_and_not_upgraded() {
    let mut s = upgrade_fleet(1, 2).await;
    s.api.refuse_evictions = true;
    let mut opts = s.options();
    opts.upgrade.drain_timeout = Duration::from_millis(1500);
    let report = apply_with(&s, &opts).await;
    assert!(report.failed());
    let why = node(&report, "s1").failed.clone().unwrap_or_default();
    for part in [
        "drain of s1 timed out after 1 s",
        "evicting pod web/web-s1",
        "PodDisruptionBudget web/web (needs 3 healthy pods, has 3)",
        "node uncordoned and not upgraded",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    assert_eq!(rollout(&s), ["cordon s1", "uncordon s1"]);
    assert!(!unschedulable(&s, "s1"));
    assert!(record(&s, "s1").is_none(), "pictl's record dropped");
    assert_eq!(running(&s, "s1").as_deref(), Some("v1.32.5+k3s1"));
    for a in ["a1", "a2"] {
        assert!(node(&report, a).failed.is_some(), "{a} went on after s1");
        assert_eq!(running(&s, a).as_deref(), Some("v1.32.5+k3s1"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upgrade_is_finished_and_uncordoned_by_the_next_run() {
    let s = upgrade_fleet(1, 1).await;
    // The restart fails: a1 (an agent: no rollback) stays cordoned by
    // pictl, as after a crash.
    s.fleet.node("a1").lock().expect("node").refuse = Some("systemctl: interrupted".into());
    let first = apply_(&s).await;
    assert!(first.failed());
    assert!(unschedulable(&s, "a1"));
    // pictl's record is a ConfigMap, none on the Node (which the node can write).
    assert_eq!(record(&s, "a1").expect("recorded")["data"]["node"], "a1");
    assert!(s.api.node("a1")["metadata"]["annotations"].is_null());
    s.fleet.node("a1").lock().expect("node").refuse = None;
    let second = apply_(&s).await;
    assert!(!second.failed(), "{second:#?}");
    assert_eq!(running(&s, "a1").as_deref(), Some(NEW));
    assert!(!unschedulable(&s, "a1"));
    assert!(record(&s, "a1").is_none(), "pictl's record dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_pictl_left_cordoned_is_uncordoned_and_one_the_user_cordoned_is_not() {
    let s = setup(1, 2).await;
    assert!(!apply_(&s).await.failed());
    let mut api = s.api.clone();
    api.fleet = Some(s.fleet.clone());
    let cordon = |name: &str, ours: bool| {
        let mut n = api.node(name);
        n["spec"]["unschedulable"] = serde_json::json!(true);
        if ours {
            let path = record_path(name);
            let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": crate::cluster::cordons::name(name), "namespace": "kube-system"},
                "data": {"node": name}});
            s.api.store.put(&path, cm);
        } else {
            // What older pictl wrote, and what root on the node can write too.
            n["metadata"]["annotations"] =
                serde_json::json!({crate::cluster::nodes::CORDONED_ANNOTATION: "true"});
        }
        api.objects.lock().expect("objects").insert(name.into(), n);
    };
    cordon("a1", true);
    cordon("a2", false);
    let mut opts = s.options();
    opts.api = Arc::new(api.clone());
    let report = apply_with(&s, &opts).await;
    assert!(!report.failed(), "{report:#?}");
    let a1: Vec<StepId> = node(&report, "a1").steps.iter().map(|r| r.step).collect();
    assert!(a1.contains(&StepId::Uncordon), "{a1:?}");
    assert!(api.node("a1")["spec"].get("unschedulable").is_none());
    assert!(record(&s, "a1").is_none(), "a1's record dropped");
    assert_eq!(
        api.node("a2")["spec"]["unschedulable"],
        true,
        "the user's cordon, whatever the Node's annotation says"
    );
    let touched: Vec<_> = s
        .fleet
        .calls()
        .into_iter()
        .filter(|(_, c)| matches!(c, Call::Api(w) if w.contains("a2")))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_the_user_cordoned_is_drained_and_upgraded_but_stays_cordoned() {
    let s = upgrade_fleet(1, 1).await;
    let mut n = s.api.node("a1");
    n["spec"]["unschedulable"] = serde_json::json!(true);
    s.api
        .objects
        .lock()
        .expect("objects")
        .insert("a1".into(), n);
    let report = apply_(&s).await;
    assert!(!report.failed(), "{report:#?}");
    let steps = rollout(&s);
    let a1: Vec<&String> = steps.iter().filter(|w| w.ends_with("a1")).collect();
    assert_eq!(a1, ["evict web/web-a1", "upgrade a1"]);
    assert!(unschedulable(&s, "a1"));
    assert_eq!(running(&s, "a1").as_deref(), Some(NEW));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_the_upgrade_order_and_the_drains_and_writes_nothing() {
    let s = upgrade_fleet(1, 2).await;
    s.api.requests.lock().expect("requests").clear();
    let report = s.plan().await;
    assert!(report.changed() && !report.failed(), "{report:#?}");
    let drain_of = |n: &str| -> String {
        node(&report, n)
            .steps
            .iter()
            .filter(|r| r.step == StepId::Drain)
            .flat_map(|r| r.changes.iter().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let s1 = drain_of("s1");
    assert!(
        s1.contains("v1.32.5+k3s1 → v1.33.1+k3s1 (server 1 of 1, one at a time)"),
        "{s1}"
    );
    assert!(
        s1.contains("cordoned, drained (evicts web/web-s1), upgraded, uncordoned"),
        "{s1}"
    );
    assert!(
        drain_of("a2").contains("(agents, batch 2 of 2, 1 at a time)"),
        "{}",
        drain_of("a2")
    );
    s.assert_nothing_written();
    let requests = s.api.requests.lock().expect("requests").clone();
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "{requests:?}"
    );
    assert!(s.api.pods.lock().expect("pods").len() == 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_fails_verification_leaves_every_node_uncordoned_and_undrained() {
    let mut s = upgrade_fleet(1, 1).await;
    s.inv.cluster.k3s = K3sRelease::Version("v1.33.9+k3s1".into());
    let report = apply_(&s).await;
    assert!(report.failed());
    let steps = serde_json::to_string(&node(&report, "s1").steps).expect("json");
    assert!(steps.contains("does not match"), "{steps}");
    assert!(steps.contains("node not cordoned"), "{steps}");
    assert_eq!(
        rollout(&s),
        Vec::<String>::new(),
        "nothing cordoned or evicted"
    );
    assert_eq!(s.api.pods.lock().expect("pods").len(), 2);
}

/// Where pictl records that it cordoned `node`.
fn record_path(node: &str) -> String {
    format!(
        "/api/v1/namespaces/kube-system/configmaps/{}",
        crate::cluster::cordons::name(node)
    )
}

/// pictl's record that it cordoned `node`, if any.
pub(super) fn record(s: &Setup, node: &str) -> Option<serde_json::Value> {
    s.api.store.get(&record_path(node))
}
