//! The K3s service: enabled, running, and restarted only when its binary,
//! config or unit changed since it started (a handler, in Ansible's terms).
//!
//! "Changed since it started" is read from the node (file mtimes against
//! the unit's start time), so a run interrupted between writing a file and
//! restarting is still repaired by the next one.

use std::time::Duration;

use crate::artifacts::ArtifactStore;
use crate::facts::paths;
use crate::inventory::Role;
use crate::step::{Applied, Change, Check, NodeCx, Step, StepError};
use crate::transport::{BoxFuture, RemoteCommand, Transport};

pub struct K3sService;

/// Starts/restarts the unit, then (servers) waits for the join token.
const SCRIPT: &str = r#"set -eu
unit=$1; action=$2; reload=$3; wait_token=$4
[ "$reload" = yes ] && systemctl daemon-reload
systemctl enable --quiet "$unit"
if [ "$action" != none ]; then systemctl "$action" "$unit"; fi
i=0
while [ "$wait_token" = yes ] && ! [ -s /var/lib/rancher/k3s/server/token ] || ! systemctl is-active --quiet "$unit"; do
  i=$((i+1)); [ $i -gt 240 ] && { echo "$unit did not become active (and ready) within 120 s" >&2; systemctl status --no-pager "$unit" >&2 || true; exit 1; }
  sleep 0.5
done
"#;

impl Step for K3sService {
    fn name(&self) -> &'static str {
        "k3s-service"
    }

    fn check(&self, cx: &NodeCx<'_>) -> Check {
        let unit = cx.facts.unit(cx.desired.unit_name);
        let mut changes = Vec::new();
        let reload = cx.pending.contains(&"k3s-unit") || unit.need_daemon_reload;
        if reload {
            changes.push(Change::new(
                "systemd",
                "unit files changed",
                "daemon-reload",
            ));
        }
        if !unit.enabled {
            changes.push(Change::new(cx.desired.unit_name, "disabled", "enabled"));
        }
        let changed_by_run: Vec<&str> = cx
            .pending
            .iter()
            .copied()
            .filter(|s| matches!(*s, "k3s-binary" | "k3s-config" | "k3s-unit"))
            .collect();
        if !unit.active {
            let state = if unit.active_state.is_empty() {
                "not installed"
            } else {
                unit.active_state.as_str()
            };
            changes.push(Change::new(cx.desired.unit_name, state, "active"));
        } else if !changed_by_run.is_empty() {
            changes.push(Change::new(
                cx.desired.unit_name,
                "running",
                format!("restarted ({} changed)", changed_by_run.join(", ")),
            ));
        } else if let Some(since) = unit.active_since {
            let newer: Vec<&str> = [paths::K3S_BIN, paths::CONFIG, cx.desired.unit_path]
                .into_iter()
                // The margin covers the few ms of error in `active_since`.
                .filter(|p| cx.facts.file(p).is_some_and(|f| f.mtime > since + 0.05))
                .collect();
            if !newer.is_empty() {
                changes.push(Change::new(
                    cx.desired.unit_name,
                    format!("running since before {} changed", newer.join(", ")),
                    "restarted",
                ));
            }
        }
        Check::Changes(changes)
    }

    fn apply<'a>(
        &'a self,
        cx: &'a NodeCx<'a>,
        t: &'a dyn Transport,
        _store: &'a ArtifactStore,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Applied, StepError>> {
        Box::pin(async move {
            let unit = cx.desired.unit_name;
            let reload = changes.iter().any(|c| c.what == "systemd");
            let action = if changes
                .iter()
                .any(|c| c.what == unit && c.after.starts_with("restarted"))
            {
                "restart"
            } else if changes
                .iter()
                .any(|c| c.what == unit && c.after == "active")
            {
                "start"
            } else {
                "none"
            };
            let wait_token = cx.node.role == Role::Server;
            let cmd = RemoteCommand::script(SCRIPT)
                .args([
                    unit,
                    action,
                    if reload { "yes" } else { "no" },
                    if wait_token { "yes" } else { "no" },
                ])
                .sudo(cx.node.ssh.sudo)
                .timeout(Duration::from_secs(180));
            let out = t.exec(&cmd).await?;
            StepError::check_output(&format!("systemctl {action} {unit}"), out)?;
            Ok(Applied::Done)
        })
    }
}
