//! The health agent on the node: its binary, its hardened unit, enabled and
//! running, restarted when either changed in this run.

use std::time::Duration;

use crate::artifacts::{ArtifactStore, sha256_hex};
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Step, StepError};
use crate::transport::{BoxFuture, RemoteCommand, Transport};

pub struct HealthAgent;

const UNIT: &str = "pictl-agent.service";

/// `$1` daemon-reload yes|no, `$2` start|restart|none.
const SCRIPT: &str = r#"set -eu
# The unit runs as this unprivileged system user.
id -u pictl-agent >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin --user-group pictl-agent
[ "$1" = yes ] && systemctl daemon-reload
systemctl enable --quiet pictl-agent.service
if [ "$2" != none ]; then systemctl "$2" pictl-agent.service; fi
i=0
until systemctl is-active --quiet pictl-agent.service; do
  i=$((i+1)); if [ $i -gt 50 ]; then systemctl status --no-pager --lines=5 pictl-agent.service >&2 || true; exit 1; fi
  sleep 0.2
done
"#;

impl Step for HealthAgent {
    fn name(&self) -> &'static str {
        "health-agent"
    }

    fn check(&self, cx: &NodeCx<'_>) -> Check {
        let bin = match &cx.desired.agent {
            None => return Check::Skip("disabled ([agent] enabled = false)".into()),
            Some(Err(why)) => return Check::Skip(why.clone()),
            Some(Ok(b)) => b,
        };
        let mut changes = Vec::new();
        if cx.facts.file_sha(paths::HEALTH_AGENT_BIN) != Some(bin.sha256.as_str()) {
            let before = if cx.facts.file_sha(paths::HEALTH_AGENT_BIN).is_some() {
                "other build"
            } else {
                "absent"
            };
            changes.push(Change::new(
                paths::HEALTH_AGENT_BIN,
                before,
                format!("sha256 {}", &bin.sha256[..12]),
            ));
        }
        let unit_sha = sha256_hex(pictl_agent::SYSTEMD_UNIT.as_bytes());
        if cx.facts.file_sha(paths::HEALTH_AGENT_UNIT) != Some(unit_sha.as_str()) {
            let before = if cx.facts.file_sha(paths::HEALTH_AGENT_UNIT).is_some() {
                "modified"
            } else {
                "absent"
            };
            changes.push(Change::new(
                paths::HEALTH_AGENT_UNIT,
                before,
                "pictl's unit",
            ));
        }
        let unit = cx.facts.unit(UNIT);
        if !unit.enabled {
            changes.push(Change::new(UNIT, "disabled", "enabled"));
        }
        if !unit.active {
            let state = if unit.active_state.is_empty() {
                "not installed"
            } else {
                unit.active_state.as_str()
            };
            changes.push(Change::new(UNIT, state, "active"));
        } else if !changes.is_empty() {
            changes.push(Change::new(UNIT, "running", "restarted"));
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
            let Some(Ok(bin)) = &cx.desired.agent else {
                return Ok(Applied::Done);
            };
            let sudo = cx.node.ssh.sudo;
            if changes.iter().any(|c| c.what == paths::HEALTH_AGENT_BIN) {
                t.put_file(&bin.bytes, paths::HEALTH_AGENT_BIN, 0o755, sudo)
                    .await?;
            }
            let unit_changed = changes.iter().any(|c| c.what == paths::HEALTH_AGENT_UNIT);
            if unit_changed {
                t.put_file(
                    pictl_agent::SYSTEMD_UNIT.as_bytes(),
                    paths::HEALTH_AGENT_UNIT,
                    0o644,
                    sudo,
                )
                .await?;
            }
            let action = match changes
                .iter()
                .find(|c| c.what == UNIT && c.after != "enabled")
            {
                Some(c) if c.after == "restarted" => "restart",
                Some(_) => "start",
                None => "none",
            };
            let reload = if unit_changed || cx.facts.unit(UNIT).need_daemon_reload {
                "yes"
            } else {
                "no"
            };
            let cmd = RemoteCommand::script(SCRIPT)
                .args([reload, action])
                .sudo(sudo)
                .timeout(Duration::from_secs(60));
            StepError::check_output("starting pictl-agent", t.exec(&cmd).await?)?;
            Ok(Applied::Done)
        })
    }
}
