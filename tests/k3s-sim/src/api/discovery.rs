//! Discovery: `/version`, the API group list and each group version's
//! resource list, as kubectl reads them to map kinds to paths.

use super::*;

pub(super) fn resource_list(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = store::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| {
            let mut v = vec![json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create","delete","deletecollection","get","list","patch","update","watch"],
                "shortNames": r.short_names,
                "storageVersionHash": "",
            })];
            if r.short_names.is_empty()
                && let Some(m) = v[0].as_object_mut() {
                    m.remove("shortNames");
                }
            if r.group == "apps" || r.kind == "Pod" {
                v[0]["categories"] = json!(["all"]);
            }
            if r.kind == "Pod" {
                // As the apiserver lists it: kubectl drain looks for it here.
                v.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                    "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
            }
            if r.has_status {
                v.push(json!({"name": format!("{}/status", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get","patch","update"]}));
            }
            v
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

pub(super) fn api_group(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub(super) fn version_info() -> Value {
    let kv = crate::version::kube_version().trim_start_matches('v');
    let mut parts = kv.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("32");
    json!({
        "major": major, "minor": minor,
        "gitVersion": crate::version::version(),
        "gitCommit": format!("{}{}", crate::version::commit(), "0".repeat(32)),
        "gitTreeState": "clean",
        "buildDate": "2025-05-27T00:00:00Z",
        "goVersion": crate::version::go_version(),
        "compiler": "gc",
        "platform": format!("linux/{}", crate::nodes::arch()),
    })
}
