//! Removing what pictl put on a node (`pictl reset`): K3s, the way K3s's
//! own killall and uninstall scripts do (pictl's scripts, uploaded first so
//! a node set up by install.sh is reset the same way), then the health
//! agent and pictl's records. Nothing the user owns is reverted: the Pi's
//! cmdline.txt stays, and so does `/etc/rancher/node` (as K3s keeps it).
//! Not one of the converging steps: only the reset phase runs it.

use serde::Serialize;

use super::file;
use super::k3s_tools::{KILLALL, UNINSTALL};
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;

pub struct K3sReset;

/// What is on the node to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResetPlan {
    /// K3s (binary, unit or a running service) is there.
    pub k3s: bool,
    /// pictl's health agent is there.
    pub agent: bool,
}

impl Plan for ResetPlan {
    fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        if self.k3s {
            out.push(Change::new(
                "K3s",
                "installed",
                "removed (units, binary, links, /etc/rancher/k3s, /var/lib/rancher, /var/lib/kubelet, mounts, CNI interfaces and rules)",
            ));
        }
        if self.agent {
            out.push(Change::new("pictl-agent", "installed", "removed"));
        }
        out
    }
}

/// The uninstall script's temporary name while it runs (it deletes the
/// uninstall scripts install.sh and pictl leave).
const RUN_AS: &str = "/usr/local/bin/.pictl-reset-uninstall.sh";

/// `$1`: yes when K3s is to be removed. Then the health agent and records.
const SCRIPT: &str = r#"set -u
if [ "$1" = yes ]; then
  sh /usr/local/bin/.pictl-reset-uninstall.sh >/dev/null || exit 1
fi
rm -f /usr/local/bin/.pictl-reset-uninstall.sh
systemctl disable --now pictl-agent.service >/dev/null 2>&1 || true
rm -f /etc/systemd/system/pictl-agent.service /usr/local/bin/pictl-agent
# Its API access: the token, CA, publishing config and firewall drop-in.
rm -rf /etc/pictl-agent /etc/systemd/system/pictl-agent.service.d
systemctl daemon-reload
id -u pictl-agent >/dev/null 2>&1 && userdel pictl-agent >/dev/null 2>&1
rm -rf /var/lib/pictl
exit 0
"#;

impl Step for K3sReset {
    const ID: StepId = StepId::K3sReset;
    type Plan = ResetPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<ResetPlan> {
        let f = cx.facts;
        let unit_present = [paths::SERVER_UNIT, paths::AGENT_UNIT]
            .iter()
            .any(|p| f.file_sha(p).is_some());
        let running = ["k3s.service", "k3s-agent.service"]
            .iter()
            .any(|u| f.unit(u).active);
        let plan = ResetPlan {
            k3s: f.file_sha(paths::K3S_BIN).is_some()
                || unit_present
                || running
                || f.foreign.is_some(),
            agent: f.file_sha(paths::HEALTH_AGENT_BIN).is_some()
                || f.file_sha(paths::HEALTH_AGENT_UNIT).is_some()
                || f.file_sha(paths::AGENT_TOKEN).is_some(),
        };
        if plan.k3s || plan.agent {
            Check::Change(plan)
        } else {
            Check::Converged
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &ResetPlan,
    ) -> Result<Applied, StepError> {
        let (t, sudo) = (io.transport, cx.node.ssh.sudo);
        if plan.k3s {
            t.put_file(KILLALL.as_bytes(), paths::KILLALL, file::BINARY.mode, sudo)
                .await?;
            t.put_file(UNINSTALL.as_bytes(), RUN_AS, file::BINARY.mode, sudo)
                .await?;
        }
        let cmd = RemoteCommand::script(SCRIPT)
            .arg(if plan.k3s { "yes" } else { "no" })
            .sudo(sudo)
            .timeout(io.wait.max(std::time::Duration::from_secs(120)));
        StepError::check_output("removing K3s", t.exec(&cmd).await?)?;
        Ok(Applied::Done)
    }
}
