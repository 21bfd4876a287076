//! What install.sh leaves beside K3s, so a node pictl manages is managed
//! like an install.sh node: `k3s-killall.sh` and `k3s-uninstall.sh` (or
//! `k3s-agent-uninstall.sh`), pictl's own with the same effect
//! (`playbooks/node/`), told the node's data dir, and `kubectl`, `crictl`
//! and `ctr` linked to k3s when no such command exists (K3s answers to
//! those names) and nothing but a dangling link is in the way.

use serde::Serialize;

use super::file;
use crate::artifacts::sha256_hex;
use crate::facts::paths;
use crate::inventory::Role;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;
use crate::transport::quote::quote;

/// The scripts as written for K3s's default data dir.
pub const KILLALL: &str = include_str!("../../../playbooks/node/k3s-killall.sh");
pub const UNINSTALL: &str = include_str!("../../../playbooks/node/k3s-uninstall.sh");

/// The one line of both scripts that names the data dir.
const DATA_DIR_LINE: &str = "K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}\n";

/// `script` (KILLALL or UNINSTALL) with `data_dir` as its default data
/// dir, quoted (`K3S_DATA_DIR` in the environment still wins, as for
/// K3s's own scripts).
pub fn with_data_dir(script: &str, data_dir: &str) -> String {
    let line = format!("K3S_DATA_DIR=${{K3S_DATA_DIR:-{}}}\n", quote(data_dir));
    script.replacen(DATA_DIR_LINE, &line, 1)
}

pub struct K3sTools;

/// Scripts to write and links to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolsPlan {
    /// (path, was present) of each script to write.
    pub scripts: Vec<(&'static str, bool)>,
    /// Commands to link to k3s.
    pub links: Vec<String>,
}

impl Plan for ToolsPlan {
    fn changes(&self) -> Vec<Change> {
        let scripts = self.scripts.iter().map(|(path, present)| {
            let before = if *present { "modified" } else { "absent" };
            Change::new(*path, before, "pictl's script")
        });
        let links = self
            .links
            .iter()
            .map(|c| Change::new(format!("/usr/local/bin/{c}"), "absent", "→ k3s"));
        scripts.chain(links).collect()
    }
}

/// The uninstall script's path for a role, as install.sh names it.
pub fn uninstall_path(role: Role) -> &'static str {
    match role {
        Role::Server => paths::SERVER_UNINSTALL,
        Role::Agent => paths::AGENT_UNINSTALL,
    }
}

/// `$@`: the commands to link to k3s, as install.sh's `create_symlinks`
/// does: only where nothing is (`[ ! -e ]` is true of a dangling link,
/// which `ln -sf` replaces) and no such command exists elsewhere.
const LINK: &str = r#"set -eu
for c in "$@"; do
  [ ! -e "/usr/local/bin/$c" ] || continue
  command -v "$c" >/dev/null 2>&1 || ln -sf k3s "/usr/local/bin/$c"
done
"#;

impl Step for K3sTools {
    const ID: StepId = StepId::K3sTools;
    type Plan = ToolsPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<ToolsPlan> {
        let wanted = [
            (paths::KILLALL, KILLALL),
            (uninstall_path(cx.node.role), UNINSTALL),
        ];
        let scripts: Vec<(&'static str, bool)> = wanted
            .into_iter()
            .filter_map(|(path, text)| {
                let text = with_data_dir(text, &cx.desired.data_dir());
                let found = cx.facts.file_sha(path);
                (found != Some(sha256_hex(text.as_bytes()).as_str()))
                    .then_some((path, found.is_some()))
            })
            .collect();
        let plan = ToolsPlan {
            scripts,
            links: cx.facts.tools_missing.clone(),
        };
        if plan.scripts.is_empty() && plan.links.is_empty() {
            Check::Converged
        } else {
            Check::Change(plan)
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &ToolsPlan,
    ) -> Result<Applied, StepError> {
        let sudo = cx.node.ssh.sudo;
        for (path, _) in &plan.scripts {
            let text = if *path == paths::KILLALL {
                KILLALL
            } else {
                UNINSTALL
            };
            let text = with_data_dir(text, &cx.desired.data_dir());
            io.transport
                .put_file(text.as_bytes(), path, file::BINARY.mode, sudo)
                .await?;
        }
        if !plan.links.is_empty() {
            let cmd = RemoteCommand::script(LINK)
                .args(plan.links.iter().cloned())
                .sudo(sudo);
            StepError::check_output(
                "linking kubectl, crictl and ctr to k3s",
                io.transport.exec(&cmd).await?,
            )?;
        }
        Ok(Applied::Done)
    }
}

#[cfg(test)]
#[path = "k3s_tools_tests.rs"]
mod tests;
