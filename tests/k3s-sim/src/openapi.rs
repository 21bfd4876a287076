//! Just enough OpenAPI v3 for kubectl: `kubectl apply` (default `--validate=strict`)
//! asks /openapi/v3 whether each kind's PATCH accepts the `fieldValidation` query
//! parameter; when it does, kubectl leaves validation to the server instead of
//! downloading full schemas. So each group-version document lists, per resource,
//! the item path with a PATCH operation, its GVK extension and that parameter.
//! No schemas are published (`kubectl explain` does not work).

use crate::store::{self, ResourceType};
use serde_json::{Value, json};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(group: &str, version: &str) -> String {
    use sha2::Digest;
    let d =
        sha2::Sha256::digest(format!("{}{group}{version}", crate::version::version()).as_bytes());
    hex::encode(&d[..16]).to_uppercase()
}

fn gvs() -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("", "v1")];
    v.extend(store::groups());
    v
}

pub fn root() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in gvs() {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(g, v))}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "description": name, "schema": {"type": "string", "uniqueItems": true}})
}

fn item_path(r: &ResourceType) -> String {
    let base = format!("/{}", gv_path(r.group, r.version));
    if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("{base}/{}/{{name}}", r.plural)
    }
}

/// The document for `api/v1` or `apis/<group>/<version>`, or None if not served.
pub fn doc(gv: &str) -> Option<Value> {
    let (g, v) = gvs().into_iter().find(|(g, v)| gv_path(g, v) == gv)?;
    let mut paths = serde_json::Map::new();
    for r in store::RESOURCES
        .iter()
        .filter(|r| r.group == g && r.version == v)
    {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |verb: &str, params: Vec<Value>| {
            json!({"operationId": format!("{verb}{}", r.kind), "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk})
        };
        paths.insert(
            item_path(r),
            json!({
                "get": op("get", vec![]),
                "put": op("put", vec![param("dryRun"), param("fieldManager"), param("fieldValidation")]),
                "patch": op("patch", vec![param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")]),
                "delete": op("delete", vec![param("dryRun")]),
            }),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": crate::version::kube_version()},
        "paths": paths, "components": {"schemas": {}}}),
    )
}
