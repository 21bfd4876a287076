//! Discovery: `/version`, the API group list and each group version's
//! resource list, as kubectl reads them to map kinds to paths.

use super::*;

pub(super) fn resource_list(group: &str, version: &str) -> Value {
    let mut resources: Vec<Value> = store::RESOURCES
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
            if !categories(r).is_empty() {
                v[0]["categories"] = json!(categories(r));
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
    // The apiserver lists a group version's resources sorted by name
    // (staging/src/k8s.io/apiserver/pkg/endpoints/installer.go,
    // `APIInstaller.Install`), which is the order `kubectl get all` prints.
    resources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// The categories a kind's registry storage declares (`Categories()` in
/// kubernetes pkg/registry/<group>/<kind>/storage/storage.go): pods, services,
/// deployments, replicasets and horizontalpodautoscalers are in `all` (so are
/// replicationcontrollers, daemonsets, statefulsets, jobs and cronjobs, which the
/// simulator does not serve); no other kind it serves declares any.
fn categories(r: &store::ResourceType) -> &'static [&'static str] {
    match (r.group, r.plural) {
        ("", "pods" | "services")
        | ("apps", "deployments" | "replicasets")
        | ("autoscaling", "horizontalpodautoscalers") => &["all"],
        _ => &[],
    }
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
