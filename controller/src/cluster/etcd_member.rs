//! A server leaving embedded etcd before its K3s is removed, the way K3s
//! offers it through the API: its Node annotated
//! `etcd.k3s.cattle.io/remove=true`, K3s's member removal controller
//! (pkg/etcd/member_controller.go `sync`, pkg/etcd/etcd.go `RemovePeer`)
//! removes the member named by the Node's `etcd.k3s.cattle.io/node-name`
//! and `node-address`, then marks the Node
//! `etcd.k3s.cattle.io/removed-node-name`: that mark is what pictl waits for.
//! Deleting the Node would remove the member too (`onRemove`), but a running
//! server's kubelet registers its Node again, and nothing would say when the
//! member is gone.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;

use super::ClusterError;
use super::nodes;
use crate::write::Writer;

pub const REMOVE: &str = "etcd.k3s.cattle.io/remove";
pub const REMOVED_NODE_NAME: &str = "etcd.k3s.cattle.io/removed-node-name";
const ETCD_ROLE: &str = "node-role.kubernetes.io/etcd";

/// Where the Node stands with etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// No Node, or not an etcd node: nothing to remove.
    None,
    /// A member, not asked to leave.
    Member,
    /// Asked to leave, not yet removed.
    Leaving,
    /// K3s removed its member.
    Removed,
}

pub fn membership(node: Option<&Node>) -> Membership {
    let Some(node) = node else {
        return Membership::None;
    };
    let etcd = node
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(ETCD_ROLE));
    if !etcd {
        Membership::None
    } else if nodes::annotation(node, REMOVED_NODE_NAME).is_some() {
        Membership::Removed
    } else if nodes::annotation(node, REMOVE).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        Membership::Leaving
    } else {
        Membership::Member
    }
}

/// Asks K3s to remove `name`'s etcd member and waits until it did, at most
/// `within`. Ok(false): there was no member to remove.
pub async fn leave(
    client: &kube::Client,
    name: &str,
    within: Duration,
    w: &Writer,
) -> Result<bool, ClusterError> {
    let live = nodes::get(client, name).await?;
    match membership(live.as_ref()) {
        Membership::None | Membership::Removed => return Ok(false),
        Membership::Leaving => {}
        Membership::Member => {
            if let Some(live) = &live {
                let ask =
                    |_: &Node| serde_json::json!({"metadata": {"annotations": {REMOVE: "true"}}});
                nodes::patch(client, live, "asking etcd to remove the member of", ask, w).await?;
            }
        }
    }
    let until = Instant::now() + within;
    loop {
        let now = nodes::get(client, name).await?;
        if matches!(
            membership(now.as_ref()),
            Membership::Removed | Membership::None
        ) {
            return Ok(true);
        }
        if Instant::now() >= until {
            return Err(ClusterError::Timeout(format!(
                "node {name}: K3s did not remove its etcd member within {}s of the annotation \
                 {REMOVE}=true (no {REMOVED_NODE_NAME} on the Node); K3s was left installed on {name}. \
                 Check the servers' logs for \"Removing name=\" and that etcd has a quorum, then reset again",
                within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(annotations: serde_json::Value, etcd: bool) -> Node {
        let labels = if etcd {
            json!({ETCD_ROLE: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(
            json!({"metadata": {"name": "s3", "labels": labels, "annotations": annotations}}),
        )
        .expect("node")
    }

    #[test]
    fn membership_is_read_from_k3s_annotations() {
        assert_eq!(membership(None), Membership::None);
        assert_eq!(membership(Some(&node(json!({}), false))), Membership::None);
        assert_eq!(membership(Some(&node(json!({}), true))), Membership::Member);
        let asked = node(json!({REMOVE: "True"}), true);
        assert_eq!(membership(Some(&asked)), Membership::Leaving);
        let gone = node(json!({REMOVE: "true", REMOVED_NODE_NAME: "s3-0a1b"}), true);
        assert_eq!(membership(Some(&gone)), Membership::Removed);
    }
}
