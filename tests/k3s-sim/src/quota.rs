//! The resource quota controller's status, which `kubectl get quota` prints:
//! `status.hard` is the spec's, `status.used` what the namespace holds for
//! each hard key (kubernetes pkg/controller/resourcequota/
//! resource_quota_controller.go `syncResourceQuota`; usage as
//! pkg/quota/v1/evaluator/core/pods.go `PodUsageFunc` counts it: pods not
//! Succeeded or Failed, `requests.X`/`X` and `limits.X` summed over their
//! containers; services.go and the object count evaluators for counts).
//! Quantities print in canonical form (apimachinery pkg/api/resource
//! quantity.go `CanonicalizeBytes`: `300m`, `1`, `384Mi`).
//!
//! Simulator-only simplifications: init containers and pod overhead are not
//! counted, and nothing is refused at admission for exceeding a quota.

use crate::store::{RESOURCES, State};
use serde_json::{Map, Value, json};

fn rt(kind: &str) -> &'static crate::store::ResourceType {
    crate::pods::rt(kind)
}

/// Recomputes every quota's status (the controller's pass).
pub fn update_quotas(st: &mut State) {
    let quotas: Vec<Value> = st
        .list(rt("ResourceQuota"), None)
        .into_iter()
        .cloned()
        .collect();
    for q in quotas {
        let ns = q["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let hard = q["spec"]["hard"].as_object().cloned().unwrap_or_default();
        let used: Map<String, Value> = hard
            .keys()
            .map(|k| (k.clone(), json!(usage(st, &ns, k))))
            .collect();
        let status = json!({"hard": hard, "used": used});
        if q["status"] != status {
            let mut q = q.clone();
            q["status"] = status;
            if let Err(e) = st.put(rt("ResourceQuota"), q) {
                crate::error!("updating ResourceQuota status: {e}");
            }
        }
    }
}

/// What namespace `ns` uses of resource `key`, as a canonical quantity.
fn usage(st: &State, ns: &str, key: &str) -> String {
    let pods: Vec<&Value> = st
        .list(rt("Pod"), Some(ns))
        .into_iter()
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .collect();
    let count = |kind: &str| st.list(rt(kind), Some(ns)).len().to_string();
    match key {
        "pods" | "count/pods" => pods.len().to_string(),
        "services" | "count/services" => count("Service"),
        "configmaps" | "count/configmaps" => count("ConfigMap"),
        "secrets" | "count/secrets" => count("Secret"),
        "resourcequotas" | "count/resourcequotas" => count("ResourceQuota"),
        "services.loadbalancers" | "services.nodeports" => {
            let ty = if key.ends_with("loadbalancers") {
                "LoadBalancer"
            } else {
                "NodePort"
            };
            let svcs = st.list(rt("Service"), Some(ns));
            svcs.iter()
                .filter(|s| s["spec"]["type"] == ty)
                .count()
                .to_string()
        }
        _ if key.starts_with("count/") => object_count(st, ns, &key["count/".len()..]),
        _ => {
            let (field, name) = match key.split_once('.') {
                Some(("limits", r)) => ("limits", r),
                Some(("requests", r)) => ("requests", r),
                _ => ("requests", key),
            };
            container_sum(&pods, field, name)
        }
    }
}

/// `count/<plural>[.<group>]` of a kind the simulator serves, else 0.
fn object_count(st: &State, ns: &str, resource: &str) -> String {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.group == group)
        .map_or(0, |r| st.list(r, Some(ns)).len())
        .to_string()
}

fn container_sum(pods: &[&Value], field: &str, name: &str) -> String {
    let mut total: i128 = 0;
    let mut binary = false;
    for p in pods {
        for c in p["spec"]["containers"].as_array().into_iter().flatten() {
            if let Some((v, b)) = c["resources"][field][name].as_str().and_then(parse) {
                total += v;
                binary |= b;
            }
        }
    }
    format(total, binary)
}

/// A quantity in thousandths of its unit, and whether it had a binary suffix.
pub fn parse(q: &str) -> Option<(i128, bool)> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let frac3: String = frac.chars().chain("000".chars()).take(3).collect();
    let milli = whole.parse::<i128>().ok()? * 1000 + frac3.parse::<i128>().ok()?;
    let (mult, binary): (i128, bool) = match suffix {
        "" => (1, false),
        "m" => return Some((whole.parse::<i128>().ok()?, false)),
        "k" => (1000, false),
        "M" => (1000_i128.pow(2), false),
        "G" => (1000_i128.pow(3), false),
        "T" => (1000_i128.pow(4), false),
        "Ki" => (1 << 10, true),
        "Mi" => (1 << 20, true),
        "Gi" => (1 << 30, true),
        "Ti" => (1 << 40, true),
        _ => return None,
    };
    Some((milli * mult, binary))
}

/// The canonical form: the largest suffix that leaves a whole number.
pub fn format(milli: i128, binary: bool) -> String {
    if milli == 0 {
        return "0".into();
    }
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    let (base, suffixes): (i128, &[&str]) = if binary && units % 1024 == 0 {
        (1024, &["", "Ki", "Mi", "Gi", "Ti", "Pi"])
    } else {
        (1000, &["", "k", "M", "G", "T", "P"])
    };
    let (mut v, mut i) = (units, 0);
    while v % base == 0 && i + 1 < suffixes.len() {
        v /= base;
        i += 1;
    }
    format!("{v}{}", suffixes[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_add_up_and_print_canonically() {
        let sum = |qs: &[&str]| {
            let parsed: Vec<(i128, bool)> = qs.iter().filter_map(|q| parse(q)).collect();
            format(parsed.iter().map(|p| p.0).sum(), parsed.iter().any(|p| p.1))
        };
        assert_eq!(sum(&["100m", "100m", "100m"]), "300m");
        assert_eq!(sum(&["500m", "500m"]), "1");
        assert_eq!(sum(&["128Mi", "128Mi", "128Mi"]), "384Mi");
        assert_eq!(sum(&["512Mi", "512Mi"]), "1Gi");
        assert_eq!(sum(&["1", "0.5"]), "1500m");
        assert_eq!(sum(&[]), "0");
        assert_eq!(format(2_000_000, false), "2k");
    }
}
