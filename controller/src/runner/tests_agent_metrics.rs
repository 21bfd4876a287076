//! `[agent] metrics = "pod-network"` against the fakes: each agent gets a
//! listener on its Node's pod-network address answering only the cluster's
//! pod CIDR, its firewall drop-in admits that CIDR, the Node is annotated
//! for Prometheus, a re-run changes nothing, and going back to loopback
//! takes all of it away.

use super::tests_relay::{Setup, setup_with};
use super::*;
use crate::facts::paths;
use crate::runner::agent_metrics::ANNOTATION;
use crate::step::StepId;

const NODES: [(&str, &str, &str); 2] = [("s1", "server", "x86_64"), ("a1", "agent", "aarch64")];

fn text(s: &Setup, node: &str, path: &str) -> String {
    String::from_utf8(s.file(node, path).unwrap_or_default()).expect("utf-8")
}

fn annotation(s: &Setup, node: &str) -> Option<String> {
    let objects = s.api.objects.lock().expect("objects");
    let node = objects.get(node)?;
    node["metadata"]["annotations"][ANNOTATION]
        .as_str()
        .map(String::from)
}

fn metrics_changes(report: &RunReport, node: &str) -> Vec<String> {
    let node = report.nodes.iter().find(|n| n.name == node).expect("node");
    let steps = node.steps.iter().filter(|r| r.step == StepId::AgentMetrics);
    steps
        .flat_map(|r| r.changes.iter().map(ToString::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_network_metrics_listen_on_the_pod_cidr_gateway_and_annotate_the_node() {
    let s = setup_with(&NODES, "metrics = \"pod-network\"\n").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    for (i, (node, _, _)) in NODES.iter().enumerate() {
        let conf = text(&s, node, paths::AGENT_PUBLISH);
        let listen = format!("10.42.{i}.1:9750");
        assert!(
            conf.contains(&format!(
                "\nmetrics_listen = {listen}\nmetrics_peers = 10.42.0.0/16\n"
            )),
            "{conf}"
        );
        let dropin = text(&s, node, paths::AGENT_DROPIN);
        let allow = dropin.lines().find(|l| l.starts_with("IPAddressAllow="));
        assert!(
            allow.is_some_and(|l| l.ends_with(" 10.42.0.0/16")),
            "{dropin}"
        );
        assert_eq!(annotation(&s, node), Some(listen.clone()));
        assert_eq!(
            metrics_changes(&report, node),
            [format!("annotation {ANNOTATION}: absent → {listen}")]
        );
    }
    let again = apply(&s.inv, &s.options(true)).await.expect("re-run");
    assert!(!again.changed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn back_to_loopback_removes_the_listener_the_firewall_entry_and_the_annotation() {
    let mut s = setup_with(&NODES, "metrics = \"pod-network\"\n").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    s.inv.agent.metrics = crate::inventory::AgentMetrics::Loopback;
    let plan = plan(&s.inv, &s.options(true)).await.expect("plan runs");
    assert_eq!(
        metrics_changes(&plan, "a1"),
        [format!("annotation {ANNOTATION}: 10.42.1.1:9750 → absent")]
    );
    assert_eq!(
        annotation(&s, "a1").as_deref(),
        Some("10.42.1.1:9750"),
        "plan wrote"
    );
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    for (node, _, _) in NODES {
        assert!(!text(&s, node, paths::AGENT_PUBLISH).contains("metrics_"));
        assert!(!text(&s, node, paths::AGENT_DROPIN).contains("10.42.0.0/16"));
        assert_eq!(annotation(&s, node), None);
    }
    let again = apply(&s.inv, &s.options(true)).await.expect("re-run");
    assert!(!again.changed(), "{again:#?}");
}

#[test]
fn pod_network_metrics_need_the_agent_flannel_and_an_ipv4_cluster_cidr() {
    let load = |cluster: &str, agent: &str| {
        let text = format!(
            "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\n{cluster}\n[ssh]\nagent = true\n[agent]\n{agent}\n[[nodes]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n"
        );
        crate::inventory::Inventory::parse(&text, "t.toml", std::path::Path::new("."))
            .err()
            .map(|e| e.to_string())
    };
    let pod = "metrics = \"pod-network\"";
    assert_eq!(load("", pod), None);
    let dual = "server_config = { \"cluster-cidr\" = \"10.10.0.0/16,fd00:10::/56\" }";
    assert_eq!(load(dual, pod), None);
    let cases = [
        ("", "metrics = \"lan\"", "invalid metrics \"lan\""),
        (
            "",
            "enabled = false\nmetrics = \"pod-network\"",
            "needs the agent",
        ),
        (
            "server_config = { \"flannel-backend\" = \"none\" }",
            pod,
            "flannel-backend = \"none\"",
        ),
        (
            "server_config = { \"cluster-cidr\" = \"fd00:10::/56\" }",
            pod,
            "needs an IPv4 cluster-cidr",
        ),
        (
            "server_config = { \"cluster-cidr\" = \"10.42.0.0\" }",
            pod,
            "is not a CIDR",
        ),
    ];
    for (cluster, agent, want) in cases {
        let err = load(cluster, agent).unwrap_or_default();
        assert!(err.contains(want), "{cluster} {agent}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_access_works_on_the_nodes_together_not_one_after_another() {
    let nodes = [
        ("s1", "server", "x86_64"),
        ("a1", "agent", "x86_64"),
        ("a2", "agent", "x86_64"),
        ("a3", "agent", "x86_64"),
    ];
    let s = setup_with(&nodes, "").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    // The nodes that got the agent's token, in the order of the uploads.
    let order: Vec<String> = s
        .fleet
        .calls()
        .into_iter()
        .filter(
            |(_, c)| matches!(c, super::fake::Call::Put(p) if p.starts_with("/etc/pictl-agent/")),
        )
        .map(|(n, _)| n)
        .collect();
    assert_eq!(order.len(), 4 * 3, "three files per node: {order:?}");
    // One after another, each node's three uploads would be adjacent.
    let runs = order.windows(2).filter(|w| w[0] != w[1]).count() + 1;
    assert!(runs > nodes.len(), "uploads grouped by node: {order:?}");
}

/// The agents' API objects of a re-run come from one LIST per kind, not a
/// GET per node and kind; an object whose labels were edited away is still
/// found (by name), not reported absent.
#[tokio::test(flavor = "multi_thread")]
async fn a_re_run_lists_the_agent_objects_once_instead_of_reading_each() {
    let nodes = [
        ("s1", "server", "x86_64"),
        ("a1", "agent", "x86_64"),
        ("a2", "agent", "x86_64"),
    ];
    let s = setup_with(&nodes, "").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    let kinds = [
        "serviceaccounts",
        "secrets",
        "clusterroles",
        "clusterrolebindings",
        "roles",
        "rolebindings",
    ];
    let reads = |requests: &[String]| -> (usize, usize) {
        let of_agents = |r: &&String| {
            r.starts_with("GET ") && kinds.iter().any(|k| r.contains(&format!("/{k}")))
        };
        let lists = requests
            .iter()
            .filter(of_agents)
            .filter(|r| r.contains("labelSelector"));
        let gets = requests
            .iter()
            .filter(of_agents)
            .filter(|r| r.contains("pictl-agent"));
        (lists.count(), gets.count())
    };
    s.api.requests.lock().expect("requests").clear();
    let again = apply(&s.inv, &s.options(true)).await.expect("re-run");
    assert!(!again.changed(), "{again:#?}");
    let requests = s.api.requests.lock().expect("requests").clone();
    assert_eq!(reads(&requests), (6, 0), "{requests:#?}");
    // Labels edited away from a1's ClusterRole: read by name, still there.
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterroles/pictl-agent:a1";
    s.api.store.edit(path, |role| {
        role["metadata"]["labels"] = serde_json::json!({});
    });
    s.api.requests.lock().expect("requests").clear();
    let plan = super::plan(&s.inv, &s.options(false)).await.expect("plan");
    assert!(!plan.changed(), "{plan:#?}");
    let requests = s.api.requests.lock().expect("requests").clone();
    assert_eq!(reads(&requests), (6, 1), "{requests:#?}");
}

/// A plan of a cluster that drifted everywhere a phase writes through the
/// API or into the state directory (a Node's labels, an agent's ClusterRole,
/// its metrics annotation, the state directory gone) finds every drift and
/// writes none of it: no API write of any kind, no node command that
/// writes, no state directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_plan_of_a_drifted_cluster_finds_every_drift_and_writes_nothing() {
    let mut s = setup_with(&NODES, "metrics = \"pod-network\"\n").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    s.inv.nodes[1].labels = [("zone".to_string(), "shelf".to_string())].into();
    let role = "/apis/rbac.authorization.k8s.io/v1/clusterroles/pictl-agent:a1";
    s.api.store.remove(role).expect("a1's ClusterRole");
    {
        let mut objects = s.api.objects.lock().expect("objects");
        let s1 = objects.get_mut("s1").expect("s1's Node");
        s1["metadata"]["annotations"][ANNOTATION] = serde_json::json!("10.9.9.9:1");
    }
    let state = s.inv.cluster.state_dir.clone();
    std::fs::remove_dir_all(&state).expect("remove the state directory");
    s.api.requests.lock().expect("requests").clear();
    let calls_before = s.fleet.calls().len();

    let plan = plan(&s.inv, &s.options(true)).await.expect("plan runs");

    let changed = |node: &str, step| {
        let n = plan.nodes.iter().find(|n| n.name == node).expect("node");
        let found = n
            .steps
            .iter()
            .any(|r| r.step == step && r.status == Status::Changed);
        assert!(found, "{step} not planned on {node}: {n:#?}");
    };
    changed("a1", StepId::NodeLabels);
    changed("a1", StepId::AgentRbac);
    changed("s1", StepId::AgentMetrics);
    let requests = s.api.requests.lock().expect("requests").clone();
    let writes: Vec<&String> = requests.iter().filter(|r| !r.starts_with("GET ")).collect();
    assert!(writes.is_empty(), "plan wrote to the API: {writes:#?}");
    let node_writes: Vec<_> = s.fleet.calls()[calls_before..]
        .iter()
        .filter(|(_, c)| super::tests::is_write(c))
        .cloned()
        .collect();
    assert!(
        node_writes.is_empty(),
        "plan wrote on nodes: {node_writes:?}"
    );
    assert!(!state.exists(), "plan created the state directory");
}

/// A no-op re-run lists the Nodes once (readiness's LIST, read by uncordon,
/// labels and the agents' pod networks) and reads no Node by name.
#[tokio::test(flavor = "multi_thread")]
async fn a_no_op_re_run_lists_the_nodes_once() {
    let s = setup_with(&NODES, "metrics = \"pod-network\"\n").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    for apply_or_plan in [true, false] {
        s.api.requests.lock().expect("requests").clear();
        let again = match apply_or_plan {
            true => apply(&s.inv, &s.options(true)).await,
            false => plan(&s.inv, &s.options(true)).await,
        };
        assert!(!again.expect("runs").changed());
        let requests = s.api.requests.lock().expect("requests").clone();
        let nodes: Vec<&String> = requests
            .iter()
            .filter(|r| r.starts_with("GET /api/v1/nodes"))
            .collect();
        assert_eq!(nodes, ["GET /api/v1/nodes?"], "{requests:#?}");
    }
}
