//! Nothing left behind: the agent objects of a node dropped from the
//! inventory, or of every node once `[agent] enabled = false`, are planned
//! for removal (and not removed by a plan), removed by the next apply, and
//! a re-run changes nothing. An unreachable node keeps its own. A disabled
//! agent is removed from its node too (unit, binary, token), and the
//! admission policy that confined the agents from the cluster.

use super::tests_relay::setup_with;
use super::*;
use crate::step::StepId;

const NODES: [(&str, &str, &str); 3] = [
    ("s1", "server", "x86_64"),
    ("a1", "agent", "x86_64"),
    ("a2", "agent", "x86_64"),
];

/// The agent objects the fake API holds, by path.
fn agent_objects(s: &super::tests_relay::Setup, node: &str) -> Vec<String> {
    let n = crate::cluster::agent_access::names(node);
    [
        format!(
            "/api/v1/namespaces/kube-system/serviceaccounts/{}",
            n.account
        ),
        format!("/api/v1/namespaces/kube-system/secrets/{}", n.secret),
        format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{}", n.role),
        format!(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{}",
            n.role
        ),
        format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/{}",
            n.role
        ),
        format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/{}",
            n.role
        ),
    ]
    .into_iter()
    .filter(|p| s.api.store.get(p).is_some())
    .collect()
}

fn rbac_changes(report: &RunReport, node: &str) -> Vec<String> {
    let Some(n) = report.nodes.iter().find(|n| n.name == node) else {
        return vec![];
    };
    let steps = n.steps.iter().filter(|r| r.step == StepId::AgentRbac);
    steps
        .flat_map(|r| r.changes.iter().map(ToString::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_dropped_from_the_inventory_loses_its_agent_objects_on_the_next_apply() {
    let mut s = setup_with(&NODES, "").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(agent_objects(&s, "a2").len(), 6, "a2's objects");
    s.inv.nodes.retain(|n| n.name != "a2");
    let planned = plan(&s.inv, &s.options(true)).await.expect("plan runs");
    let changes = rbac_changes(&planned, "a2");
    assert_eq!(changes.len(), 6, "{planned:#?}");
    assert!(
        changes.contains(&"ServiceAccount kube-system/pictl-agent-a2: present → deleted".into()),
        "{changes:?}"
    );
    assert!(planned.changed());
    assert_eq!(
        agent_objects(&s, "a2").len(),
        6,
        "the plan removed something"
    );
    let applied = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!applied.failed(), "{applied:#?}");
    assert_eq!(rbac_changes(&applied, "a2").len(), 6, "{applied:#?}");
    assert!(
        agent_objects(&s, "a2").is_empty(),
        "{:?}",
        agent_objects(&s, "a2")
    );
    assert_eq!(agent_objects(&s, "a1").len(), 6, "a1 lost its objects");
    let again = apply(&s.inv, &s.options(true)).await.expect("re-run");
    assert!(!again.changed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_disabled_remove_every_agent_object_and_an_unreachable_node_keeps_its_own() {
    let mut s = setup_with(&NODES, "").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    // Unreachable but still in the inventory: its token stays.
    s.fleet.node("a1").lock().expect("node").down = true;
    let again = apply(&s.inv, &s.options(true)).await.expect("re-run");
    assert!(rbac_changes(&again, "a1").is_empty(), "{again:#?}");
    assert_eq!(agent_objects(&s, "a1").len(), 6);
    s.fleet.node("a1").lock().expect("node").down = false;
    s.inv.agent.enabled = false;
    let applied = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!applied.failed(), "{applied:#?}");
    for n in ["s1", "a1", "a2"] {
        assert_eq!(rbac_changes(&applied, n).len(), 6, "{n}: {applied:#?}");
        assert!(agent_objects(&s, n).is_empty(), "{n}");
        // And on the node: nothing of the agent, its token included.
        for f in crate::steps::AGENT_FILES {
            assert!(s.file(n, f).is_none(), "{n}: {f} left");
        }
        let st = s.fleet.node(n);
        assert!(
            !st.lock()
                .expect("node")
                .active
                .contains("pictl-agent.service"),
            "{n}"
        );
    }
    // The admission policy that confined the agents goes with them.
    let policy =
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/pictl-agent-node-status";
    let binding = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/pictl-agent-node-status";
    assert!(s.api.store.get(policy).is_none() && s.api.store.get(binding).is_none());
    let s1 = applied.nodes.iter().find(|n| n.name == "s1").expect("s1");
    assert!(
        s1.steps
            .iter()
            .any(|r| r.step == StepId::AgentPolicy && r.status == super::Status::Changed),
        "{applied:#?}"
    );
    let again = apply(&s.inv, &s.options(true)).await.expect("re-run");
    assert!(!again.changed(), "{again:#?}");
}
