//! A Node's labels and taints after registration. K3s hands `node-label`
//! and `node-taint` to the kubelet only when a node registers, and the
//! kubelet refuses role labels (`node-role.kubernetes.io/*`), so pictl
//! converges both through the API: what the inventory says is set, and
//! what pictl set before but the inventory no longer says is removed.
//! Which keys pictl set is recorded on the Node in two annotations, so
//! labels and taints others put there (K3s, the kubelet, `kubectl cordon`)
//! are never touched.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node as KNode, Taint as KTaint};
use serde::Serialize;
use serde_json::json;

use crate::inventory::Node;
use crate::step::Change;

pub const LABELS_ANNOTATION: &str = "pictl.dev/labels";
pub const TAINTS_ANNOTATION: &str = "pictl.dev/taints";

/// A taint as the inventory writes it (`key=value:Effect`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    /// `key=value:Effect` or `key:Effect` (validated by the inventory).
    pub fn parse(s: &str) -> Option<Taint> {
        let (kv, effect) = s.rsplit_once(':')?;
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        Some(Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        })
    }

    /// What identifies a taint on a Node: its key and effect.
    fn id(&self) -> String {
        format!("{}:{}", self.key, self.effect)
    }

    fn shown(&self) -> String {
        if self.value.is_empty() {
            self.id()
        } else {
            format!("{}={}:{}", self.key, self.value, self.effect)
        }
    }
}

/// What a Node's labels and taints need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeMetaPlan {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
    pub taints_add: Vec<Taint>,
    pub taints_remove: Vec<Taint>,
    /// The Node's taints after the change (a list is replaced whole).
    #[serde(skip)]
    taints_after: Vec<Taint>,
    /// The records for the annotations after the change.
    #[serde(skip)]
    records: (String, String),
}

fn live_taints(live: &KNode) -> Vec<Taint> {
    let taints: &[KTaint] = live
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    taints
        .iter()
        .map(|t| Taint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone(),
        })
        .collect()
}

fn record(live: &KNode, key: &str) -> BTreeSet<String> {
    let value = live.metadata.annotations.as_ref().and_then(|a| a.get(key));
    value
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// What `live` needs for `node`'s inventory labels and taints (`None`:
/// nothing).
pub fn plan(live: &KNode, node: &Node) -> Option<NodeMetaPlan> {
    let labels = live.metadata.labels.clone().unwrap_or_default();
    let set: BTreeMap<String, String> = node
        .labels
        .iter()
        .filter(|(k, v)| labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove: Vec<String> = record(live, LABELS_ANNOTATION)
        .into_iter()
        .filter(|k| !node.labels.contains_key(k) && labels.contains_key(k))
        .collect();
    let want: Vec<Taint> = node.taints.iter().filter_map(|t| Taint::parse(t)).collect();
    let want_ids: BTreeSet<String> = want.iter().map(Taint::id).collect();
    let current = live_taints(live);
    let dropped = record(live, TAINTS_ANNOTATION);
    let taints_remove: Vec<Taint> = current
        .iter()
        .filter(|t| dropped.contains(&t.id()) && !want_ids.contains(&t.id()))
        .cloned()
        .collect();
    let taints_add: Vec<Taint> = want
        .iter()
        .filter(|t| !current.contains(t))
        .cloned()
        .collect();
    let mut taints_after: Vec<Taint> = current
        .into_iter()
        .filter(|t| !taints_remove.contains(t) && !want_ids.contains(&t.id()))
        .collect();
    taints_after.extend(want);
    let records = (
        node.labels.keys().cloned().collect::<Vec<_>>().join(","),
        want_ids.into_iter().collect::<Vec<_>>().join(","),
    );
    let recorded = (
        record(live, LABELS_ANNOTATION)
            .into_iter()
            .collect::<Vec<_>>()
            .join(","),
        record(live, TAINTS_ANNOTATION)
            .into_iter()
            .collect::<Vec<_>>()
            .join(","),
    );
    let nothing =
        set.is_empty() && remove.is_empty() && taints_add.is_empty() && taints_remove.is_empty();
    (!nothing || records != recorded).then_some(NodeMetaPlan {
        set,
        remove,
        taints_add,
        taints_remove,
        taints_after,
        records,
    })
}

impl NodeMetaPlan {
    pub fn changes(&self, live: &KNode) -> Vec<Change> {
        let labels = live.metadata.labels.clone().unwrap_or_default();
        let mut out = Vec::new();
        for (k, v) in &self.set {
            let before = labels
                .get(k)
                .map_or_else(|| "absent".to_string(), |v| format!("\"{v}\""));
            out.push(Change::new(
                format!("label {k}"),
                before,
                format!("\"{v}\""),
            ));
        }
        for k in &self.remove {
            out.push(Change::new(format!("label {k}"), "set", "removed"));
        }
        for t in &self.taints_add {
            out.push(Change::new(
                format!("taint {}", t.shown()),
                "absent",
                "added",
            ));
        }
        for t in &self.taints_remove {
            out.push(Change::new(
                format!("taint {}", t.shown()),
                "set",
                "removed",
            ));
        }
        if out.is_empty() {
            out.push(Change::new(
                "annotations",
                "no record of pictl's labels and taints",
                "recorded",
            ));
        }
        out
    }

    /// The JSON merge patch: labels set or removed (null), the taints list
    /// as it should be, and the records (the API room adds the
    /// resourceVersion it was computed from: see [`crate::cluster::nodes::patch`]).
    pub fn patch(&self) -> serde_json::Value {
        let mut labels = serde_json::Map::new();
        for (k, v) in &self.set {
            labels.insert(k.clone(), json!(v));
        }
        for k in &self.remove {
            labels.insert(k.clone(), serde_json::Value::Null);
        }
        let taints: Vec<serde_json::Value> = self
            .taints_after
            .iter()
            .map(|t| {
                let mut v = json!({"key": t.key, "effect": t.effect});
                if !t.value.is_empty() {
                    v["value"] = json!(t.value);
                }
                v
            })
            .collect();
        json!({
            "metadata": {
                "labels": labels,
                "annotations": {LABELS_ANNOTATION: self.records.0, TAINTS_ANNOTATION: self.records.1},
            },
            "spec": {"taints": taints},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)], taints: &[&str]) -> Node {
        let text = "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\n[ssh]\nagent = true\n\
                    [[nodes]]\nname = \"n1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n";
        let inv = crate::inventory::Inventory::parse(text, "t.toml", std::path::Path::new("/"))
            .expect("valid");
        let mut n = inv.nodes[0].clone();
        n.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        n.taints = taints.iter().map(|t| t.to_string()).collect();
        n
    }

    fn live(json: serde_json::Value) -> KNode {
        serde_json::from_value(json).expect("node")
    }

    #[test]
    fn labels_are_set_and_only_pictls_old_ones_removed() {
        let l = live(json!({
            "metadata": {"name": "n1", "resourceVersion": "7",
                "labels": {"zone": "a", "old": "x", "kubernetes.io/arch": "arm64", "theirs": "y"},
                "annotations": {LABELS_ANNOTATION: "old,zone"}},
        }));
        let n = node(
            &[("zone", "b"), ("node-role.kubernetes.io/worker", "true")],
            &[],
        );
        let p = plan(&l, &n).expect("changes");
        assert_eq!(
            p.set.keys().collect::<Vec<_>>(),
            ["node-role.kubernetes.io/worker", "zone"]
        );
        assert_eq!(p.remove, ["old"]);
        let patch = p.patch();
        assert_eq!(patch["metadata"]["labels"]["old"], serde_json::Value::Null);
        assert!(patch["metadata"]["labels"].get("theirs").is_none());
        assert_eq!(
            patch["metadata"]["annotations"][LABELS_ANNOTATION],
            "node-role.kubernetes.io/worker,zone"
        );
    }

    #[test]
    fn taints_others_set_are_kept_and_pictls_removed_ones_go() {
        let l = live(json!({
            "metadata": {"name": "n1", "annotations": {TAINTS_ANNOTATION: "edge:NoSchedule"}},
            "spec": {"taints": [
                {"key": "edge", "value": "true", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
            ]},
        }));
        let n = node(&[], &["gpu=yes:PreferNoSchedule"]);
        let p = plan(&l, &n).expect("changes");
        assert_eq!(p.taints_remove.len(), 1);
        assert_eq!(p.taints_add[0].key, "gpu");
        let taints = p.patch()["spec"]["taints"].clone();
        let keys: Vec<&str> = taints
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|t| t["key"].as_str())
            .collect();
        assert_eq!(keys, ["node.kubernetes.io/unschedulable", "gpu"]);
    }

    #[test]
    fn a_node_as_the_inventory_says_with_its_records_needs_nothing() {
        let l = live(json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"},
                "annotations": {LABELS_ANNOTATION: "zone", TAINTS_ANNOTATION: "edge:NoSchedule"}},
            "spec": {"taints": [{"key": "edge", "value": "true", "effect": "NoSchedule"}]},
        }));
        assert_eq!(
            plan(&l, &node(&[("zone", "a")], &["edge=true:NoSchedule"])),
            None
        );
        // Without records (a node registered with its labels), pictl records them once.
        let fresh = live(json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}}));
        let p = plan(&fresh, &node(&[("zone", "a")], &[])).expect("records");
        assert_eq!(p.changes(&fresh)[0].what, "annotations");
        assert_eq!(
            plan(&live(json!({"metadata": {"name": "n1"}})), &node(&[], &[])),
            None
        );
    }
}
