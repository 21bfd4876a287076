//! `pictl status`: every node's state in one table, from the same one-round-
//! trip facts `plan` uses plus each node's Ready condition in the API.
//! Read-only. (The health agent will add temperature, throttling and disk.)

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::inventory::Inventory;
use crate::render;
use crate::runner::{self, Connector};
use crate::state;

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: &'static str,
    pub address: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub arch: Option<String>,
    pub os: Option<String>,
    pub pi_model: Option<String>,
    pub k3s_version: Option<String>,
    pub service: Option<String>,
    pub memory_cgroup: Option<bool>,
    pub clock_skew_seconds: Option<i64>,
    /// The node's Ready condition in the API (`True`, `False`, `Unknown`), if known.
    pub ready: Option<String>,
}

impl NodeStatus {
    pub fn healthy(&self) -> bool {
        self.reachable
            && self.service.as_deref() == Some("active")
            && self.ready.as_deref() == Some("True")
    }
}

pub async fn collect(
    inv: &Inventory,
    connector: Arc<dyn Connector>,
    concurrency: usize,
) -> Vec<NodeStatus> {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut rows = futures::future::join_all(inv.nodes.iter().map(|node| {
        let sem = sem.clone();
        let connector = connector.clone();
        async move {
            let _permit = sem.acquire().await;
            let mut row = NodeStatus {
                name: node.name.clone(),
                role: node.role.as_str(),
                address: node.address.clone(),
                reachable: false,
                error: None,
                arch: None,
                os: None,
                pi_model: None,
                k3s_version: None,
                service: None,
                memory_cgroup: None,
                clock_skew_seconds: None,
                ready: None,
            };
            let t = match connector.connect(node).await {
                Ok(t) => t,
                Err(e) => {
                    row.error = Some(runner::error_chain(&e));
                    return row;
                }
            };
            match runner::gather(t.as_ref(), node).await {
                Ok(f) => {
                    row.reachable = true;
                    row.arch = Some(
                        f.arch
                            .as_ref()
                            .map_or_else(|e| e.clone(), |a| a.to_string()),
                    );
                    row.os = Some(f.os.clone());
                    row.pi_model = f.pi_model.clone();
                    row.k3s_version = f.k3s_version.clone();
                    let unit = f.unit(render::unit_name(node.role));
                    row.service = Some(if unit.active_state.is_empty() {
                        "absent".into()
                    } else {
                        unit.active_state
                    });
                    row.memory_cgroup = Some(f.memory_cgroup);
                    row.clock_skew_seconds = Some(f.clock_skew);
                }
                Err(e) => {
                    row.reachable = !e.is_unreachable();
                    row.error = Some(runner::error_chain(&e));
                }
            }
            row
        }
    }))
    .await;

    if let Ok(client) = runner::kube_client(&state::kubeconfig_path(inv)).await {
        use k8s_openapi::api::core::v1::Node;
        let api: kube::Api<Node> = kube::Api::all(client);
        if let Ok(list) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            api.list(&Default::default()),
        )
        .await
        {
            let ready: BTreeMap<String, String> = list
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| {
                    let cond = n
                        .status?
                        .conditions?
                        .into_iter()
                        .find(|c| c.type_ == "Ready")?;
                    Some((n.metadata.name?, cond.status))
                })
                .collect();
            for r in &mut rows {
                r.ready = ready.get(&r.name).cloned();
            }
        }
    }
    rows
}

pub fn table(rows: &[NodeStatus]) -> String {
    let header = [
        "NODE", "ROLE", "ADDRESS", "ARCH", "K3S", "SERVICE", "READY", "MEMCG", "SKEW", "MODEL/OS",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let dash = || "-".to_string();
    for r in rows {
        lines.push(vec![
            r.name.clone(),
            r.role.to_string(),
            r.address.clone(),
            r.arch.clone().unwrap_or_else(dash),
            r.k3s_version.clone().unwrap_or_else(dash),
            if r.reachable {
                r.service.clone().unwrap_or_else(dash)
            } else {
                "UNREACHABLE".into()
            },
            r.ready.clone().unwrap_or_else(dash),
            r.memory_cgroup
                .map_or_else(dash, |m| if m { "on".into() } else { "OFF".into() }),
            r.clock_skew_seconds.map_or_else(dash, |s| format!("{s}s")),
            r.pi_model
                .clone()
                .or_else(|| r.os.clone())
                .unwrap_or_else(dash),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for r in rows.iter().filter(|r| r.error.is_some()) {
        out.push_str(&format!(
            "{}: {}\n",
            r.name,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    out
}
