//! The Node conditions the kubelet and the node lifecycle controller write,
//! kept apart from every other condition on the Node (pictl's agent adds its
//! own types, which are never touched here).
//!
//! - A posting kubelet sets MemoryPressure, DiskPressure and PIDPressure
//!   (False: KubeletHasSufficientMemory, KubeletHasNoDiskPressure,
//!   KubeletHasSufficientPID) and Ready (True: KubeletReady), each updated in
//!   place by type and appended in that order when missing; a condition's
//!   `lastTransitionTime` moves only when its status changes (kubernetes
//!   pkg/kubelet/nodestatus/setters.go `MemoryPressureCondition`,
//!   `DiskPressureCondition`, `PIDPressureCondition`, `ReadyCondition`, in
//!   pkg/kubelet/kubelet_node_status.go `defaultNodeStatusFuncs` order).
//! - When the kubelet stops posting, the lifecycle controller turns the same
//!   four to Unknown, `NodeStatusUnknown` "Kubelet stopped posting node
//!   status." (`NodeStatusNeverUpdated` for one never posted), and taints the
//!   Node `node.kubernetes.io/unreachable:NoSchedule`
//!   (pkg/controller/nodelifecycle/node_lifecycle_controller.go
//!   `tryUpdateNodeHealth`, `doNoScheduleTaintingPass`).

use serde_json::{Value, json};

/// (type, status, reason, message) of each condition a healthy kubelet posts.
const KUBELET: [(&str, &str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    (
        "DiskPressure",
        "False",
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
    ),
    (
        "PIDPressure",
        "False",
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
    ),
    (
        "Ready",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    ),
];

/// Whether the Node's Ready condition is True.
pub fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True")
}

/// Whether every condition a posting kubelet writes is there as it writes it.
pub fn kubelet_posted(node: &Value) -> bool {
    let conds = node["status"]["conditions"].as_array();
    KUBELET.iter().all(|(t, status, ..)| {
        conds.is_some_and(|cs| cs.iter().any(|c| c["type"] == *t && c["status"] == *status))
    })
}

/// The kubelet posting (`ready`) or the lifecycle controller giving up on it.
pub fn set_ready(node: &mut Value, ready: bool) {
    let now = crate::log::k8s_now();
    let created = node["metadata"]["creationTimestamp"].clone();
    let mut conds = node["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (kind, status, reason, message) in KUBELET {
        let pos = conds.iter().position(|c| c["type"] == kind);
        if !ready {
            match pos {
                Some(i) if conds[i]["status"] != "Unknown" => {
                    let c = &mut conds[i];
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(now);
                }
                Some(_) => {}
                None => conds.push(json!({"type": kind, "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated", "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": created, "lastTransitionTime": now})),
            }
            continue;
        }
        let transition = pos
            .filter(|i| conds[*i]["status"] == status)
            .map_or_else(|| json!(now), |i| conds[i]["lastTransitionTime"].clone());
        let c = json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": transition});
        match pos {
            Some(i) => conds[i] = c,
            None => conds.push(c),
        }
    }
    node["status"]["conditions"] = json!(conds);
    set_unreachable_taint(node, !ready, &now);
}

fn set_unreachable_taint(node: &mut Value, unreachable: bool, now: &str) {
    let mut taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["key"] != "node.kubernetes.io/unreachable")
        .collect();
    if unreachable {
        taints.push(
            json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now}),
        );
    }
    if taints.is_empty() {
        if let Some(m) = node["spec"].as_object_mut() {
            m.remove("taints");
        }
    } else {
        node["spec"]["taints"] = json!(taints);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(n: &Value) -> Vec<(String, String)> {
        n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or("").into(),
                    c["status"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    }

    #[test]
    fn a_kubelet_posts_three_pressures_and_ready_and_keeps_other_conditions() {
        let mut n = json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {},
            "status": {"conditions": [{"type": "RootDiskPressure", "status": "False"}]}});
        set_ready(&mut n, true);
        let want = [
            ("RootDiskPressure", "False"),
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
            ("Ready", "True"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(types(&n), want);
        assert!(kubelet_posted(&n) && is_ready(&n));
        set_ready(&mut n, false);
        let t = types(&n);
        assert_eq!(t[0], ("RootDiskPressure".into(), "False".into()));
        assert!(t[1..].iter().all(|(_, s)| s == "Unknown"), "{t:?}");
        assert_eq!(n["status"]["conditions"][4]["reason"], "NodeStatusUnknown");
        assert_eq!(
            n["spec"]["taints"][0]["key"],
            "node.kubernetes.io/unreachable"
        );
        set_ready(&mut n, true);
        assert!(n["spec"]["taints"].is_null() && kubelet_posted(&n));
    }
}
