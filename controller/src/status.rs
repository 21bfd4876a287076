//! `pictl status`: every node's state in one table, from the same one-round-
//! trip facts `plan` uses, each node's Ready condition in the API, and what
//! its health agent reports (temperature, throttling, memory, disk, clock).
//! Read-only.

use crate::cluster::{NodeList, nodes};
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;

use std::time::Duration;

use pictl_agent::report::{Health, Memory, NodeReport};

use crate::facts::paths;
use crate::inventory::{Inventory, Node};
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
    /// The K3s leaf certificate that ends first, when K3s has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertStatus>,
}

/// The K3s leaf certificate that ends first on a node.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    pub file: String,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// Whole days left by the node's clock.
    pub days_left: i64,
    /// Inside K3s's renewal window: `pictl apply` restarts K3s to renew it.
    pub renew: bool,
    /// `client-admin.crt ends 2027-01-10 (34 days left)`.
    pub summary: String,
}

impl CertStatus {
    fn of(f: &crate::facts::Facts) -> Option<CertStatus> {
        let c = f.first_certificate_end()?;
        Some(CertStatus {
            file: c.file.clone(),
            not_after: c.not_after,
            days_left: c.days_left(f.node_now),
            renew: c.in_window(f.node_now),
            summary: c.describe(f.node_now),
        })
    }
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
    parse_report(&out.stdout)
}

/// A report as the node printed it; `None` when it is not one (numbers out
/// of their type's range included: serde refuses them, nothing wraps).
fn parse_report(json: &[u8]) -> Option<NodeReport> {
    serde_json::from_slice(json).ok()
}

/// `12%`; the node's numbers are untrusted, so anything outside 0–100
/// (or not a number) is clamped or shown as `-`.
fn percent(p: Option<f64>) -> String {
    match p {
        Some(p) if p.is_finite() => format!("{:.0}%", p.clamp(0.0, 100.0)),
        _ => "-".to_string(),
    }
}

/// Memory in use, percent; `None` without a total.
fn memory_used_percent(m: &Memory) -> Option<f64> {
    let used = m.total_bytes.saturating_sub(m.available_bytes);
    (m.total_bytes > 0).then(|| used as f64 * 100.0 / m.total_bytes as f64)
}

/// `52C`, or `-` when the node sent no usable temperature.
fn temperature(t: Option<f64>) -> String {
    t.filter(|t| t.is_finite())
        .map_or_else(|| "-".to_string(), |t| format!("{t:.0}C"))
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
            node_status(node, connector.as_ref()).await
        }
    }))
    .await;
    let ready = ready_in_api(inv).await;
    for r in &mut rows {
        r.ready = ready.get(&r.name).cloned();
    }
    rows
}

/// One node's row, from one SSH login: its facts and its agent's report.
async fn node_status(node: &Node, connector: &dyn Connector) -> NodeStatus {
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
        certificates: None,
    };
    let t = match connector.connect(node).await {
        Ok(t) => t,
        Err(e) => {
            row.error = Some(crate::error_chain(&e));
            return row;
        }
    };
    let f = match runner::gather(t.as_ref(), node).await {
        Ok(f) => f,
        Err(e) => {
            row.reachable = !e.is_unreachable();
            row.error = Some(crate::error_chain(&e));
            return row;
        }
    };
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
    row.memory_cgroup = Some(f.memory_cgroup());
    row.clock_skew_seconds = Some(f.clock_skew);
    row.certificates = CertStatus::of(&f);
    if f.file_sha(paths::HEALTH_AGENT_BIN).is_some() {
        row.agent = agent_report(t.as_ref()).await;
    }
    row
}

/// Each Node's Ready condition in the API (empty when the API does not
/// answer within 10 s: the table then shows `-`).
async fn ready_in_api(inv: &Inventory) -> BTreeMap<String, String> {
    let Ok(client) = runner::kube_client(&state::kubeconfig_path(inv)).await else {
        return BTreeMap::new();
    };
    let list = NodeList::read(&client);
    let Ok(Ok(list)) = tokio::time::timeout(std::time::Duration::from_secs(10), list).await else {
        return BTreeMap::new();
    };
    list.nodes
        .iter()
        .filter_map(|(name, n)| Some((name.clone(), nodes::ready_status(n)?.to_string())))
        .collect()
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
        "DISK", "SKEW", "CERTS", "MODEL/OS",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let dash = || "-".to_string();
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
            temperature(a.and_then(|a| a.soc_temperature_celsius)),
            percent(a.and_then(|a| memory_used_percent(a.memory.as_ref()?))),
            percent(a.and_then(|a| Some(a.root_fs.as_ref()?.used_percent()))),
            r.clock_skew_seconds.map_or_else(dash, |s| format!("{s}s")),
            r.certificates
                .as_ref()
                .map_or_else(dash, |c| format!("{}d", c.days_left)),
            a.and_then(|a| a.model.clone())
                .or_else(|| r.pi_model.clone())
                .or_else(|| r.os.clone())
                .unwrap_or_else(dash),
        ]);
    }
    // Cells come from the nodes: no control character reaches the terminal.
    for cell in lines.iter_mut().flatten() {
        *cell = crate::escape_controls(cell).into_owned();
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
    out.push_str(&notes(rows));
    out
}

/// The lines under the table: errors, and what needs someone.
fn notes(rows: &[NodeStatus]) -> String {
    let mut out = String::new();
    for r in rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("{}: {}\n", r.name, crate::escape_controls(e)));
        }
        if r.memory_cgroup == Some(false) {
            out.push_str(&format!(
                "{}: the memory cgroup controller is off (K3s needs it)\n",
                r.name
            ));
        }
        if let Some(c) = r.certificates.as_ref().filter(|c| c.renew) {
            out.push_str(&format!(
                "{}: {}: inside K3s's {}-day renewal window; `pictl apply` renews it (a restart of K3s)\n",
                r.name,
                crate::escape_controls(&c.summary),
                crate::facts::certs::RENEW_DAYS
            ));
        }
        for p in r.agent.iter().flat_map(|a| a.problems.iter()) {
            out.push_str(&format!("{}: {}\n", r.name, crate::escape_controls(p)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use pictl_agent::report::Filesystem;
    use proptest::prelude::*;

    use super::*;

    fn row(agent: NodeReport, skew: i64) -> NodeStatus {
        NodeStatus {
            name: "n1".into(),
            role: "server",
            address: "10.0.0.1".into(),
            reachable: true,
            error: None,
            arch: Some("arm64".into()),
            os: None,
            pi_model: None,
            k3s_version: Some("v1.32.5+k3s1".into()),
            service: Some("active".into()),
            memory_cgroup: Some(true),
            clock_skew_seconds: Some(skew),
            ready: Some("True".into()),
            agent: Some(agent),
            certificates: None,
        }
    }

    fn report(temp: f64, mem: (u64, u64), disk: (u64, u64)) -> NodeReport {
        NodeReport {
            soc_temperature_celsius: Some(temp),
            memory: Some(Memory {
                total_bytes: mem.0,
                available_bytes: mem.1,
            }),
            root_fs: Some(Filesystem {
                mount_point: "/".into(),
                total_bytes: disk.0,
                available_bytes: disk.1,
            }),
            ..NodeReport::default()
        }
    }

    /// The TEMP, MEM, DISK and SKEW cells of the table's one row.
    fn cells(r: &NodeStatus) -> Vec<String> {
        let t = table(std::slice::from_ref(r));
        let line = t.lines().nth(1).expect("a row");
        line.split_whitespace()
            .skip(8)
            .take(4)
            .map(String::from)
            .collect()
    }

    #[test]
    fn extreme_agent_numbers_are_clamped_or_dashed_never_a_panic() {
        let max = u64::MAX;
        for (temp, mem, disk, skew, expected) in [
            (
                51.4,
                (4 << 30, 1 << 30),
                (100, 25),
                2,
                ["51C", "75%", "75%", "2s"],
            ),
            (f64::NAN, (0, 0), (0, 0), 0, ["-", "-", "0%", "0s"]),
            (
                f64::INFINITY,
                (max, max),
                (max, max),
                i64::MAX,
                ["-", "0%", "0%", "9223372036854775807s"],
            ),
            (
                f64::NEG_INFINITY,
                (max, 0),
                (max, 0),
                i64::MIN,
                ["-", "100%", "100%", "-9223372036854775808s"],
            ),
            // More available than in total: nothing in use, not a negative percent.
            (-40.0, (1, max), (1, max), -1, ["-40C", "0%", "0%", "-1s"]),
        ] {
            let r = row(report(temp, mem, disk), skew);
            assert_eq!(cells(&r), expected, "{temp} {mem:?} {disk:?} {skew}");
            serde_json::to_string_pretty(&[r]).expect("JSON, NaN as null");
        }
    }

    fn arch_row(arch: Option<&str>, agent_arch: Option<&str>) -> NodeStatus {
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
            certificates: None,
        }
    }

    #[test]
    fn certificates_show_their_days_and_a_line_inside_the_window() {
        let mut r = row(NodeReport::default(), 0);
        assert!(table(std::slice::from_ref(&r)).contains("CERTS"));
        r.certificates = Some(CertStatus {
            file: "/var/lib/rancher/k3s/server/tls/client-admin.crt".into(),
            not_after: 0,
            days_left: 34,
            renew: true,
            summary: "client-admin.crt ends 2027-01-10 (34 days left)".into(),
        });
        let t = table(std::slice::from_ref(&r));
        let row_line = t.lines().nth(1).expect("row");
        assert!(row_line.split_whitespace().any(|c| c == "34d"), "{t}");
        assert!(
            t.contains("n1: client-admin.crt ends 2027-01-10 (34 days left): inside K3s's 120-day renewal window; `pictl apply` renews it"),
            "{t}"
        );
        r.certificates.as_mut().expect("certs").renew = false;
        assert!(!table(std::slice::from_ref(&r)).contains("renewal window"));
    }

    #[test]
    fn reports_with_numbers_out_of_range_are_not_read() {
        let max = u64::MAX;
        let read = parse_report(
            format!(r#"{{"memory":{{"total_bytes":{max},"available_bytes":{max}}},"collected_at":{max},"soc_temperature_celsius":1.7976931348623157e308}}"#)
                .as_bytes(),
        )
        .expect("the edges of each type are read");
        assert_eq!(read.memory.map(|m| m.total_bytes), Some(max));
        for junk in [
            r#"{"memory":{"total_bytes":18446744073709551616}}"#,
            r#"{"memory":{"total_bytes":-1}}"#,
            r#"{"soc_temperature_celsius":1e400}"#,
            r#"{"soc_temperature_celsius":NaN}"#,
            r#"{"throttling":{"raw":4294967296}}"#,
            r#"{"uptime_seconds":1.5}"#,
        ] {
            assert_eq!(parse_report(junk.as_bytes()), None, "{junk}");
        }
    }

    proptest! {
        #[test]
        fn any_agent_numbers_render_without_panicking(
            temp in proptest::num::f64::ANY,
            mem in (any::<u64>(), any::<u64>()),
            disk in (any::<u64>(), any::<u64>()),
            skew in any::<i64>(),
        ) {
            let r = row(report(temp, mem, disk), skew);
            let c = cells(&r);
            for p in &c[1..3] {
                let n = p.strip_suffix('%').map(|n| n.parse::<u8>());
                prop_assert!(p == "-" || matches!(n, Some(Ok(0..=100))), "{p}");
            }
            prop_assert!(serde_json::to_string(&[r]).is_ok());
        }
    }

    #[test]
    fn arch_column_is_the_nodes_and_shows_an_agent_that_disagrees() {
        assert_eq!(arch_cell(&arch_row(Some("arm64"), Some("arm64"))), "arm64");
        assert_eq!(arch_cell(&arch_row(Some("arm64"), None)), "arm64");
        assert_eq!(arch_cell(&arch_row(Some("arm64"), Some(""))), "arm64");
        assert_eq!(
            arch_cell(&arch_row(Some("arm64"), Some("amd64"))),
            "arm64 (agent: amd64)"
        );
        assert_eq!(arch_cell(&arch_row(None, Some("armhf"))), "armhf");
        assert_eq!(arch_cell(&arch_row(None, None)), "-");
    }
}
