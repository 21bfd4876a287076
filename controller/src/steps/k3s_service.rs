//! The K3s service: enabled, running, and restarted only when its binary,
//! config or unit differ from what it was started with (a handler, in
//! Ansible's terms).
//!
//! "What it was started with" is a `sha256sum` record pictl writes on the
//! node after every successful (re)start ([`paths::STARTED_WITH`]), so the
//! decision needs no clocks, and a run interrupted between writing a file
//! and restarting is still repaired by the next one.

use std::time::Duration;

use crate::artifacts::ArtifactStore;
use crate::facts::paths;
use crate::inventory::Role;
use crate::step::{Applied, Change, Check, NodeCx, Step, StepError};
use crate::transport::{BoxFuture, RemoteCommand, Transport};

pub struct K3sService;

/// How long a (re)started K3s may take to become active (and, on servers,
/// to write its token and admin kubeconfig).
const START_TIMEOUT: Duration = Duration::from_secs(150);

/// `$1` unit, `$2` start|restart|none, `$3` daemon-reload yes|no, `$4` wait
/// for the server's files yes|no, `$5` seconds; then the files to record.
const SCRIPT: &str = r#"set -eu
unit=$1; action=$2; reload=$3; server=$4; deadline=$(( $(date +%s) + $5 )); shift 5
[ "$reload" = yes ] && systemctl daemon-reload
systemctl enable --quiet "$unit"
# --no-block: a Type=notify unit would otherwise hold systemctl until ready,
# past our own deadline, and hide why it never got there.
# The invocation ID tells the new process from the old one, which a queued
# restart leaves "active" for a moment.
old=$(systemctl show -p InvocationID --value "$unit")
if [ "$action" != none ]; then systemctl --no-block "$action" "$unit"; fi
ready() {
  systemctl is-active --quiet "$unit" || return 1
  [ "$action" = none ] || [ "$(systemctl show -p InvocationID --value "$unit")" != "$old" ] || return 1
  [ "$server" = no ] || { [ -s /var/lib/rancher/k3s/server/token ] && [ -s /etc/rancher/k3s/k3s.yaml ]; }
}
until ready; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    systemctl status --no-pager --lines=5 "$unit" >&2 || true
    echo "$unit did not become ready within $5 s" >&2
    exit 1
  fi
  sleep 0.2
done
mkdir -p /var/lib/pictl
sha256sum "$@" > /var/lib/pictl/k3s-started-with.tmp
mv /var/lib/pictl/k3s-started-with.tmp /var/lib/pictl/k3s-started-with
"#;

impl K3sService {
    fn inputs<'a>(cx: &NodeCx<'a>) -> [&'a str; 3] {
        [paths::K3S_BIN, paths::CONFIG, cx.desired.unit_path]
    }
}

impl Step for K3sService {
    fn name(&self) -> &'static str {
        "k3s-service"
    }

    fn check(&self, cx: &NodeCx<'_>) -> Check {
        let unit = cx.facts.unit(cx.desired.unit_name);
        let mut changes = Vec::new();
        if cx.pending.contains(&"k3s-unit") || unit.need_daemon_reload {
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
        let stale: Vec<&str> = Self::inputs(cx)
            .into_iter()
            .filter(|p| cx.facts.started_with.get(*p).map(String::as_str) != cx.facts.file_sha(p))
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
        } else if !stale.is_empty() {
            changes.push(Change::new(
                cx.desired.unit_name,
                format!("running with an older {}", stale.join(", ")),
                "restarted",
            ));
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
            let server = cx.node.role == Role::Server;
            let secs = START_TIMEOUT.as_secs().to_string();
            let cmd = RemoteCommand::script(SCRIPT)
                .args([
                    unit,
                    action,
                    if reload { "yes" } else { "no" },
                    if server { "yes" } else { "no" },
                    &secs,
                ])
                .args(Self::inputs(cx))
                .sudo(cx.node.ssh.sudo)
                .timeout(START_TIMEOUT + Duration::from_secs(30));
            let out = t.exec(&cmd).await?;
            StepError::check_output(&format!("systemctl {action} {unit}"), out)?;
            Ok(Applied::Done)
        })
    }
}
