//! meta.k8s.io/v1 Table responses, which `kubectl get` asks for, with each
//! kind's columns as the apiserver's printers make them (kubernetes
//! pkg/printers/internalversion/printers.go, `AddHandlers`): Nodes NAME STATUS
//! ROLES AGE VERSION, Deployments READY UP-TO-DATE AVAILABLE, Services TYPE
//! CLUSTER-IP EXTERNAL-IP PORT(S); the other kinds' in pod_tables.rs,
//! policy_tables.rs and access_tables.rs.

use crate::store::ResourceType;
use crate::{access_tables, policy_tables};
use serde_json::{Value, json};

/// Kubernetes' HumanDuration, as kubectl prints AGE.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        return if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if d < 8 {
        return if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        };
    }
    if d < 730 {
        return format!("{d}d");
    }
    format!("{}y", d / 365)
}

pub fn age(o: &Value) -> String {
    let created = o["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(crate::log::parse_k8s_time);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    created
        .map(|c| human_age(now - c))
        .unwrap_or_else(|| "<unknown>".into())
}

pub fn col(name: &str, ty: &str, priority: i32) -> Value {
    json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
        "description": name, "priority": priority})
}

/// `printNode`: the Ready condition only (Ready, NotReady, or Unknown when
/// there is none), whatever other conditions the Node carries.
pub fn node_status(o: &Value) -> String {
    let ready = o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let mut s = match ready {
        Some(c) if c["status"] == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o["spec"]["unschedulable"] == json!(true) {
        s.push_str(",SchedulingDisabled");
    }
    s
}

pub fn node_roles(o: &Value) -> String {
    let mut roles: Vec<&str> = o["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// The Name cell every table has.
pub fn name(o: &Value) -> Value {
    json!(o["metadata"]["name"].as_str().unwrap_or(""))
}

/// A kind's columns and each item's cells.
pub type Columns = (Vec<Value>, Vec<Vec<Value>>);

fn columns_and_cells(rt: &ResourceType, items: &[&Value]) -> Columns {
    match rt.kind {
        "Pod" => crate::pod_tables::pods(items),
        "ReplicaSet" => crate::pod_tables::replica_sets(items),
        "Node" => nodes(items),
        "Deployment" => deployments(items),
        "Namespace" => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            items
                .iter()
                .map(|o| vec![name(o), o["status"]["phase"].clone(), json!(age(o))])
                .collect(),
        ),
        "Service" => services(items),
        "ConfigMap" | "Secret" => data_counts(rt.kind == "Secret", items),
        "Event" => events(items),
        "HorizontalPodAutoscaler" => policy_tables::horizontal_pod_autoscalers(items),
        "PodDisruptionBudget" => policy_tables::pod_disruption_budgets(items),
        "NetworkPolicy" => policy_tables::network_policies(items),
        "ResourceQuota" => policy_tables::resource_quotas(items),
        "ServiceAccount" => access_tables::service_accounts(items),
        "RoleBinding" | "ClusterRoleBinding" => access_tables::role_bindings(items),
        "Lease" => access_tables::leases(items),
        // LimitRange, Role, ClusterRole: no printer, the default convertor.
        _ => policy_tables::created_at(items),
    }
}

fn nodes(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Status", "string", 0),
        col("Roles", "string", 0),
        col("Age", "string", 0),
        col("Version", "string", 0),
        col("Internal-IP", "string", 1),
        col("External-IP", "string", 1),
        col("OS-Image", "string", 1),
        col("Kernel-Version", "string", 1),
        col("Container-Runtime", "string", 1),
    ];
    let row = |o: &&Value| {
        let addr = |t: &str| {
            o["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == t))
                .and_then(|x| x["address"].as_str())
                .unwrap_or("<none>")
                .to_string()
        };
        let info = &o["status"]["nodeInfo"];
        let known = |k: &str| match info[k].as_str() {
            Some(v) if !v.is_empty() => json!(v),
            _ => json!("<unknown>"),
        };
        vec![
            name(o),
            json!(node_status(o)),
            json!(node_roles(o)),
            json!(age(o)),
            info["kubeletVersion"].clone(),
            json!(addr("InternalIP")),
            json!(addr("ExternalIP")),
            known("osImage"),
            known("kernelVersion"),
            known("containerRuntimeVersion"),
        ]
    };
    (cols, items.iter().map(row).collect())
}

fn deployments(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Ready", "string", 0),
        col("Up-to-date", "string", 0),
        col("Available", "string", 0),
        col("Age", "string", 0),
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ];
    let row = |o: &&Value| {
        let st = &o["status"];
        let n = |k: &str| st[k].as_i64().unwrap_or(0);
        let cs = o["spec"]["template"]["spec"]["containers"].as_array();
        let join = |f: &str| {
            cs.map(|c| {
                c.iter()
                    .filter_map(|x| x[f].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
        };
        let sel = o["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        vec![
            name(o),
            json!(format!(
                "{}/{}",
                n("readyReplicas"),
                o["spec"]["replicas"].as_i64().unwrap_or(0)
            )),
            json!(n("updatedReplicas")),
            json!(n("availableReplicas")),
            json!(age(o)),
            json!(join("name")),
            json!(join("image")),
            json!(sel),
        ]
    };
    (cols, items.iter().map(row).collect())
}

/// `printService`: the first cluster IP, the external IP by type
/// (`getServiceExternalIP`), `port[:nodePort]/protocol` (`makePortString`),
/// wide: the selector (`labels.FormatLabels`).
fn services(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Type", "string", 0),
        col("Cluster-IP", "string", 0),
        col("External-IP", "string", 0),
        col("Port(s)", "string", 0),
        col("Age", "string", 0),
        col("Selector", "string", 1),
    ];
    let row = |o: &&Value| {
        let spec = &o["spec"];
        let ports = spec["ports"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let proto = p["protocol"].as_str().unwrap_or("TCP");
                        match p["nodePort"].as_i64().filter(|n| *n > 0) {
                            Some(np) => format!("{}:{np}/{proto}", p["port"]),
                            None => format!("{}/{proto}", p["port"]),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "<none>".into());
        let cluster_ip = spec["clusterIPs"][0]
            .as_str()
            .or(spec["clusterIP"].as_str())
            .unwrap_or("<none>");
        vec![
            name(o),
            spec["type"].clone(),
            json!(cluster_ip),
            json!(service_external_ip(o)),
            json!(ports),
            json!(age(o)),
            json!(policy_tables::format_labels(&spec["selector"])),
        ]
    };
    (cols, items.iter().map(row).collect())
}

fn service_external_ip(o: &Value) -> String {
    let external: Vec<&str> = o["spec"]["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match o["spec"]["type"].as_str() {
        Some("ClusterIP" | "NodePort") if external.is_empty() => "<none>".into(),
        Some("ClusterIP" | "NodePort") => external.join(","),
        Some("LoadBalancer") => {
            let mut lb: Vec<&str> = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .collect();
            lb.sort_unstable();
            lb.dedup();
            lb.extend(external);
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb.join(",")
            }
        }
        Some("ExternalName") => o["spec"]["externalName"].as_str().unwrap_or("").into(),
        _ => "<unknown>".into(),
    }
}

/// ConfigMaps and Secrets: how many keys each holds (a Secret its type too).
fn data_counts(secret: bool, items: &[&Value]) -> Columns {
    let mut cols = vec![col("Name", "string", 0)];
    if secret {
        cols.push(col("Type", "string", 0));
    }
    cols.push(col("Data", "string", 0));
    cols.push(col("Age", "string", 0));
    let row = |o: &&Value| {
        let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
            + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
        let mut row = vec![name(o)];
        if secret {
            row.push(o["type"].clone());
        }
        row.push(json!(n));
        row.push(json!(age(o)));
        row
    };
    (cols, items.iter().map(row).collect())
}

/// pkg/printers/internalversion/printers.go (eventColumnDefinitions, printEvent,
/// formatEventSource): LAST SEEN TYPE REASON OBJECT MESSAGE, wide SUBOBJECT
/// and SOURCE before MESSAGE, FIRST SEEN COUNT NAME after it.
fn events(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Last Seen", "string", 0),
        col("Type", "string", 0),
        col("Reason", "string", 0),
        col("Object", "string", 0),
        col("Subobject", "string", 1),
        col("Source", "string", 1),
        col("Message", "string", 0),
        col("First Seen", "string", 1),
        col("Count", "string", 1),
        col("Name", "string", 1),
    ];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let since = |v: &Value| {
        v.as_str()
            .and_then(crate::log::parse_k8s_time)
            .map(|t| human_age(now - t))
    };
    let row = |o: &&Value| {
        let io = &o["involvedObject"];
        let kind = io["kind"].as_str().unwrap_or("").to_lowercase();
        let object = match io["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => format!("{kind}/{n}"),
            None => kind,
        };
        let pick = |a: &Value, b: &Value| {
            a.as_str()
                .filter(|s| !s.is_empty())
                .or(b.as_str())
                .unwrap_or("")
                .to_string()
        };
        let component = pick(&o["source"]["component"], &o["reportingComponent"]);
        let host = pick(&o["source"]["host"], &o["reportingInstance"]);
        let source = if host.is_empty() {
            component
        } else {
            format!("{component}, {host}")
        };
        let first = since(&o["firstTimestamp"])
            .or_else(|| since(&o["eventTime"]))
            .unwrap_or_else(|| "<unknown>".into());
        let last = since(&o["lastTimestamp"]).unwrap_or_else(|| first.clone());
        let count = o["count"].as_i64().filter(|c| *c != 0).unwrap_or(1);
        vec![
            json!(last),
            o["type"].clone(),
            o["reason"].clone(),
            json!(object),
            json!(io["fieldPath"].as_str().unwrap_or("")),
            json!(source),
            json!(o["message"].as_str().unwrap_or("").trim()),
            json!(first),
            json!(count),
            name(o),
        ]
    };
    (cols, items.iter().map(row).collect())
}

pub fn table(rt: &ResourceType, items: &[&Value], rv: u64, include: Option<&str>) -> Value {
    let (cols, cells) = columns_and_cells(rt, items);
    let rows: Vec<Value> = items
        .iter()
        .zip(cells)
        .map(|(o, cells)| {
            let object = match include {
                Some("None") => Value::Null,
                Some("Object") => (*o).clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            let mut row = json!({"cells": cells});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": cols, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(150), "2m30s");
        assert_eq!(human_age(900), "15m");
        assert_eq!(human_age(3 * 3600 + 60), "3h1m");
        assert_eq!(human_age(30 * 3600), "30h");
        assert_eq!(human_age(3 * 86400), "3d");
    }
}
