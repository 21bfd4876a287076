//! The admin kubeconfig K3s writes on its first server, made usable from
//! the operator's machine: the server address rewritten from 127.0.0.1 to
//! a reachable address (TLS still verified against the cluster CA, whose
//! certificate holds that address as a SAN), and entries named after the
//! cluster so that merging into `~/.kube/config` never clobbers others.

use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the kubeconfig is not valid YAML")]
    Yaml(#[source] serde_yaml_ng::Error),
    #[error("the kubeconfig has no {0} list")]
    Missing(&'static str),
}

/// K3s's kubeconfig with `server` set to `api_url` and the cluster, user
/// and context all named `name`.
pub fn rewrite(k3s_yaml: &str, name: &str, api_url: &str) -> Result<String, KubeconfigError> {
    let mut doc: Value = serde_yaml_ng::from_str(k3s_yaml).map_err(KubeconfigError::Yaml)?;
    for (list, inner) in [
        ("clusters", "cluster"),
        ("users", "user"),
        ("contexts", "context"),
    ] {
        let items = doc
            .get_mut(list)
            .and_then(Value::as_sequence_mut)
            .ok_or(KubeconfigError::Missing(list))?;
        // K3s writes exactly one of each, all named "default".
        items.truncate(1);
        for item in items.iter_mut() {
            if let Some(m) = item.as_mapping_mut() {
                m.insert("name".into(), name.into());
            }
            let Some(body) = item.get_mut(inner).and_then(Value::as_mapping_mut) else {
                continue;
            };
            match inner {
                "cluster" => {
                    body.insert("server".into(), api_url.into());
                }
                "context" => {
                    body.insert("cluster".into(), name.into());
                    body.insert("user".into(), name.into());
                }
                _ => {}
            }
        }
    }
    if let Some(m) = doc.as_mapping_mut() {
        m.insert("current-context".into(), name.into());
    }
    serde_yaml_ng::to_string(&doc).map_err(KubeconfigError::Yaml)
}

/// Merges `ours` (a rewritten kubeconfig) into `existing`: entries with
/// our name are replaced, all others kept; the current context is only set
/// when `existing` had none.
pub fn merge(existing: Option<&str>, ours: &str) -> Result<String, KubeconfigError> {
    let ours: Value = serde_yaml_ng::from_str(ours).map_err(KubeconfigError::Yaml)?;
    let mut base: Value = match existing.filter(|s| !s.trim().is_empty()) {
        Some(text) => serde_yaml_ng::from_str(text).map_err(KubeconfigError::Yaml)?,
        None => {
            let mut m = Mapping::new();
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), "Config".into());
            Value::Mapping(m)
        }
    };
    let Some(base_map) = base.as_mapping_mut() else {
        return Err(KubeconfigError::Missing("top-level"));
    };
    for list in ["clusters", "users", "contexts"] {
        let new_items = ours
            .get(list)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let entry = base_map
            .entry(list.into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if !entry.is_sequence() {
            *entry = Value::Sequence(Vec::new());
        }
        let Some(seq) = entry.as_sequence_mut() else {
            continue;
        };
        for item in new_items {
            let name = item.get("name").cloned();
            match seq.iter_mut().find(|e| e.get("name") == name.as_ref()) {
                Some(slot) => *slot = item,
                None => seq.push(item),
            }
        }
    }
    let has_current = base_map
        .get("current-context")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_current && let Some(cur) = ours.get("current-context") {
        base_map.insert("current-context".into(), cur.clone());
    }
    serde_yaml_ng::to_string(&base).map_err(KubeconfigError::Yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn rewrite_points_at_the_api_address_and_names_everything() {
        let out = rewrite(K3S, "playson", "https://192.168.0.196:6443").expect("rewrite");
        let v: Value = serde_yaml_ng::from_str(&out).expect("yaml");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://192.168.0.196:6443"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(v["contexts"][0]["name"], "playson");
        assert_eq!(v["contexts"][0]["context"]["user"], "playson");
        assert_eq!(v["users"][0]["name"], "playson");
        assert_eq!(v["current-context"], "playson");
    }

    #[test]
    fn merge_keeps_other_contexts_and_the_current_one() {
        let ours = rewrite(K3S, "playson", "https://10.0.0.1:6443").expect("rewrite");
        let other = rewrite(K3S, "work", "https://work:6443").expect("rewrite");
        let merged = merge(Some(&other), &ours).expect("merge");
        let v: Value = serde_yaml_ng::from_str(&merged).expect("yaml");
        let names: Vec<&str> = v["contexts"]
            .as_sequence()
            .expect("seq")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["work", "playson"]);
        assert_eq!(v["current-context"], "work");
        // Merging again replaces, never duplicates.
        let again = merge(Some(&merged), &ours).expect("merge");
        assert_eq!(again, merged);
    }

    #[test]
    fn merge_into_nothing_sets_the_context() {
        let ours = rewrite(K3S, "lab", "https://10.77.0.11:6443").expect("rewrite");
        let v: Value = serde_yaml_ng::from_str(&merge(None, &ours).expect("merge")).expect("yaml");
        assert_eq!(v["current-context"], "lab");
    }
}
