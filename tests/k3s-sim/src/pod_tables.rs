//! The Table columns kubectl shows for Pods (NAME READY STATUS RESTARTS AGE,
//! wide: IP NODE NOMINATED NODE READINESS GATES) and ReplicaSets (NAME
//! DESIRED CURRENT READY AGE, wide: CONTAINERS IMAGES SELECTOR), as the
//! apiserver's printers make them (kubernetes
//! pkg/printers/internalversion/printers.go, `printPod`, `printReplicaSet`).

use crate::tables::{age, col};
use serde_json::{Value, json};

fn name(o: &Value) -> Value {
    json!(o["metadata"]["name"].as_str().unwrap_or(""))
}

fn containers(o: &Value, field: &str) -> String {
    o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|x| x[field].as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub fn pods(items: &[&Value]) -> (Vec<Value>, Vec<Vec<Value>>) {
    let cols = vec![
        col("Name", "string", 0),
        col("Ready", "string", 0),
        col("Status", "string", 0),
        col("Restarts", "string", 0),
        col("Age", "string", 0),
        col("IP", "string", 1),
        col("Node", "string", 1),
        col("Nominated Node", "string", 1),
        col("Readiness Gates", "string", 1),
    ];
    let rows = items
        .iter()
        .map(|o| {
            let statuses = o["status"]["containerStatuses"].as_array();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| {
                s.iter().filter(|c| c["ready"] == json!(true)).count()
            });
            // printPod: a Pod with a deletionTimestamp is Terminating
            // (Unknown when the node lifecycle controller marked it NodeLost).
            let status = match o["status"]["reason"].as_str() {
                _ if o["metadata"]["deletionTimestamp"].is_null() => o["status"]["reason"]
                    .as_str()
                    .or(o["status"]["phase"].as_str())
                    .unwrap_or("Unknown"),
                Some("NodeLost") => "Unknown",
                _ => "Terminating",
            };
            let none = |v: &Value| v.as_str().map_or_else(|| json!("<none>"), |s| json!(s));
            vec![
                name(o),
                json!(format!("{ready}/{total}")),
                json!(status),
                json!("0"),
                json!(age(o)),
                none(&o["status"]["podIP"]),
                none(&o["spec"]["nodeName"]),
                none(&o["status"]["nominatedNodeName"]),
                json!("<none>"),
            ]
        })
        .collect();
    (cols, rows)
}

pub fn replica_sets(items: &[&Value]) -> (Vec<Value>, Vec<Vec<Value>>) {
    let cols = vec![
        col("Name", "string", 0),
        col("Desired", "integer", 0),
        col("Current", "integer", 0),
        col("Ready", "integer", 0),
        col("Age", "string", 0),
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ];
    let rows = items
        .iter()
        .map(|o| {
            let n = |v: &Value| json!(v.as_i64().unwrap_or(0));
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
                n(&o["spec"]["replicas"]),
                n(&o["status"]["replicas"]),
                n(&o["status"]["readyReplicas"]),
                json!(age(o)),
                json!(containers(o, "name")),
                json!(containers(o, "image")),
                json!(sel),
            ]
        })
        .collect();
    (cols, rows)
}
