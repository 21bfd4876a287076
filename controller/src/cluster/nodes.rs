//! The Nodes as a run sees them: one LIST shared by the phases that need it
//! (readiness, uncordon, labels, the agents' pod networks; on real K3s a
//! Node carries its image list, several MB a run on 50 Pis), the one parser
//! of Ready, and the Node writes: merge patches preconditioned on the
//! `resourceVersion` they were planned against, retried once on a conflict
//! (K3s's node controller writes Nodes too).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node as KNode;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::Value;

use super::ClusterError;
use crate::write::Writer;

/// What older pictl set on a Node it cordoned. A node can write its own
/// annotations, so pictl's record is now elsewhere ([`super::cordons`]);
/// this one is only dropped when pictl uncordons.
pub const CORDONED_ANNOTATION: &str = "pictl.dev/cordoned";

/// Every registered Node by name, from one LIST.
#[derive(Debug, Clone, Default)]
pub struct NodeList {
    pub nodes: BTreeMap<String, KNode>,
}

impl NodeList {
    /// One LIST of every Node.
    pub async fn read(client: &kube::Client) -> Result<NodeList, ClusterError> {
        tracing::debug!("LIST nodes");
        let api: Api<KNode> = Api::all(client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(ClusterError::call("listing Nodes"))?;
        let nodes = list
            .items
            .into_iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n)))
            .collect();
        Ok(NodeList { nodes })
    }

    pub fn get(&self, name: &str) -> Option<&KNode> {
        self.nodes.get(name)
    }

    /// What the run sees of `name`, if registered.
    pub fn state(&self, name: &str) -> Option<NodeState> {
        self.get(name).map(NodeState::of)
    }

    /// Takes in a Node a write answered with.
    pub fn update(&mut self, node: KNode) {
        if let Some(name) = node.metadata.name.clone() {
            self.nodes.insert(name, node);
        }
    }
}

/// The status of the Node's Ready condition (`True`, `False`, `Unknown`):
/// the one reading of it.
pub fn ready_status(n: &KNode) -> Option<&str> {
    let conditions = n.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(ready.status.as_str())
}

/// Whether the Node's Ready condition is True.
pub fn ready(n: &KNode) -> bool {
    ready_status(n) == Some("True")
}

/// The Node's annotation `key`, if set.
pub fn annotation<'n>(n: &'n KNode, key: &str) -> Option<&'n str> {
    let annotations = n.metadata.annotations.as_ref()?;
    annotations.get(key).map(String::as_str)
}

/// What the run sees of a Node before touching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub unschedulable: bool,
    /// pictl's record says pictl cordoned it (read by
    /// [`super::cordons::state`]; [`NodeState::of`] knows only the Node).
    pub cordoned_by_pictl: bool,
    pub ready: bool,
    pub kubelet_version: String,
}

impl NodeState {
    pub fn of(n: &KNode) -> Self {
        let spec = n.spec.as_ref();
        let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
        Self {
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            cordoned_by_pictl: false,
            ready: ready(n),
            kubelet_version: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
        }
    }
}

/// The Node as it is now (`None`: not registered).
pub async fn get(client: &kube::Client, name: &str) -> Result<Option<KNode>, ClusterError> {
    tracing::debug!(node = name, "GET node");
    let api: Api<KNode> = Api::all(client.clone());
    api.get_opt(name)
        .await
        .map_err(ClusterError::call(format!("reading Node {name}")))
}

/// Merge-patches the Node with what `patch` makes of it: against `live`'s
/// resourceVersion, and once more against a fresh read if someone wrote the
/// Node in between (409). The Node as written.
pub async fn patch(
    client: &kube::Client,
    live: &KNode,
    what: &str,
    patch: impl Fn(&KNode) -> Value,
    _w: &Writer,
) -> Result<KNode, ClusterError> {
    let name = live.metadata.name.clone().unwrap_or_default();
    let failed = || format!("{what} Node {name}");
    match patch_at(client, live, &patch(live)).await {
        Err(e) if e.code() == Some(409) => {
            tracing::debug!(node = %name, "Node changed since it was read; patching once more");
            let fresh = get(client, &name)
                .await?
                .ok_or_else(|| ClusterError::Unusable(format!("{}: it is gone", failed())))?;
            patch_at(client, &fresh, &patch(&fresh)).await
        }
        other => other,
    }
    .map_err(|e| match e {
        ClusterError::Call { source, .. } => ClusterError::Call {
            what: failed(),
            source,
        },
        e => e,
    })
}

/// One merge patch carrying `live`'s resourceVersion as its precondition.
async fn patch_at(
    client: &kube::Client,
    live: &KNode,
    body: &Value,
) -> Result<KNode, ClusterError> {
    let name = live.metadata.name.clone().unwrap_or_default();
    let api: Api<KNode> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&preconditioned(body, live)),
    )
    .await
    .map_err(ClusterError::call(format!("patching Node {name}")))
}

/// `body` with `live`'s resourceVersion: the API server refuses it (409)
/// once the Node has changed.
fn preconditioned(body: &Value, live: &KNode) -> Value {
    let mut body = body.clone();
    if let (Some(rv), Some(o)) = (&live.metadata.resource_version, body.as_object_mut()) {
        let meta = o.entry("metadata").or_insert_with(|| serde_json::json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::String(rv.clone()));
        }
    }
    body
}

/// Deletes the Node (a reset node); false when it was not there.
pub async fn delete(client: &kube::Client, name: &str, _w: &Writer) -> Result<bool, ClusterError> {
    let api: Api<KNode> = Api::all(client.clone());
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(ClusterError::call(format!("deleting Node {name}"))(e)),
    }
}

/// Deletes K3s's node-password Secret of `name` (`kube-system/<name>.node-password.k3s`,
/// pkg/nodepassword), so that a new machine can register under that name;
/// false when there was none.
pub async fn delete_password(
    client: &kube::Client,
    name: &str,
    _w: &Writer,
) -> Result<bool, ClusterError> {
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "kube-system");
    let secret = format!("{name}.node-password.k3s");
    match api.delete(&secret, &Default::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(ClusterError::call(format!(
            "deleting Secret kube-system/{secret}"
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: Value) -> KNode {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn a_patch_carries_the_resource_version_it_was_planned_against() {
        let live = node(json!({"metadata": {"name": "n1", "resourceVersion": "7"}}));
        let body = preconditioned(&json!({"spec": {"unschedulable": true}}), &live);
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(body["spec"]["unschedulable"], true);
        let body = preconditioned(&json!({"metadata": {"labels": {"a": "b"}}}), &live);
        assert_eq!(
            body["metadata"],
            json!({"labels": {"a": "b"}, "resourceVersion": "7"})
        );
    }

    #[test]
    fn ready_is_read_from_the_ready_condition_only() {
        let with = |conditions: Value| {
            node(json!({"metadata": {"name": "n"}, "status": {"conditions": conditions}}))
        };
        assert!(ready(&with(json!([{"type": "Ready", "status": "True"}]))));
        assert!(!ready(&with(json!([{"type": "Ready", "status": "False"}]))));
        assert!(!ready(&with(
            json!([{"type": "DiskPressure", "status": "True"}])
        )));
        assert!(!ready(&node(json!({"metadata": {"name": "n"}}))));
    }
}
