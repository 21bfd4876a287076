//! Settings of an adopted unit that pictl's inventory holds under keys of
//! its own, not as config.yaml keys: extra certificate names (`tls-san`,
//! `[cluster] tls_san`), node labels and taints (the node's `labels` and
//! `taints`, set through the API) and the kubeconfig's mode. Each is
//! "dropped" unless the inventory carries it, so adoption never loses one
//! silently.

use std::collections::{BTreeMap, BTreeSet};

use super::import::{Imported, Value};
use super::view::{NodeView, mode, set};

/// The settings of `imported` that the inventory does not carry: (key, value).
pub fn dropped(
    imported: &Imported,
    desired: &BTreeMap<String, Value>,
    view: NodeView<'_>,
) -> Vec<(String, String)> {
    let listed = |key: &str| imported.keys.get(key).map(set).unwrap_or_default();
    let mut out = Vec::new();
    let mut push = |key: &str, items: Vec<String>| {
        if !items.is_empty() {
            out.push((key.to_string(), items.join(" ")));
        }
    };
    push("tls-san", extra_sans(&listed("tls-san"), desired, view));
    push(
        "node-label",
        uncarried_labels(&listed("node-label"), view.labels),
    );
    push(
        "node-taint",
        listed("node-taint")
            .into_iter()
            .filter(|t| !view.taints.contains(t))
            .collect(),
    );
    if let Some(Value::One(m)) = imported.keys.get("write-kubeconfig-mode")
        && mode(m) != "0600"
        && !view.carried.contains_key("write-kubeconfig-mode")
    {
        push("write-kubeconfig-mode", vec![m.clone()]);
    }
    out
}

/// Certificate names the unit adds that pictl's config would not: K3s's
/// certificate names the node's hostname and addresses anyway.
fn extra_sans(
    have: &BTreeSet<String>,
    desired: &BTreeMap<String, Value>,
    view: NodeView<'_>,
) -> Vec<String> {
    let want = desired.get("tls-san").map(set).unwrap_or_default();
    have.iter()
        .filter(|s| !want.contains(*s) && *s != view.hostname && !view.addresses.contains(s))
        .cloned()
        .collect()
}

/// `key=value` labels (K3s's `--node-label`) the inventory does not give the node.
fn uncarried_labels(have: &BTreeSet<String>, labels: &BTreeMap<String, String>) -> Vec<String> {
    have.iter()
        .filter(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            labels.get(k).map(String::as_str) != Some(v)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn many(items: &[&str]) -> Value {
        Value::Many(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn extra_names_labels_and_taints_are_dropped_unless_the_inventory_carries_them() {
        let mut imported = Imported::default();
        imported.keys.insert(
            "tls-san".into(),
            many(&["pi1", "10.0.0.1", "k3s.example", "a.example"]),
        );
        imported
            .keys
            .insert("node-label".into(), many(&["zone=shelf", "disk=ssd"]));
        imported
            .keys
            .insert("node-taint".into(), many(&["edge=true:NoSchedule"]));
        let desired: BTreeMap<String, Value> = [("tls-san".into(), many(&["a.example"]))].into();
        let addresses = vec!["10.0.0.1".to_string()];
        let carried = BTreeMap::new();
        let labels: BTreeMap<String, String> = [("zone".into(), "shelf".into())].into();
        let view = NodeView {
            hostname: "pi1",
            addresses: &addresses,
            running_token: None,
            carried: &carried,
            labels: &labels,
            taints: &[],
        };
        assert_eq!(
            dropped(&imported, &desired, view),
            [
                ("tls-san".to_string(), "k3s.example".to_string()),
                ("node-label".to_string(), "disk=ssd".to_string()),
                ("node-taint".to_string(), "edge=true:NoSchedule".to_string()),
            ]
        );
        let labels: BTreeMap<String, String> = [
            ("zone".into(), "shelf".into()),
            ("disk".into(), "ssd".into()),
        ]
        .into();
        let taints = ["edge=true:NoSchedule".to_string()];
        let desired: BTreeMap<String, Value> =
            [("tls-san".into(), many(&["a.example", "k3s.example"]))].into();
        let view = NodeView {
            labels: &labels,
            taints: &taints,
            ..view
        };
        assert!(dropped(&imported, &desired, view).is_empty());
    }
}
