use super::*;
use serde_json::json;

fn attrs<'a>(
    verb: &'a str,
    plural: &str,
    sub: Option<&'a str>,
    ns: &'a str,
    name: &'a str,
) -> Attributes<'a> {
    let group = if plural.starts_with("cluster") || plural.starts_with("role") {
        "rbac.authorization.k8s.io"
    } else {
        ""
    };
    Attributes {
        verb,
        rt: find(group, "v1", plural).expect("kind served"),
        subresource: sub,
        namespace: ns,
        name,
    }
}

#[test]
fn rules_match_verb_group_resource_subresource_and_names() {
    let rule = json!({"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"],
        "resourceNames": ["node1"]});
    assert!(rule_allows(
        &rule,
        &attrs("patch", "nodes", Some("status"), "", "node1")
    ));
    assert!(!rule_allows(
        &rule,
        &attrs("patch", "nodes", Some("status"), "", "node2")
    ));
    assert!(
        !rule_allows(&rule, &attrs("patch", "nodes", None, "", "node1")),
        "the main resource is not the subresource"
    );
    assert!(!rule_allows(
        &rule,
        &attrs("update", "nodes", Some("status"), "", "node1")
    ));
    assert!(!rule_allows(
        &rule,
        &attrs("get", "nodes", None, "", "node1")
    ));
    let create = json!({"apiGroups": [""], "resources": ["events"], "verbs": ["create"]});
    assert!(rule_allows(
        &create,
        &attrs("create", "events", None, "default", "")
    ));
    let named_create = json!({"apiGroups": [""], "resources": ["events"], "verbs": ["create"], "resourceNames": ["x"]});
    assert!(
        !rule_allows(
            &named_create,
            &attrs("create", "events", None, "default", "")
        ),
        "create has no name, so resourceNames never match it"
    );
    let stars = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
    assert!(rule_allows(
        &stars,
        &attrs("patch", "nodes", Some("status"), "", "n")
    ));
    assert!(!rule_allows(
        &stars,
        &attrs("patch", "nodes", None, "", "n")
    ));
}

#[test]
fn denials_are_403_at_cluster_and_namespace_scope() {
    let u = User::ServiceAccount {
        namespace: "kube-system".into(),
        name: "pictl-agent-node1".into(),
    };
    let r = forbidden(&u, &attrs("patch", "nodes", Some("status"), "", "node2"));
    assert_eq!(r.status().as_u16(), 403);
    let r = forbidden(&u, &attrs("list", "secrets", None, "kube-system", ""));
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn rbac_names_are_path_segments() {
    let mut e = Vec::new();
    validate_name("pictl-agent:node1", &mut e);
    validate_name("system:node-proxier", &mut e);
    assert!(e.is_empty());
    validate_name("a/b", &mut e);
    validate_name("..", &mut e);
    assert_eq!(e.len(), 2);
}
