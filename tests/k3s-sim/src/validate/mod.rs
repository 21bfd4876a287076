//! What the apiserver does to an object between decoding and storage: system
//! metadata (uid, creationTimestamp, generation), the defaults pictl's objects
//! meet (Deployment, Service, Secret, Namespace), validation with 422-style
//! causes, and schema checks for unknown fields (SSA rejects them like the real
//! apiserver's "field not declared in schema").

mod kinds;
mod meta;
mod schema;

pub use schema::unknown_fields;

use crate::api::Invalid;
use crate::store::{ResourceType, State, meta_str};
use serde_json::{Value, json};

pub fn uuid() -> String {
    let h = crate::certs::random_hex(16);
    let mut b: Vec<char> = h.chars().collect();
    b[12] = '4';
    format!(
        "{}-{}-{}-{}-{}",
        b[0..8].iter().collect::<String>(),
        b[8..12].iter().collect::<String>(),
        b[12..16].iter().collect::<String>(),
        b[16..20].iter().collect::<String>(),
        b[20..32].iter().collect::<String>()
    )
}

fn spec_part(o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    c
}

pub fn finish_metadata(rt: &ResourceType, existing: Option<&Value>, obj: &mut Value) {
    let meta = &mut obj["metadata"];
    if let Some(m) = meta.as_object_mut() {
        for k in [
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generateName",
        ] {
            m.remove(k);
        }
    }
    match existing {
        Some(old) => {
            // A Terminating object stays so whatever a client writes.
            for k in [
                "uid",
                "creationTimestamp",
                "resourceVersion",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                if let Some(v) = old["metadata"].get(k) {
                    obj["metadata"][k] = v.clone();
                } else if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
            if rt.has_generation && spec_part(old) != spec_part(obj) {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(g + 1);
            }
            // The main resource ignores status; only the status subresource sets it.
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        None => {
            obj["metadata"]["uid"] = json!(uuid());
            obj["metadata"]["creationTimestamp"] = json!(crate::log::k8s_now());
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
                m.remove("generation");
            }
            if rt.has_generation {
                obj["metadata"]["generation"] = json!(1);
            }
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
    }
}

pub fn defaults(rt: &ResourceType, st: &State, existing: Option<&Value>, obj: &mut Value) {
    let name = meta_str(obj, "name").to_string();
    crate::admission::defaults(rt, obj);
    match rt.kind {
        "Namespace" => {
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"] = json!({"phase": "Active"});
        }
        "Deployment" => {
            let spec = &mut obj["spec"];
            if spec.get("replicas").is_none_or(Value::is_null) {
                spec["replicas"] = json!(1);
            }
            if spec.get("revisionHistoryLimit").is_none() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec.get("progressDeadlineSeconds").is_none() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
            if spec.get("strategy").is_none() {
                spec["strategy"] = json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
            }
        }
        "Service" => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec["clusterIP"].as_str().unwrap_or("").is_empty() {
                let ip = existing
                    .and_then(|e| e["spec"]["clusterIP"].as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| allocate_cluster_ip(st));
                spec["clusterIP"] = json!(ip);
            }
            spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            if spec.get("ipFamilies").is_none() {
                spec["ipFamilies"] = json!(["IPv4"]);
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
            if spec.get("internalTrafficPolicy").is_none() {
                spec["internalTrafficPolicy"] = json!("Cluster");
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
            if obj.get("status").is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        "Secret" => {
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
            if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
                && let Some(sd) = sd.as_object()
            {
                use base64::Engine;
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or("");
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
            }
        }
        _ => {}
    }
}

fn allocate_cluster_ip(st: &State) -> String {
    let used: Vec<String> = st
        .list(&crate::store::RESOURCES[2], None)
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
        .collect();
    for n in 10u32..65000 {
        let ip = format!("10.43.{}.{}", n / 256, n % 256);
        if n % 256 != 0 && n % 256 != 255 && !used.contains(&ip) {
            return ip;
        }
    }
    "10.43.255.254".into()
}

/// Things controllers create for a new namespace.
pub fn namespace_created(st: &mut State, ns: &str) {
    let rt = &crate::store::RESOURCES[5];
    if st.get(rt, ns, "default").is_none() {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
            "name": "default", "namespace": ns, "uid": uuid(), "creationTimestamp": crate::log::k8s_now()}});
        if let Err(e) = st.put(rt, sa) {
            crate::error!("creating default service account in {ns}: {e}");
        }
    }
}

pub fn err(v: &mut Vec<Invalid>, field: &str, reason: &'static str, message: String) {
    v.push(Invalid {
        field: field.into(),
        reason,
        message,
    });
}

/// Every validation error of `obj` (empty when valid), as 422 causes.
pub fn validate(rt: &ResourceType, existing: Option<&Value>, obj: &Value) -> Vec<Invalid> {
    let mut e = Vec::new();
    meta::metadata(rt, existing, obj, &mut e);
    kinds::kind(rt, existing, obj, &mut e);
    e
}
