//! Removing what pictl put on a node (`pictl reset`): K3s, the way K3s's
//! own killall and uninstall scripts do (pictl's scripts, uploaded first so
//! a node set up by install.sh is reset the same way), then the health
//! agent and pictl's records. K3s's data dir is the one the node runs
//! with ([`crate::data_dir::on_node`]), and one that is not K3s's alone
//! (`/`, `/var`, …) blocks the reset. Nothing the user owns is reverted: the Pi's
//! cmdline.txt stays, and so does `/etc/rancher/node` (as K3s keeps it).
//! Not one of the converging steps: only the reset phase runs it.

use serde::Serialize;

use super::file;
use super::k3s_tools::{KILLALL, UNINSTALL, with_data_dir};
use crate::data_dir;
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;

pub struct K3sReset;

/// What is on the node to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResetPlan {
    /// K3s (binary, unit or a running service) is there.
    pub k3s: bool,
    /// K3s's data dir on the node, removed with it.
    pub data_dir: String,
    /// pictl's health agent is there.
    pub agent: bool,
}

impl Plan for ResetPlan {
    fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        if self.k3s {
            let data = if self.data_dir == data_dir::DEFAULT {
                "/var/lib/rancher".to_string()
            } else {
                format!("{}, /var/lib/rancher", self.data_dir)
            };
            out.push(Change::new(
                "K3s",
                "installed",
                format!(
                    "removed (units, binary, links, /etc/rancher/k3s, {data}, /var/lib/kubelet, mounts, CNI interfaces and rules)"
                ),
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

/// `$1`: yes when K3s is to be removed, `$2` its data dir. Then the
/// health agent and records.
const SCRIPT: &str = concat!(
    r#"set -u
if [ "$1" = yes ]; then
  K3S_DATA_DIR=$2 sh /usr/local/bin/.pictl-reset-uninstall.sh >/dev/null || exit 1
fi
rm -f /usr/local/bin/.pictl-reset-uninstall.sh
"#,
    super::health_agent::remove_agent!(),
    r#"rm -rf /var/lib/pictl
exit 0
"#
);

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
            data_dir: data_dir::on_node(f),
            agent: f.file_sha(paths::HEALTH_AGENT_BIN).is_some()
                || f.file_sha(paths::HEALTH_AGENT_UNIT).is_some()
                || f.file_sha(paths::AGENT_TOKEN).is_some(),
        };
        if plan.k3s
            && let Err(why) = data_dir::removable(&plan.data_dir)
        {
            return Check::Blocked(why);
        }
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
            let killall = with_data_dir(KILLALL, &plan.data_dir);
            t.put_file(killall.as_bytes(), paths::KILLALL, file::BINARY.mode, sudo)
                .await?;
            let uninstall = with_data_dir(UNINSTALL, &plan.data_dir);
            t.put_file(uninstall.as_bytes(), RUN_AS, file::BINARY.mode, sudo)
                .await?;
        }
        let cmd = RemoteCommand::script(SCRIPT)
            .arg(if plan.k3s { "yes" } else { "no" })
            .arg(plan.data_dir.as_str())
            .sudo(sudo)
            .timeout(io.wait.max(std::time::Duration::from_secs(120)));
        StepError::check_output("removing K3s", t.exec(&cmd).await?)?;
        Ok(Applied::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tests::{check_one, converged, desired, inventory};

    #[test]
    fn reset_removes_the_data_dir_the_node_runs_with() {
        let inv = inventory();
        let d = desired(&inv);
        let mut f = converged(&d);
        let Check::Change(plan) = check_one(&K3sReset, &inv, &d, &f) else {
            panic!("expected a reset")
        };
        assert_eq!(plan.data_dir, data_dir::DEFAULT);
        f.data_dir_config = Some("/srv/k3s".into());
        let Check::Change(plan) = check_one(&K3sReset, &inv, &d, &f) else {
            panic!("expected a reset")
        };
        assert_eq!(plan.data_dir, "/srv/k3s");
        let after = &plan.changes()[0].after;
        assert!(after.contains("/srv/k3s, /var/lib/rancher"), "{after}");
    }

    #[test]
    fn a_data_dir_that_is_not_k3s_alone_blocks_the_reset() {
        let inv = inventory();
        let d = desired(&inv);
        let mut f = converged(&d);
        for bad in ["/", "/var"] {
            f.data_dir_config = Some(bad.to_string());
            let Check::Blocked(why) = check_one(&K3sReset, &inv, &d, &f) else {
                panic!("expected a refusal for {bad}")
            };
            assert!(why.contains("not removed"), "{why}");
        }
    }
}
