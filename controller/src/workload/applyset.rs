//! ApplySets (KEP-3659, kubectl's `applyset.kubernetes.io/*`): how pictl
//! knows which live objects it applied, so that an object removed from a
//! playbook is pruned, never guessed. The parent is a Secret in
//! `kube-system`; members carry `applyset.kubernetes.io/part-of=<id>`.

use std::collections::BTreeSet;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const PARENT_NAMESPACE: &str = "kube-system";
pub const LABEL_ID: &str = "applyset.kubernetes.io/id";
pub const LABEL_PART_OF: &str = "applyset.kubernetes.io/part-of";
pub const ANN_TOOLING: &str = "applyset.kubernetes.io/tooling";
pub const ANN_GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";
pub const ANN_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";

/// The parent Secret's name for a playbook.
pub fn parent_name(playbook: &str) -> String {
    format!("pictl-applyset-{playbook}")
}

/// `applyset-<base64url(sha256(<name>.<namespace>.<kind>.<group>))>-v1`,
/// the ID the ApplySet specification derives from the parent.
pub fn id(parent: &str, namespace: &str) -> String {
    let digest = Sha256::digest(format!("{parent}.{namespace}.Secret.").as_bytes());
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// A comma-separated annotation value as a set.
pub fn parse_list(value: Option<&str>) -> BTreeSet<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub fn join_list(items: &BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(",")
}

/// What a parent records: the kinds its members may have, and the
/// namespaces (besides its own) they may live in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParentState {
    pub group_kinds: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
}

impl ParentState {
    /// Read from a parent's annotations.
    pub fn of(annotations: &std::collections::BTreeMap<String, String>) -> Self {
        let get = |k: &str| annotations.get(k).map(String::as_str);
        Self {
            group_kinds: parse_list(get(ANN_GROUP_KINDS)),
            namespaces: parse_list(get(ANN_NAMESPACES)),
        }
    }

    /// Both sets' kinds and namespaces.
    pub fn union(&self, other: &ParentState) -> ParentState {
        ParentState {
            group_kinds: self
                .group_kinds
                .union(&other.group_kinds)
                .cloned()
                .collect(),
            namespaces: self.namespaces.union(&other.namespaces).cloned().collect(),
        }
    }
}

/// The parent object recording `state`.
pub fn parent(playbook: &str, state: &ParentState) -> serde_json::Value {
    let (group_kinds, namespaces) = (&state.group_kinds, &state.namespaces);
    let name = parent_name(playbook);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": PARENT_NAMESPACE,
            "labels": { LABEL_ID: id(&name, PARENT_NAMESPACE) },
            "annotations": {
                ANN_TOOLING: format!("pictl/{}", env!("CARGO_PKG_VERSION")),
                ANN_GROUP_KINDS: join_list(group_kinds),
                ANN_NAMESPACES: join_list(namespaces),
            },
        },
        "type": "Opaque",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_url_safe_and_versioned() {
        let a = id("pictl-applyset-playson", "kube-system");
        assert_eq!(a, id("pictl-applyset-playson", "kube-system"));
        assert_ne!(a, id("pictl-applyset-other", "kube-system"));
        assert!(a.starts_with("applyset-") && a.ends_with("-v1"));
        assert!(!a.contains(['+', '/', '=']), "{a}");
        // A label value: at most 63 characters.
        assert!(a.len() <= 63, "{a}");
    }

    #[test]
    fn lists_round_trip_sorted() {
        let s = parse_list(Some("Service, Deployment.apps,,Namespace"));
        assert_eq!(join_list(&s), "Deployment.apps,Namespace,Service");
        assert!(parse_list(None).is_empty());
    }
}
