//! Graceful deletion of Pods. A DELETE (or an eviction) of a Pod bound to a
//! node does not remove it: the apiserver sets `deletionTimestamp` (now +
//! the grace period) and `deletionGracePeriodSeconds`, and the Pod is
//! Terminating until its node's kubelet has stopped its containers and
//! confirms with a delete of grace 0. The simulator's containers honour
//! SIGTERM, so a Ready node's kubelet confirms at its next pass (500 ms);
//! a NotReady node has no kubelet and its Pods stay Terminating, as in
//! K3s: nothing else removes them (podgc only with the out-of-service
//! taint). Unbound or finished Pods, and a grace of 0, go at once.
//!
//! Sources: kubernetes pkg/registry/core/pod/strategy.go
//! (`CheckGracefulDelete`), staging/src/k8s.io/apiserver/pkg/registry/rest/
//! delete.go (`BeforeDelete`: deletionTimestamp = now + grace; a second
//! delete only shortens it), pkg/kubelet/status/status_manager.go
//! (`syncPod`, `canBeDeleted`: the kubelet's final delete of grace 0),
//! pkg/controller/podgc/gc_controller.go (`gcTerminating`: only Pods on a
//! NotReady node tainted `node.kubernetes.io/out-of-service`),
//! pkg/controller/controller_utils.go (`FilterActivePods`: a Terminating Pod
//! does not count for its ReplicaSet).

use crate::pods::{node_ready, rt};
use crate::store::{State, meta_str};
use serde_json::{Value, json};

/// The taint that lets podgc remove Terminating Pods of a dead node.
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Whether the Pod has been deleted and waits for its kubelet.
pub fn terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// The grace period of a delete (`CheckGracefulDelete`): the request's,
/// else the Pod's `terminationGracePeriodSeconds` (0 when unset); 0 for a
/// Pod not bound to a node or already finished.
pub fn grace(pod: &Value, requested: Option<i64>) -> i64 {
    let period = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(0);
    let unbound = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if unbound || finished {
        0
    } else if period < 0 {
        1
    } else {
        period
    }
}

/// The grace period a DELETE asks for: `?gracePeriodSeconds=` or the
/// DeleteOptions body's `gracePeriodSeconds`.
pub fn requested(query: Option<&String>, body: &Value) -> Option<i64> {
    query
        .and_then(|q| q.parse().ok())
        .or_else(|| body["gracePeriodSeconds"].as_i64())
}

/// Deletes a Pod gracefully: the Pod as it now is (`Some`, Terminating) or
/// as it was when removed at once (`None` for the first element: gone).
pub fn delete(
    st: &mut State,
    ns: &str,
    name: &str,
    requested: Option<i64>,
) -> anyhow::Result<Option<(Value, bool)>> {
    let Some(pod) = st.get(rt("Pod"), ns, name).cloned() else {
        return Ok(None);
    };
    let period = grace(&pod, requested);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let pending = pod["metadata"]["deletionGracePeriodSeconds"].as_i64();
    if period == 0 || pending.is_some_and(|p| p == 0) {
        return Ok(st.delete(rt("Pod"), ns, name)?.map(|gone| (gone, true)));
    }
    // BeforeDelete: a second delete may only shorten the grace period.
    if pending.is_some_and(|p| p <= period) {
        return Ok(Some((pod, false)));
    }
    let mut p = pod;
    p["metadata"]["deletionTimestamp"] = json!(crate::log::format_k8s_time(now + period));
    p["metadata"]["deletionGracePeriodSeconds"] = json!(period);
    crate::info!("Pod {ns}/{name} is terminating (grace period {period}s)");
    let (stored, _) = st.put(rt("Pod"), p)?;
    Ok(Some((stored, false)))
}

/// The kubelets' part: each Terminating Pod whose node is Ready is removed
/// (its containers exited on SIGTERM); on a NotReady node it stays, unless
/// the node carries the out-of-service taint (podgc's `gcTerminating`).
pub fn finish(st: &mut State) {
    let done: Vec<(String, String)> = st
        .list(rt("Pod"), None)
        .into_iter()
        .filter(|p| terminating(p))
        .filter(|p| {
            let node = p["spec"]["nodeName"]
                .as_str()
                .and_then(|n| st.get(rt("Node"), "", n));
            node.is_none_or(|n| node_ready(n) || out_of_service(n))
        })
        .map(|p| {
            (
                meta_str(p, "namespace").to_string(),
                meta_str(p, "name").to_string(),
            )
        })
        .collect();
    for (ns, name) in done {
        crate::info!("Pod {ns}/{name} terminated");
        if let Err(e) = st.delete(rt("Pod"), &ns, &name) {
            crate::error!("deleting Pod {ns}/{name}: {e}");
        }
    }
}

fn out_of_service(node: &Value) -> bool {
    node["spec"]["taints"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["key"] == OUT_OF_SERVICE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready",
                "status": if ready { "True" } else { "Unknown" }}]}})
    }

    fn pod(name: &str, node: Option<&str>) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}})
    }

    /// A store of its own under the temp dir, with a Ready and a NotReady node.
    fn store() -> crate::store::Store {
        let dir = std::env::temp_dir().join(format!(
            "k3s-sim-terminate-{}-{}",
            std::process::id(),
            crate::validate::uuid()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = crate::store::Store::open(dir.join("state.db")).expect("store");
        {
            let mut st = store.lock();
            st.put(rt("Node"), node("up", true)).expect("node");
            st.put(rt("Node"), node("down", false)).expect("node");
        }
        store
    }

    #[test]
    fn a_deleted_pod_terminates_until_its_ready_kubelet_confirms() {
        let store = store();
        let mut st = store.lock();
        st.put(rt("Pod"), pod("a", Some("up"))).expect("pod");
        let (marked, gone) = delete(&mut st, "default", "a", None)
            .expect("delete")
            .expect("found");
        assert!(!gone && terminating(&marked), "{marked}");
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], json!(30));
        finish(&mut st);
        assert!(st.get(rt("Pod"), "default", "a").is_none());
    }

    #[test]
    fn a_pod_on_a_not_ready_node_stays_terminating() {
        let store = store();
        let mut st = store.lock();
        st.put(rt("Pod"), pod("b", Some("down"))).expect("pod");
        delete(&mut st, "default", "b", Some(5)).expect("delete");
        finish(&mut st);
        let left = st.get(rt("Pod"), "default", "b").expect("still there");
        assert!(terminating(left));
        assert_eq!(left["metadata"]["deletionGracePeriodSeconds"], json!(5));
        // A second, longer delete changes nothing; a forced one removes it.
        delete(&mut st, "default", "b", None).expect("delete");
        let again = st.get(rt("Pod"), "default", "b").expect("still there");
        assert_eq!(again["metadata"]["deletionGracePeriodSeconds"], json!(5));
        delete(&mut st, "default", "b", Some(0)).expect("delete");
        assert!(st.get(rt("Pod"), "default", "b").is_none());
    }

    #[test]
    fn unbound_pods_go_at_once() {
        let store = store();
        let mut st = store.lock();
        st.put(rt("Pod"), pod("c", None)).expect("pod");
        let (_, gone) = delete(&mut st, "default", "c", None)
            .expect("delete")
            .expect("found");
        assert!(gone);
        assert!(st.get(rt("Pod"), "default", "c").is_none());
    }
}
