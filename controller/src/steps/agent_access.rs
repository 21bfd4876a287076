//! The health agent's access to the API on the node: its ServiceAccount
//! token and the cluster CA (0600, owned by the agent's user) and the
//! publishing configuration. The agent is restarted when any of them
//! changed. (The unit drop-in that lets the sandboxed agent reach the API
//! server's addresses is installed with the agent: [`dropin`].) It runs after the API
//! is up (the `agent-access` phase) with [`Desired::agent_access`] filled
//! from the token Secret; in the node phases it skips.

use std::time::Duration;

use serde::Serialize;

use super::file::{self, MetaFix};
use crate::artifacts::sha256_hex;
use crate::facts::{FileMeta, paths};
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;

pub struct AgentAccess;

pub use crate::step::AccessFiles;

/// The agent's second `/metrics` listener, on the node's pod-network
/// address, answering only the cluster's pod CIDRs (`[agent] metrics =
/// "pod-network"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetrics {
    pub listen: std::net::SocketAddrV4,
    pub peers: Vec<ipnet::Ipv4Net>,
}

impl PodMetrics {
    fn peers(&self) -> Vec<String> {
        self.peers.iter().map(ToString::to_string).collect()
    }
}

/// The publishing configuration for `node` against `server` (`https://…`),
/// pinned to the API server's keys `pins` (none: the CA alone is trusted).
pub fn publish_conf(server: &str, node: &str, pod: Option<&PodMetrics>, pins: &[String]) -> String {
    let mut conf = format!(
        "# Managed by pictl: where pictl-agent publishes this node's conditions.\n\
         server = {server}\nnode = {node}\ntoken_file = {}\nca_file = {}\n",
        paths::AGENT_TOKEN,
        paths::AGENT_CA
    );
    if !pins.is_empty() {
        conf.push_str(&format!(
            "# The API server's own key (read from the servers over SSH): the CA\n\
             # also signs every kubelet's certificate, so the chain alone is not enough.\n\
             api_spki_sha256 = {}\n",
            pins.join(",")
        ));
    }
    if let Some(pod) = pod {
        conf.push_str(&format!(
            "# /metrics for Pods on the pod network, answering only these peers.\n\
             metrics_listen = {}\nmetrics_peers = {}\n",
            pod.listen,
            pod.peers().join(",")
        ));
    }
    conf
}

/// The drop-in opening the agent's IP firewall to the API server's
/// addresses (and, with pod-network metrics, to the cluster's pod CIDRs).
pub fn dropin(addresses: &[String], peers: &[ipnet::Ipv4Net]) -> String {
    let mut allow = addresses.to_vec();
    let mut what = "the API server (and nothing else)";
    if !peers.is_empty() {
        allow.extend(peers.iter().map(ToString::to_string));
        what = "the API server, and Pods scrape its /metrics (nothing else)";
    }
    format!(
        "# Managed by pictl: the health agent reaches {what}.\n\
         [Service]\nIPAddressAllow={}\n",
        allow.join(" ")
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentAccessPlan {
    /// Files to (re)write, with what they were ("absent" or "other content").
    pub write: Vec<(&'static str, &'static str)>,
    pub fixes: Vec<MetaFix>,
    /// Restart the agent (anything it reads at start changed).
    pub restart: bool,
}

impl Plan for AgentAccessPlan {
    fn changes(&self) -> Vec<Change> {
        let mut out: Vec<Change> = self
            .write
            .iter()
            .map(|(path, before)| Change::new(*path, *before, "pictl's"))
            .collect();
        out.extend(self.fixes.iter().flat_map(MetaFix::changes));
        if self.restart {
            out.push(Change::new("pictl-agent.service", "running", "restarted"));
        }
        out
    }
}

/// Each file with its content and wanted metadata.
fn files(a: &AccessFiles, ids: (u32, u32)) -> [(&'static str, &[u8], FileMeta); 3] {
    let agent = FileMeta {
        mode: 0o600,
        uid: ids.0,
        gid: ids.1,
    };
    [
        (paths::AGENT_TOKEN, a.token.expose().as_bytes(), agent),
        (paths::AGENT_CA, a.ca_pem.as_bytes(), agent),
        (paths::AGENT_PUBLISH, a.publish_conf.as_bytes(), file::UNIT),
    ]
}

/// `$1` uid:gid of the agent, `$2` restart yes|no.
const SCRIPT: &str = r#"set -eu
chown -- "$1" /etc/pictl-agent/token /etc/pictl-agent/ca.crt
[ "$2" = yes ] && systemctl restart pictl-agent.service
true
"#;

impl Step for AgentAccess {
    const ID: StepId = StepId::AgentAccess;
    type Plan = AgentAccessPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<AgentAccessPlan> {
        if !matches!(cx.desired.agent, Some(Ok(_))) {
            return Check::Skip("no health agent on this node".into());
        }
        let Some(access) = &cx.desired.agent_access else {
            return Check::Skip("the API is not up yet".into());
        };
        let Some(ids) = cx.facts.agent_ids else {
            return Check::Blocked(
                "the pictl-agent user does not exist (the health-agent step creates it)".into(),
            );
        };
        let mut write = Vec::new();
        let mut fixes = Vec::new();
        for (path, bytes, want) in files(access, ids) {
            match cx.facts.file_sha(path) {
                Some(sha) if sha == sha256_hex(bytes) => {
                    fixes.extend(MetaFix::check(cx.facts, path, want))
                }
                Some(_) => write.push((path, "other content")),
                None => write.push((path, "absent")),
            }
        }
        if write.is_empty() && fixes.is_empty() {
            return Check::Converged;
        }
        Check::Change(AgentAccessPlan {
            restart: !write.is_empty(),
            write,
            fixes,
        })
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &AgentAccessPlan,
    ) -> Result<Applied, StepError> {
        let (Some(access), Some(ids)) = (&cx.desired.agent_access, cx.facts.agent_ids) else {
            return Ok(Applied::Done);
        };
        let (t, sudo) = (io.transport, cx.node.ssh.sudo);
        if !plan.write.is_empty() {
            let mkdir = RemoteCommand::new("install")
                .args(["-d", "-m", "0755", "/etc/pictl-agent"])
                .sudo(sudo);
            StepError::check_output("creating /etc/pictl-agent", t.exec(&mkdir).await?)?;
        }
        for (path, bytes, want) in files(access, ids) {
            if plan.write.iter().any(|(p, _)| *p == path) {
                // Written root-owned (0600 for the secrets), then handed to the agent's user.
                t.put_file(bytes, path, want.mode, sudo).await?;
            }
        }
        for fix in &plan.fixes {
            fix.apply(t, sudo).await?;
        }
        let yes = |b: bool| if b { "yes" } else { "no" };
        let cmd = RemoteCommand::script(SCRIPT)
            .args([format!("{}:{}", ids.0, ids.1), yes(plan.restart).into()])
            .sudo(sudo)
            .timeout(Duration::from_secs(60));
        StepError::check_output("handing the token to pictl-agent", t.exec(&cmd).await?)?;
        Ok(Applied::Done)
    }
}
