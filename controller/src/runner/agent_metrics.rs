//! `[agent] metrics = "pod-network"` on the API side: where each node's
//! agent answers Pods, and the Node annotation that tells an in-cluster
//! Prometheus so (`pictl.dev/agent-metrics: 10.42.1.1:9750`).
//!
//! K3s's flannel gives each node a `/24` of the cluster CIDR (the Node's
//! `spec.podCIDR`), and its bridge CNI puts the first address of it on the
//! node's `cni0` bridge, the Pods' gateway. Pods on every node reach that
//! address with their own pod IP as source (flannel masquerades only
//! traffic leaving the cluster CIDR), which is what the agent's peer check
//! admits; a LAN host cannot complete a handshake from a pod-CIDR source,
//! since the node routes the replies into the overlay. Prometheus's node
//! discovery does not expose `podCIDR`, hence the annotation.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node as KNode;
use serde_json::json;

use crate::cluster::{ClusterError, NodeList, nodes};
use crate::step::Change;
use crate::write::Writer;

pub const ANNOTATION: &str = "pictl.dev/agent-metrics";
/// The agent's port, on loopback and on the pod network alike.
pub const PORT: u16 = 9750;

/// What the API says about one Node's pod network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeNet {
    /// `spec.podCIDR` when it is an IPv4 CIDR (K3s assigns it at registration).
    pub pod_cidr: Option<Ipv4Net>,
    /// The annotation as it is now.
    pub annotation: Option<String>,
}

/// Each listed Node's pod network and annotation.
pub fn nets(list: &NodeList) -> BTreeMap<String, NodeNet> {
    list.nodes
        .iter()
        .map(|(name, n)| (name.clone(), node_net(n)))
        .collect()
}

fn node_net(n: &KNode) -> NodeNet {
    let pod_cidr = n
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .and_then(|c| c.parse::<Ipv4Net>().ok());
    let annotation = n
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION).cloned());
    NodeNet {
        pod_cidr,
        annotation,
    }
}

/// The node's address on the pod network: the first address of its
/// podCIDR (the `cni0` gateway), with the agent's port. `None` for a
/// podCIDR with no host addresses (a /31 or /32 flannel never assigns).
pub fn listen_address(pod_cidr: Ipv4Net) -> Option<SocketAddrV4> {
    let first = pod_cidr.hosts().next()?;
    (pod_cidr.prefix_len() < 31).then_some(SocketAddrV4::new(first, PORT))
}

/// The annotation's change from `now` to `want`, if any.
pub fn plan(now: Option<&str>, want: Option<&str>) -> Option<Change> {
    (now != want).then(|| {
        Change::new(
            format!("annotation {ANNOTATION}"),
            now.unwrap_or("absent"),
            want.unwrap_or("absent"),
        )
    })
}

/// Sets the Node's annotation to `want` (removes it for `None`); the Node as written.
pub async fn write(
    client: &kube::Client,
    live: &KNode,
    want: Option<&str>,
    w: &Writer,
) -> Result<KNode, ClusterError> {
    let patch = |_: &KNode| json!({"metadata": {"annotations": {ANNOTATION: want}}});
    nodes::patch(client, live, "annotating", patch, w).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_is_the_first_address_of_the_pod_cidr() {
        let at = |c: &str| listen_address(c.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(at("10.42.0.0/24").as_deref(), Some("10.42.0.1:9750"));
        assert_eq!(at("10.42.7.0/24").as_deref(), Some("10.42.7.1:9750"));
        assert_eq!(at("10.244.16.0/20").as_deref(), Some("10.244.16.1:9750"));
        assert_eq!(at("10.42.3.4/32"), None);
        assert_eq!(at("10.42.3.4/31"), None);
    }

    #[test]
    fn a_node_net_takes_an_ipv4_pod_cidr_and_the_annotation() {
        let node: KNode = serde_json::from_value(json!({
            "metadata": {"name": "n1", "annotations": {ANNOTATION: "10.42.1.1:9750"}},
            "spec": {"podCIDR": "10.42.1.0/24"}
        }))
        .unwrap();
        let net = node_net(&node);
        assert_eq!(net.pod_cidr, Some("10.42.1.0/24".parse().unwrap()));
        assert_eq!(net.annotation.as_deref(), Some("10.42.1.1:9750"));
        let v6: KNode = serde_json::from_value(json!({
            "metadata": {"name": "n2"}, "spec": {"podCIDR": "fd00:42::/64"}
        }))
        .unwrap();
        assert_eq!(node_net(&v6), NodeNet::default());
    }

    #[test]
    fn the_annotation_changes_only_when_it_differs() {
        assert_eq!(plan(Some("a"), Some("a")), None);
        assert_eq!(plan(None, None), None);
        let set = plan(None, Some("10.42.1.1:9750")).unwrap();
        assert_eq!(set.before, "absent");
        assert_eq!(set.after, "10.42.1.1:9750");
        assert_eq!(plan(Some("x"), None).unwrap().after, "absent");
    }
}
