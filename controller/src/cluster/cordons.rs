//! pictl's record of the Nodes it cordoned, so that pictl (and only pictl)
//! uncordons them, in this run or the next: one ConfigMap per node,
//! `kube-system/pictl-cordoned-<node>`, made before the cordon and deleted
//! after the uncordon. It lives where no node can write: root on a Pi holds
//! the kubelet's credentials, which may edit its own Node's annotations
//! (NodeRestriction allows it), so a record on the Node (the
//! `pictl.dev/cordoned` annotation older pictl wrote) would let a node make
//! pictl uncordon it after an admin quarantined it. A kubelet may read only
//! the ConfigMaps its Pods use and write none. Such an annotation left by an
//! older pictl is no longer believed: the node then stays cordoned (as one
//! someone else cordoned) and the annotation is dropped with the next
//! uncordon. One object per node, rather than one list, so that agents
//! upgraded in parallel never write one object at once.

use k8s_openapi::api::core::v1::{ConfigMap, Node as KNode};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::nodes::NodeState;
use super::{ClusterError, agent_access::NAMESPACE};
use crate::write::Writer;

const MANAGER: &str = "pictl";

/// The record's name for `node`.
pub fn name(node: &str) -> String {
    format!("pictl-cordoned-{node}")
}

fn api(client: &kube::Client) -> kube::Api<ConfigMap> {
    kube::Api::namespaced(client.clone(), NAMESPACE)
}

/// Whether pictl's record says it cordoned `node`.
pub async fn holds(client: &kube::Client, node: &str) -> Result<bool, ClusterError> {
    let found = api(client).get_opt(&name(node)).await;
    let found = found.map_err(ClusterError::call(format!(
        "reading pictl's cordon record of {node}"
    )))?;
    Ok(found.is_some())
}

/// What the run sees of `live`, with pictl's record read only for a
/// cordoned Node (a run with none cordoned reads nothing more).
pub async fn state(client: &kube::Client, live: &KNode) -> Result<NodeState, ClusterError> {
    let mut s = NodeState::of(live);
    if s.unschedulable {
        let node = live.metadata.name.as_deref().unwrap_or_default();
        s.cordoned_by_pictl = holds(client, node).await?;
    }
    Ok(s)
}

/// Records that pictl cordons `node` (before it does).
pub async fn record(client: &kube::Client, node: &str, _w: &Writer) -> Result<(), ClusterError> {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name(node), "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "pictl"}},
        "data": {"node": node}});
    let pp = PatchParams::apply(MANAGER).force();
    api(client)
        .patch(&name(node), &pp, &Patch::Apply(&obj))
        .await
        .map_err(ClusterError::call(format!(
            "recording that pictl cordons {node}"
        )))?;
    Ok(())
}

/// Drops the record (after the uncordon); absent is fine.
pub async fn forget(client: &kube::Client, node: &str, _w: &Writer) -> Result<(), ClusterError> {
    match api(client).delete(&name(node), &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ClusterError::call(format!(
            "dropping pictl's cordon record of {node}"
        ))(e)),
    }
}
