//! What the comparison and the carried-settings check both read: the
//! node as K3s would default it, and values as K3s reads them.

use std::collections::{BTreeMap, BTreeSet};

use super::import::Value;

/// What K3s would default a missing key to, on this node.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    pub hostname: &'a str,
    /// The node's addresses, the default-route one first.
    pub addresses: &'a [String],
    /// The token a server already runs with (its token file), if any.
    pub running_token: Option<&'a str>,
    /// The inventory's K3s settings for the node (its role's and its own).
    pub carried: &'a BTreeMap<String, Value>,
    /// The inventory's labels and taints for the node (the API phase sets them).
    pub labels: &'a BTreeMap<String, String>,
    pub taints: &'a [String],
}

/// A file mode as K3s parses it (octal), written with four digits.
pub(super) fn mode(m: &str) -> String {
    format!("{:0>4}", m.trim_start_matches('0'))
}

pub(super) fn set(v: &Value) -> BTreeSet<String> {
    match v {
        Value::Many(items) => items.iter().cloned().collect(),
        Value::One(s) => std::iter::once(s.clone()).collect(),
        Value::Bool(b) => std::iter::once(b.to_string()).collect(),
        // Compared, never shown: a resolved secret by its value.
        Value::Secret(crate::inventory::SecretSetting::Value(v)) => {
            std::iter::once(v.expose().to_string()).collect()
        }
        Value::Secret(s) => std::iter::once(s.to_string()).collect(),
    }
}
