//! K3s's managed-etcd Node controllers, as far as the API shows them: each
//! etcd server's own Node carries its member's name and address
//! (pkg/etcd/metadata_controller.go `handleSelf`), and a Node annotated
//! `etcd.k3s.cattle.io/remove=true` has its member removed from etcd, then is
//! marked `removed-node-name` with the name and address annotations dropped
//! (pkg/etcd/member_controller.go `sync`, pkg/etcd/etcd.go `RemovePeer`:
//! the member's name and the host of one of its peer URLs must both match).
//! The controller runs where etcd's leader is, as the server's other loops.

use crate::ha::Member;
use crate::nodes::NodeInfo;
use crate::replicate::Ha;
use serde_json::{Value, json};
use std::sync::Arc;

pub const NODE_NAME: &str = "etcd.k3s.cattle.io/node-name";
pub const NODE_ADDRESS: &str = "etcd.k3s.cattle.io/node-address";
pub const REMOVE: &str = "etcd.k3s.cattle.io/remove";
pub const REMOVED_NODE_NAME: &str = "etcd.k3s.cattle.io/removed-node-name";
const ETCD_ROLE: &str = "node-role.kubernetes.io/etcd";

/// metadata_controller.go `handleSelf`: the member's name and address.
pub fn annotate(node: &mut Value, info: &NodeInfo) {
    if info.etcd_name.is_empty() {
        return;
    }
    node["metadata"]["annotations"][NODE_NAME] = json!(info.etcd_name);
    node["metadata"]["annotations"][NODE_ADDRESS] = json!(info.internal_ip);
}

/// member_controller.go `sync`: the (name, address) of the member a Node
/// asks to remove, when it asks and was not removed already.
pub fn removal(node: &Value) -> Option<(String, String)> {
    node["metadata"]["labels"].get(ETCD_ROLE)?;
    let a = &node["metadata"]["annotations"];
    let asked = a[REMOVE].as_str()?;
    if a.get(REMOVED_NODE_NAME).is_some() || !asked.eq_ignore_ascii_case("true") {
        return None;
    }
    let node_name = node["metadata"]["name"].as_str().unwrap_or_default();
    let (Some(name), Some(address)) = (a[NODE_NAME].as_str(), a[NODE_ADDRESS].as_str()) else {
        crate::warn!("node name annotation for node {node_name} not found");
        return None;
    };
    Some((name.to_string(), address.to_string()))
}

/// What `sync` writes back once the member is gone.
pub fn mark_removed(node: &mut Value, name: &str) {
    if let Some(a) = node["metadata"]["annotations"].as_object_mut() {
        a.insert(REMOVED_NODE_NAME.into(), json!(name));
        a.remove(NODE_NAME);
        a.remove(NODE_ADDRESS);
    }
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let h = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    h.trim_matches(['[', ']'])
}

/// etcd.go `RemovePeer`: the members without the one named `name` whose
/// peer URL's host is `address`; None when there is no such member.
pub fn without(members: &[Member], name: &str, address: &str) -> Option<Vec<Member>> {
    let hit = |m: &Member| m.name == name && host(&m.peer_url) == address;
    members
        .iter()
        .any(hit)
        .then(|| members.iter().filter(|m| !hit(m)).cloned().collect())
}

/// One pass of the member removal controller, on etcd's leader.
pub async fn reconcile(ha: &Arc<Ha>) {
    let node_rt = crate::store::find("", "v1", "nodes").expect("nodes are served");
    let nodes: Vec<Value> = ha
        .store
        .lock()
        .list(node_rt, None)
        .into_iter()
        .cloned()
        .collect();
    for mut node in nodes {
        let Some((name, address)) = removal(&node) else {
            continue;
        };
        if let Some(rest) = without(&ha.ms.members(), &name, &address) {
            crate::info!("Removing name={name} address={address} from etcd");
            if let Err(e) = ha.ms.set_members(rest) {
                crate::warn!("etcd: removing member {name}: {e:#}");
                continue;
            }
        }
        mark_removed(&mut node, &name);
        let target = {
            let mut st = ha.store.lock();
            if let Err(e) = st.put(node_rt, node) {
                crate::warn!("etcd: marking member {name} removed: {e:#}");
                continue;
            }
            st.rv
        };
        ha.commit(target).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, ip: &str) -> Member {
        Member {
            name: name.into(),
            peer_url: format!("https://{ip}:2380"),
            api_url: format!("https://{ip}:6443"),
        }
    }

    #[test]
    fn a_node_asking_for_removal_names_its_member_once() {
        let mut node = json!({"metadata": {"name": "s3",
            "labels": {ETCD_ROLE: "true"},
            "annotations": {NODE_NAME: "s3-0a1b2c3d", NODE_ADDRESS: "10.0.0.3"}}});
        assert_eq!(removal(&node), None);
        node["metadata"]["annotations"][REMOVE] = json!("True");
        assert_eq!(
            removal(&node),
            Some(("s3-0a1b2c3d".into(), "10.0.0.3".into()))
        );
        mark_removed(&mut node, "s3-0a1b2c3d");
        assert_eq!(removal(&node), None);
        let a = &node["metadata"]["annotations"];
        assert_eq!(a[REMOVED_NODE_NAME], "s3-0a1b2c3d");
        assert!(a.get(NODE_NAME).is_none() && a.get(NODE_ADDRESS).is_none());
        // Not an etcd node: nothing to remove.
        let agent = json!({"metadata": {"name": "a1", "annotations": {REMOVE: "true"}}});
        assert_eq!(removal(&agent), None);
    }

    #[test]
    fn remove_peer_needs_the_name_and_the_address_to_match() {
        let ms = [member("s1-aa", "10.0.0.1"), member("s3-cc", "10.0.0.3")];
        assert_eq!(without(&ms, "s3-cc", "10.0.0.9"), None);
        assert_eq!(without(&ms, "s3-xx", "10.0.0.3"), None);
        let rest = without(&ms, "s3-cc", "10.0.0.3").expect("removed");
        assert_eq!(rest, [member("s1-aa", "10.0.0.1")]);
        assert_eq!(host("https://[fd00::3]:2380"), "fd00::3");
    }
}
