//! The Table columns kubectl shows for the namespace policy kinds a workload
//! like playson's carries: HorizontalPodAutoscalers (NAME REFERENCE TARGETS
//! MINPODS MAXPODS REPLICAS AGE), PodDisruptionBudgets (NAME MIN AVAILABLE MAX
//! UNAVAILABLE ALLOWED DISRUPTIONS AGE), NetworkPolicies (NAME POD-SELECTOR
//! AGE) and ResourceQuotas (NAME REQUEST LIMIT AGE), as the apiserver's
//! printers make them (kubernetes pkg/printers/internalversion/printers.go,
//! `AddHandlers`, `printHorizontalPodAutoscaler`, `formatHPAMetrics`,
//! `printPodDisruptionBudget`, `printNetworkPolicy`, `printResourceQuota`).
//! Kinds without a printer get the registry's default convertor's NAME
//! CREATED AT (staging/src/k8s.io/apiserver/pkg/registry/rest/table.go).

use crate::tables::{Columns, age, col, name};
use serde_json::{Value, json};

pub fn horizontal_pod_autoscalers(items: &[&Value]) -> Columns {
    let cols = [
        "Name",
        "Reference",
        "Targets",
        "MinPods",
        "MaxPods",
        "Replicas",
        "Age",
    ]
    .iter()
    .map(|c| col(c, "string", 0))
    .collect();
    let row = |o: &&Value| {
        let target = &o["spec"]["scaleTargetRef"];
        let reference = format!(
            "{}/{}",
            target["kind"].as_str().unwrap_or(""),
            target["name"].as_str().unwrap_or("")
        );
        let min = o["spec"]["minReplicas"]
            .as_i64()
            .map_or_else(|| "<unset>".to_string(), |n| n.to_string());
        vec![
            name(o),
            json!(reference),
            json!(hpa_metrics(o)),
            json!(min),
            json!(o["spec"]["maxReplicas"].as_i64().unwrap_or(0)),
            json!(o["status"]["currentReplicas"].as_i64().unwrap_or(0)),
            json!(age(o)),
        ]
    };
    (cols, items.iter().map(row).collect())
}

/// `formatHPAMetrics`: each metric as `current/target` (resources prefixed
/// with their name), the first two only, `<unknown>` where no status says.
fn hpa_metrics(o: &Value) -> String {
    let Some(specs) = o["spec"]["metrics"].as_array().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let statuses = o["status"]["currentMetrics"].as_array();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.and_then(|s| s.get(i)).unwrap_or(&Value::Null);
            hpa_metric(spec, status)
        })
        .collect();
    if list.len() > 2 {
        return format!("{} + {} more...", list[..2].join(", "), list.len() - 2);
    }
    list.join(", ")
}

fn hpa_metric(spec: &Value, status: &Value) -> String {
    let unknown = || "<unknown>".to_string();
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.as_i64().map(|n| n.to_string()))
    };
    let (source, field) = match spec["type"].as_str() {
        Some("Resource") => (&spec["resource"], "resource"),
        Some("ContainerResource") => (&spec["containerResource"], "containerResource"),
        Some("Pods") => (&spec["pods"], "pods"),
        Some("Object") => (&spec["object"], "object"),
        Some("External") => (&spec["external"], "external"),
        _ => return "<unknown type>".into(),
    };
    let current = &status[field]["current"];
    let target = &source["target"];
    let resource = matches!(field, "resource" | "containerResource");
    let prefix = if resource {
        format!("{}: ", source["name"].as_str().unwrap_or(""))
    } else {
        String::new()
    };
    if resource && target["averageValue"].is_null() {
        let pct = |v: &Value| v.as_i64().map(|n| format!("{n}%"));
        let now = pct(&current["averageUtilization"]).unwrap_or_else(unknown);
        let want = pct(&target["averageUtilization"]).unwrap_or_else(|| "<auto>".into());
        return format!("{prefix}{now}/{want}");
    }
    if let Some(avg) = text(&target["averageValue"]) {
        let now = text(&current["averageValue"]).unwrap_or_else(unknown);
        let suffix = if matches!(field, "object" | "external") {
            " (avg)"
        } else {
            ""
        };
        return format!("{prefix}{now}/{avg}{suffix}");
    }
    let now = text(&current["value"]).unwrap_or_else(unknown);
    format!("{now}/{}", text(&target["value"]).unwrap_or_default())
}

pub fn pod_disruption_budgets(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Min Available", "string", 0),
        col("Max Unavailable", "string", 0),
        col("Allowed Disruptions", "integer", 0),
        col("Age", "string", 0),
    ];
    let int_or_string = |v: &Value| match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".into(),
    };
    let row = |o: &&Value| {
        vec![
            name(o),
            json!(int_or_string(&o["spec"]["minAvailable"])),
            json!(int_or_string(&o["spec"]["maxUnavailable"])),
            json!(o["status"]["disruptionsAllowed"].as_i64().unwrap_or(0)),
            json!(age(o)),
        ]
    };
    (cols, items.iter().map(row).collect())
}

pub fn network_policies(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Pod-Selector", "string", 0),
        col("Age", "string", 0),
    ];
    let row = |o: &&Value| {
        let sel = label_selector(&o["spec"]["podSelector"]);
        let sel = if sel.is_empty() { "<none>".into() } else { sel };
        vec![name(o), json!(sel), json!(age(o))]
    };
    (cols, items.iter().map(row).collect())
}

/// `printResourceQuota`: `resource: used/hard` for each hard limit (sorted),
/// `limits.*` in the LIMIT column and every other one in REQUEST.
pub fn resource_quotas(items: &[&Value]) -> Columns {
    let cols = ["Name", "Request", "Limit", "Age"]
        .iter()
        .map(|c| col(c, "string", 0))
        .collect();
    let row = |o: &&Value| {
        let (mut request, mut limit) = (Vec::new(), Vec::new());
        if let Some(hard) = o["status"]["hard"].as_object() {
            for (k, h) in hard {
                let used = o["status"]["used"][k].as_str().unwrap_or("0");
                let entry = format!("{k}: {used}/{}", h.as_str().unwrap_or(""));
                match k.split_once('.') {
                    Some(("limits", _)) => limit.push(entry),
                    _ => request.push(entry),
                }
            }
        }
        vec![
            name(o),
            json!(request.join(", ")),
            json!(limit.join(", ")),
            json!(age(o)),
        ]
    };
    (cols, items.iter().map(row).collect())
}

/// The default table convertor: NAME and CREATED AT (RFC 3339, UTC).
pub fn created_at(items: &[&Value]) -> Columns {
    let cols = vec![col("Name", "string", 0), col("Created At", "date", 0)];
    let row = |o: &&Value| vec![name(o), o["metadata"]["creationTimestamp"].clone()];
    (cols, items.iter().map(row).collect())
}

/// A label selector as `labels.Selector.String()` prints it: requirements
/// sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; "" when empty.
pub fn label_selector(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("").to_string();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            _ => format!("!{key}"),
        };
        reqs.push((key, text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
pub fn format_labels(m: &Value) -> String {
    let pairs: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_targets_read_like_format_hpa_metrics() {
        let hpa = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}}]},
            "status": {"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}});
        assert_eq!(
            hpa_metrics(&hpa),
            "cpu: 12%/70%, memory: <unknown>/100Mi + 1 more..."
        );
        assert_eq!(hpa_metrics(&json!({"spec": {}})), "<none>");
    }

    #[test]
    fn selectors_print_sorted_like_labels_selector_string() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]},
                {"key": "d", "operator": "DoesNotExist"}]});
        assert_eq!(label_selector(&sel), "a=1,b=2,c in (x,y),!d");
        assert_eq!(label_selector(&json!({})), "");
        assert_eq!(format_labels(&json!({"app": "httpbin"})), "app=httpbin");
        assert_eq!(format_labels(&Value::Null), "<none>");
    }
}
