//! The scheduler's filters and the one score the simulator needs, and the
//! node lifecycle controller's `node.kubernetes.io/unschedulable` taint.
//!
//! Filters (kubernetes pkg/scheduler/framework/plugins): NodeUnschedulable
//! (`spec.unschedulable`), TaintToleration (NoSchedule/NoExecute taints the
//! Pod does not tolerate), NodeAffinity (`nodeSelector`, so the node's
//! `kubernetes.io/arch` too), InterPodAffinity (required anti-affinity on
//! `kubernetes.io/hostname`), PodTopologySpread (`DoNotSchedule` on
//! `kubernetes.io/hostname`). Score: PodTopologySpread's `ScheduleAnyway`,
//! reduced to "fewest matching Pods first", ties by node name. The unschedulable
//! taint: pkg/controller/nodelifecycle/node_lifecycle_controller.go
//! (`doNoScheduleTaintingPass`, `UnschedulableTaint`).

use crate::pods::{node_ready, rt, selector_matches};
use crate::store::{State, meta_str};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const HOSTNAME: &str = "kubernetes.io/hostname";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Adds or lifts the unschedulable taint to follow `spec.unschedulable`.
pub fn taint_unschedulable(st: &mut State) {
    let nodes: Vec<Value> = st.list(rt("Node"), None).into_iter().cloned().collect();
    for node in nodes {
        let cordoned = node["spec"]["unschedulable"] == json!(true);
        let mut taints: Vec<Value> = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = taints.iter().any(|t| t["key"] == UNSCHEDULABLE);
        if cordoned == has {
            continue;
        }
        if cordoned {
            taints.push(json!({"key": UNSCHEDULABLE, "effect": "NoSchedule",
                "timeAdded": crate::log::k8s_now()}));
        } else {
            taints.retain(|t| t["key"] != UNSCHEDULABLE);
        }
        let mut n = node.clone();
        if taints.is_empty() {
            if let Some(spec) = n["spec"].as_object_mut() {
                spec.remove("taints");
            }
        } else {
            n["spec"]["taints"] = json!(taints);
        }
        if let Err(e) = st.put(rt("Node"), n) {
            crate::error!("tainting node {}: {e}", meta_str(&node, "name"));
        }
    }
}

fn untolerated<'a>(node: &'a Value, pod: &Value) -> Option<&'a Value> {
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            matches!(t["effect"].as_str(), Some("NoSchedule") | Some("NoExecute"))
                && !crate::nodes::tolerated(t, &tolerations)
        })
}

/// Pods of `pod`'s namespace matching `sel`, counted per node.
fn matching_per_node(st: &State, pod: &Value, sel: &Value) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in st.list(rt("Pod"), Some(meta_str(pod, "namespace"))) {
        if meta_str(p, "name") == meta_str(pod, "name") {
            continue;
        }
        if let Some(n) = p["spec"]["nodeName"].as_str()
            && selector_matches(sel, &p["metadata"]["labels"])
        {
            *out.entry(n.to_string()).or_insert(0) += 1;
        }
    }
    out
}

fn anti_affinity_terms(pod: &Value) -> Vec<&Value> {
    pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["topologyKey"] == HOSTNAME)
        .collect()
}

fn spread(pod: &Value, hard: bool) -> Vec<&Value> {
    let want = if hard {
        "DoNotSchedule"
    } else {
        "ScheduleAnyway"
    };
    pod["spec"]["topologySpreadConstraints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["topologyKey"] == HOSTNAME && c["whenUnsatisfiable"] == want)
        .collect()
}

/// Why `node` cannot run `pod` (a scheduler filter's reason), or None.
fn filter(st: &State, fit: &[&Value], node: &Value, pod: &Value) -> Option<String> {
    if node["spec"]["unschedulable"] == json!(true) {
        return Some("node(s) were unschedulable".into());
    }
    if let Some(t) = untolerated(node, pod) {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t["key"].as_str().unwrap_or(""),
            t["value"].as_str().unwrap_or("")
        ));
    }
    if !node_ready(node) {
        return Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into());
    }
    let labels = &node["metadata"]["labels"];
    let selected = pod["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    if !selected {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    let name = meta_str(node, "name");
    for term in anti_affinity_terms(pod) {
        if matching_per_node(st, pod, &term["labelSelector"]).contains_key(name) {
            return Some("node(s) didn't match pod anti-affinity rules".into());
        }
    }
    for c in spread(pod, true) {
        let counts = matching_per_node(st, pod, &c["labelSelector"]);
        let min = fit
            .iter()
            .map(|n| counts.get(meta_str(n, "name")).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        let mine = counts.get(name).copied().unwrap_or(0);
        if (mine + 1) as i64 - min as i64 > c["maxSkew"].as_i64().unwrap_or(1) {
            return Some("node(s) didn't match pod topology spread constraints".into());
        }
    }
    None
}

/// The node the scheduler binds `pod` to, or the FailedScheduling message.
pub fn pick(st: &State, nodes: &[Value], pod: &Value) -> Result<String, String> {
    // PodTopologySpread counts only nodes that pass the Pod's node selector.
    let fit: Vec<&Value> = nodes
        .iter()
        .filter(|n| node_ready(n) && n["spec"]["unschedulable"] != json!(true))
        .collect();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<&Value> = Vec::new();
    for n in nodes {
        match filter(st, &fit, n, pod) {
            Some(why) => *reasons.entry(why).or_insert(0) += 1,
            None => feasible.push(n),
        }
    }
    let soft = spread(pod, false);
    let score = |n: &Value| -> usize {
        soft.iter()
            .map(|c| {
                matching_per_node(st, pod, &c["labelSelector"])
                    .get(meta_str(n, "name"))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    };
    if let Some(best) = feasible
        .iter()
        .min_by_key(|n| (score(n), meta_str(n, "name").to_string()))
    {
        return Ok(meta_str(best, "name").to_string());
    }
    let why: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    Err(format!(
        "0/{} nodes are available: {}. preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling.",
        nodes.len(),
        why.join(", "),
        nodes.len(),
        nodes.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, extra: Value) -> Value {
        let mut n = json!({"metadata": {"name": name, "labels": {HOSTNAME: name, "kubernetes.io/arch": "amd64"}},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" }}]}});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                n["spec"][k] = v.clone();
            }
        }
        n
    }

    #[test]
    fn cordoned_tainted_unready_and_other_arch_nodes_are_filtered_out() {
        // Nothing is written: the state file is only read, and it is absent.
        let store = crate::store::Store::open("/nonexistent/k3s-sim-test/sim-state.json".into())
            .expect("store");
        let st = store.lock();
        let nodes = vec![
            node("a", true, json!({"unschedulable": true})),
            node("b", false, json!({})),
            node(
                "c",
                true,
                json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
            ),
            node("d", true, json!({})),
        ];
        let pod = json!({"metadata": {"name": "p", "namespace": "x"}, "spec": {}});
        assert_eq!(pick(&st, &nodes, &pod).as_deref(), Ok("d"));
        let arm = json!({"metadata": {"name": "p", "namespace": "x"},
            "spec": {"nodeSelector": {"kubernetes.io/arch": "arm64"}}});
        let err = pick(&st, &nodes, &arm).expect_err("no arm64 node");
        assert!(err.starts_with("0/4 nodes are available: "), "{err}");
        assert!(err.contains("1 node(s) were unschedulable"), "{err}");
        assert!(
            err.contains("1 node(s) had untolerated taint {k: v}"),
            "{err}"
        );
        assert!(
            err.contains("1 node(s) didn't match Pod's node affinity/selector"),
            "{err}"
        );
    }
}
