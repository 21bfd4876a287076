//! `pictl status`: every node's state in one table, from the same one-round-
//! trip facts `plan` uses, each node's Ready condition in the API, and what
//! its health agent reports (temperature, throttling, memory, disk, clock).
//! Read-only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;

use std::time::Duration;

use pictl_agent::report::{Health, NodeReport};

use crate::facts::paths;
use crate::inventory::Inventory;
use crate::render;
use crate::runner::{self, Connector};
use crate::state;
use crate::transport::{RemoteCommand, Transport};

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
    /// What the node's health agent says (`pictl-agent report`), if installed.
    pub agent: Option<pictl_agent::report::NodeReport>,
}

impl NodeStatus {
    /// Reachable, K3s active, Ready in the API, and not failing by its agent.
    pub fn healthy(&self) -> bool {
        self.reachable
            && self.service.as_deref() == Some("active")
            && self.ready.as_deref() == Some("True")
            && self
                .agent
                .as_ref()
                .is_none_or(|a| a.health != Health::Failing)
    }
}

/// One `pictl-agent report` on the node (a second round trip, status only).
async fn agent_report(t: &dyn Transport) -> Option<NodeReport> {
    let cmd = RemoteCommand::new(paths::HEALTH_AGENT_BIN)
        .arg("report")
        .timeout(Duration::from_secs(15));
    let out = t.exec(&cmd).await.ok().filter(|o| o.success())?;
    serde_json::from_slice(&out.stdout).ok()
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
                agent: None,
            };
            let t = match connector.connect(node).await {
                Ok(t) => t,
                Err(e) => {
                    row.error = Some(crate::error_chain(&e));
                    return row;
                }
            };
            match runner::gather(t.as_ref(), node, None).await {
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
                    if f.file_sha(paths::HEALTH_AGENT_BIN).is_some() {
                        row.agent = agent_report(t.as_ref()).await;
                    }
                }
                Err(e) => {
                    row.reachable = !e.is_unreachable();
                    row.error = Some(crate::error_chain(&e));
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

/// The node's arch as its `uname -m` says (facts), else as its agent says;
/// an agent reporting another arch than the node is shown, not hidden.
fn arch_cell(r: &NodeStatus) -> String {
    let agent = r
        .agent
        .as_ref()
        .map(|a| a.arch.as_str())
        .filter(|a| !a.is_empty());
    match (r.arch.as_deref(), agent) {
        (Some(node), Some(agent)) if node != agent => format!("{node} (agent: {agent})"),
        (Some(node), _) => node.to_string(),
        (None, Some(agent)) => agent.to_string(),
        (None, None) => "-".to_string(),
    }
}

pub fn table(rows: &[NodeStatus]) -> String {
    let header = [
        "NODE", "ROLE", "ADDRESS", "ARCH", "K3S", "SERVICE", "READY", "HEALTH", "TEMP", "MEM",
        "DISK", "SKEW", "MODEL/OS",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let dash = || "-".to_string();
    let pct = |used: f64| format!("{used:.0}%");
    for r in rows {
        let a = r.agent.as_ref();
        lines.push(vec![
            r.name.clone(),
            r.role.to_string(),
            r.address.clone(),
            arch_cell(r),
            r.k3s_version.clone().unwrap_or_else(dash),
            if r.reachable {
                r.service.clone().unwrap_or_else(dash)
            } else {
                "UNREACHABLE".into()
            },
            r.ready.clone().unwrap_or_else(dash),
            a.map_or_else(dash, |a| a.health.as_str().to_string()),
            a.and_then(|a| a.soc_temperature_celsius)
                .map_or_else(dash, |t| format!("{t:.0}C")),
            a.and_then(|a| a.memory.as_ref())
                .filter(|m| m.total_bytes > 0)
                .map_or_else(dash, |m| {
                    pct(100.0 - m.available_bytes as f64 * 100.0 / m.total_bytes as f64)
                }),
            a.and_then(|a| a.root_fs.as_ref())
                .map_or_else(dash, |f| pct(f.used_percent())),
            r.clock_skew_seconds.map_or_else(dash, |s| format!("{s}s")),
            a.and_then(|a| a.model.clone())
                .or_else(|| r.pi_model.clone())
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
    for r in rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("{}: {e}\n", r.name));
        }
        if r.memory_cgroup == Some(false) {
            out.push_str(&format!(
                "{}: the memory cgroup controller is off (K3s needs it)\n",
                r.name
            ));
        }
        for p in r.agent.iter().flat_map(|a| a.problems.iter()) {
            out.push_str(&format!("{}: {p}\n", r.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arch: Option<&str>, agent_arch: Option<&str>) -> NodeStatus {
        NodeStatus {
            name: "node3".into(),
            role: "agent",
            address: "10.0.0.3".into(),
            reachable: true,
            error: None,
            arch: arch.map(String::from),
            os: None,
            pi_model: None,
            k3s_version: None,
            service: None,
            memory_cgroup: None,
            clock_skew_seconds: None,
            ready: None,
            agent: agent_arch.map(|a| NodeReport {
                arch: a.into(),
                ..NodeReport::default()
            }),
        }
    }

    #[test]
    fn arch_column_is_the_nodes_and_shows_an_agent_that_disagrees() {
        assert_eq!(arch_cell(&row(Some("arm64"), Some("arm64"))), "arm64");
        assert_eq!(arch_cell(&row(Some("arm64"), None)), "arm64");
        assert_eq!(arch_cell(&row(Some("arm64"), Some(""))), "arm64");
        assert_eq!(
            arch_cell(&row(Some("arm64"), Some("amd64"))),
            "arm64 (agent: amd64)"
        );
        assert_eq!(arch_cell(&row(None, Some("armhf"))), "armhf");
        assert_eq!(arch_cell(&row(None, None)), "-");
    }
}
