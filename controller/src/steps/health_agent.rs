//! The health agent on the node: its binary, its hardened unit and the
//! unit's firewall drop-in, enabled and running, restarted when any of them
//! changed in this run. Binary 0755, unit and drop-in 0644, root:root; a
//! mode or owner fix alone restarts nothing. The drop-in comes with the unit
//! so that a first install costs systemd one reload, not two. With
//! `[agent] enabled = false`, an agent left on the node is removed: unit
//! stopped and disabled, binary, unit, drop-in, token, CA and publishing
//! config deleted (nothing left behind that holds a token).
//!
//! With the agent comes a drop-in for K3s's own unit, [`CERTS_HOOK`]: after
//! every start of K3s (the one moment K3s renews its certificates) it runs
//! `pictl-agent certificates --write`, as root, which notes when the first
//! certificate ends where the unprivileged daemon reads it. Writing it
//! reloads systemd; it restarts nothing.

use std::time::Duration;

use serde::Serialize;

use super::file::{self, MetaFix};
use super::service::{RestartReason, ServiceAction, ServicePlan};
use crate::artifacts::sha256_hex;
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;

pub struct HealthAgent;

/// Stops the agent and removes everything it had on the node (its API
/// access too: the token, CA, publishing config and firewall drop-in) and
/// its user; shared with the reset.
macro_rules! remove_agent {
    () => {
        r#"systemctl disable --now pictl-agent.service >/dev/null 2>&1 || true
rm -f /etc/systemd/system/pictl-agent.service /usr/local/bin/pictl-agent
rm -rf /etc/pictl-agent /etc/systemd/system/pictl-agent.service.d /run/pictl-agent
for u in k3s k3s-agent; do
  rm -f /etc/systemd/system/$u.service.d/pictl-agent-certificates.conf
  rmdir /etc/systemd/system/$u.service.d 2>/dev/null || true
done
systemctl daemon-reload
id -u pictl-agent >/dev/null 2>&1 && userdel pictl-agent >/dev/null 2>&1
"#
    };
}
pub(super) use remove_agent;

/// The script that removes a disabled agent.
pub const REMOVE_SCRIPT: &str = concat!("set -u\n", remove_agent!());

/// The agent's files pictl looks for on a node whose agent is disabled.
pub const AGENT_FILES: [&str; 8] = [
    paths::HEALTH_AGENT_BIN,
    paths::HEALTH_AGENT_UNIT,
    paths::AGENT_DROPIN,
    paths::AGENT_TOKEN,
    paths::AGENT_CA,
    paths::AGENT_PUBLISH,
    paths::SERVER_CERTS_HOOK,
    paths::AGENT_CERTS_HOOK,
];

/// K3s's unit drop-in: the note written after each start of K3s (`-`: a
/// failure of it never fails K3s).
pub const CERTS_HOOK: &str = "# Managed by pictl: after each start of K3s (when it renews its certificates),\n\
# the health agent notes when the first one ends, for its unprivileged daemon.\n\
[Service]\n\
ExecStartPost=-/usr/local/bin/pictl-agent certificates --write /run/pictl-agent/k3s-certificates.json\n";

/// The drop-in's path for K3s's unit `unit` (`k3s.service`, `k3s-agent.service`).
fn hook_path(unit: &str) -> &'static str {
    if unit == "k3s.service" {
        paths::SERVER_CERTS_HOOK
    } else {
        paths::AGENT_CERTS_HOOK
    }
}

/// Install what differs, then reload/enable/start or restart the unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthAgentPlan {
    /// Replace the binary (`Some(before)`: "absent" or "other build").
    pub binary: Option<&'static str>,
    /// Replace the unit (`Some(before)`: "absent" or "modified").
    pub unit: Option<&'static str>,
    /// Replace the firewall drop-in (`Some(before)`: "absent" or "other content").
    pub dropin: Option<&'static str>,
    /// Replace K3s's certificate drop-in at `hook_path`.
    pub hook: Option<&'static str>,
    pub hook_path: &'static str,
    /// Short sha256 of the binary to install.
    pub sha: String,
    /// Files whose content is right but mode or owner is not.
    pub fixes: Vec<MetaFix>,
    pub service: ServicePlan,
    /// Where the binary's copy comes from.
    pub from: crate::relay::Source,
    /// The agent is disabled: these of its files are on the node, to be
    /// removed with the unit (nothing else in the plan then).
    pub remove: Vec<&'static str>,
}

impl HealthAgentPlan {
    /// Removing a disabled agent's `files`.
    fn removal(files: Vec<&'static str>) -> HealthAgentPlan {
        HealthAgentPlan {
            binary: None,
            unit: None,
            dropin: None,
            hook: None,
            hook_path: paths::SERVER_CERTS_HOOK,
            sha: String::new(),
            fixes: vec![],
            service: ServicePlan {
                unit: UNIT,
                daemon_reload: false,
                enable: false,
                action: ServiceAction::Keep,
            },
            from: Default::default(),
            remove: files,
        }
    }
}

impl Plan for HealthAgentPlan {
    fn changes(&self) -> Vec<Change> {
        let mut out: Vec<Change> = (self.remove.iter())
            .map(|p| Change::new(*p, "present", "removed ([agent] enabled = false)"))
            .collect();
        if let Some(before) = self.binary {
            out.push(Change::new(
                paths::HEALTH_AGENT_BIN,
                before,
                format!("sha256 {}{}", self.sha, self.from.suffix()),
            ));
        }
        if let Some(before) = self.unit {
            out.push(Change::new(
                paths::HEALTH_AGENT_UNIT,
                before,
                "pictl's unit",
            ));
        }
        if let Some(before) = self.dropin {
            let after = "pictl's firewall drop-in";
            out.push(Change::new(paths::AGENT_DROPIN, before, after));
        }
        if let Some(before) = self.hook {
            let after =
                "pictl's drop-in (the agent notes the certificates' end after each K3s start)";
            out.push(Change::new(self.hook_path, before, after));
        }
        out.extend(self.fixes.iter().flat_map(MetaFix::changes));
        // The unit file itself was listed above; the reload it implies is
        // not a change of its own for people.
        let service = ServicePlan {
            daemon_reload: false,
            ..self.service.clone()
        };
        out.extend(service.changes());
        out
    }
}

/// `Some(before)` when `path` does not hash to `want`.
fn differs(
    cx: &NodeCx<'_>,
    path: &str,
    want: &str,
    modified: &'static str,
) -> Option<&'static str> {
    match cx.facts.file_sha(path) {
        Some(sha) if sha == want => None,
        Some(_) => Some(modified),
        None => Some("absent"),
    }
}

const UNIT: &str = "pictl-agent.service";

/// `$1` enable yes|no, `$2` daemon-reload yes|no (see
/// [`ServicePlan::systemd_args`](super::service::ServicePlan::systemd_args)),
/// `$3` start|restart|none.
pub(super) const SCRIPT: &str = concat!(
    r#"set -eu
"#,
    super::service::start_unit!(),
    r#"# The unit runs as this unprivileged system user.
id -u pictl-agent >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin --user-group pictl-agent
[ "$1" = no ] || systemctl enable --quiet --no-reload pictl-agent.service
[ "$2" = no ] || systemctl daemon-reload
if [ "$3" != none ]; then start_unit "$3" pictl-agent.service; fi
# K3s's drop-in notes the certificates at its next start; now, the first note.
/usr/local/bin/pictl-agent certificates --write '"#,
    "/run/pictl-agent/k3s-certificates.json",
    r#"' >/dev/null 2>&1 || true
i=0
until systemctl is-active --quiet pictl-agent.service; do
  i=$((i+1)); if [ $i -gt 50 ]; then systemctl status --no-pager --lines=5 pictl-agent.service >&2 || true; exit 1; fi
  sleep 0.2
done
"#
);

impl HealthAgent {
    /// A disabled agent: removed if anything of it is on the node.
    fn disabled(cx: &NodeCx<'_>) -> Check<HealthAgentPlan> {
        let found: Vec<&'static str> = (AGENT_FILES.into_iter())
            .filter(|p| cx.facts.file_sha(p).is_some())
            .collect();
        if found.is_empty() {
            Check::Skip("disabled ([agent] enabled = false)".into())
        } else {
            Check::Change(HealthAgentPlan::removal(found))
        }
    }
}

impl Step for HealthAgent {
    const ID: StepId = StepId::HealthAgent;
    type Plan = HealthAgentPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<HealthAgentPlan> {
        let bin = match &cx.desired.agent {
            None => return Self::disabled(cx),
            Some(Err(why)) => return Check::Skip(why.to_string()),
            Some(Ok(b)) => b,
        };
        let unit_sha = sha256_hex(pictl_agent::SYSTEMD_UNIT.as_bytes());
        let binary = differs(cx, paths::HEALTH_AGENT_BIN, &bin.sha256, "other build");
        let unit_file = differs(cx, paths::HEALTH_AGENT_UNIT, &unit_sha, "modified");
        let dropin_sha = sha256_hex(cx.desired.agent_dropin.as_bytes());
        let dropin = differs(cx, paths::AGENT_DROPIN, &dropin_sha, "other content");
        let hook_path = hook_path(cx.desired.unit_name);
        let hook = differs(
            cx,
            hook_path,
            &sha256_hex(CERTS_HOOK.as_bytes()),
            "other content",
        );
        // A file being replaced gets its mode and owner from the upload.
        let fixes: Vec<MetaFix> = [
            (binary, paths::HEALTH_AGENT_BIN, file::BINARY),
            (unit_file, paths::HEALTH_AGENT_UNIT, file::UNIT),
            (dropin, paths::AGENT_DROPIN, file::UNIT),
            (hook, hook_path, file::UNIT),
        ]
        .into_iter()
        .filter(|(replaced, _, _)| replaced.is_none())
        .filter_map(|(_, path, want)| MetaFix::check(cx.facts, path, want))
        .collect();
        let unit = cx.facts.unit(UNIT);
        let replaced = binary.is_some() || unit_file.is_some() || dropin.is_some() || !unit.enabled;
        let restart = if replaced {
            ServiceAction::Restart(RestartReason::Replaced)
        } else {
            ServiceAction::Keep
        };
        // K3s's drop-in takes a reload, never a restart: always, since K3s's
        // unit may have been loaded by this very run (a first start).
        let plan = HealthAgentPlan {
            binary,
            unit: unit_file,
            dropin,
            hook,
            hook_path,
            sha: bin.sha256.get(..12).unwrap_or(&bin.sha256).to_string(),
            fixes,
            service: ServicePlan {
                unit: UNIT,
                daemon_reload: super::service::needs_reload(
                    &unit,
                    unit_file.is_some() || dropin.is_some() || !unit.enabled,
                ) || hook.is_some(),
                enable: !unit.enabled,
                action: ServiceAction::start_or(&unit, restart),
            },
            from: cx.desired.agent_from.clone(),
            remove: vec![],
        };
        if plan.service.is_empty() && binary.is_none() && hook.is_none() && plan.fixes.is_empty() {
            Check::Converged
        } else {
            Check::Change(plan)
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &HealthAgentPlan,
    ) -> Result<Applied, StepError> {
        let (t, sudo) = (io.transport, cx.node.ssh.sudo);
        if !plan.remove.is_empty() {
            let cmd = RemoteCommand::script(REMOVE_SCRIPT)
                .sudo(sudo)
                .timeout(Duration::from_secs(60));
            StepError::check_output("removing pictl-agent", t.exec(&cmd).await?)?;
            return Ok(Applied::Done);
        }
        let Some(Ok(bin)) = &cx.desired.agent else {
            return Ok(Applied::Done);
        };
        let want = (
            paths::HEALTH_AGENT_BIN,
            file::BINARY.mode,
            bin.sha256.as_str(),
        );
        if plan.binary.is_some()
            && !super::relay::try_install(cx, io, Self::ID, &plan.from, want).await?
        {
            t.put_file(&bin.bytes, paths::HEALTH_AGENT_BIN, file::BINARY.mode, sudo)
                .await?;
        }
        if plan.unit.is_some() {
            let unit = pictl_agent::SYSTEMD_UNIT.as_bytes();
            t.put_file(unit, paths::HEALTH_AGENT_UNIT, file::UNIT.mode, sudo)
                .await?;
        }
        if plan.dropin.is_some() {
            let dir = RemoteCommand::new("install")
                .args([
                    "-d",
                    "-m",
                    "0755",
                    "/etc/systemd/system/pictl-agent.service.d",
                ])
                .sudo(sudo);
            StepError::check_output(
                "creating the agent's drop-in directory",
                t.exec(&dir).await?,
            )?;
            let dropin = cx.desired.agent_dropin.as_bytes();
            t.put_file(dropin, paths::AGENT_DROPIN, file::UNIT.mode, sudo)
                .await?;
        }
        if plan.hook.is_some() {
            let dir = plan.hook_path.rsplit_once('/').map_or("/", |(d, _)| d);
            let mk = RemoteCommand::new("install")
                .args(["-d", "-m", "0755", dir])
                .sudo(sudo);
            StepError::check_output("creating K3s's drop-in directory", t.exec(&mk).await?)?;
            t.put_file(CERTS_HOOK.as_bytes(), plan.hook_path, file::UNIT.mode, sudo)
                .await?;
        }
        for fix in &plan.fixes {
            fix.apply(t, sudo).await?;
        }
        if plan.service.is_empty() {
            return Ok(Applied::Done);
        }
        let [enable, reload] = plan.service.systemd_args();
        let cmd = RemoteCommand::script(SCRIPT)
            .args([enable, reload, plan.service.action.verb()])
            .sudo(sudo)
            .timeout(Duration::from_secs(60));
        StepError::check_output("starting pictl-agent", t.exec(&cmd).await?)?;
        Ok(Applied::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_is_written_where_the_daemon_reads_it() {
        let note = pictl_agent::collect::certs::SNAPSHOT;
        assert!(CERTS_HOOK.contains(&format!("certificates --write {note}\n")));
        assert!(SCRIPT.contains(&format!("certificates --write '{note}'")));
        assert_eq!(hook_path("k3s.service"), paths::SERVER_CERTS_HOOK);
        assert_eq!(hook_path("k3s-agent.service"), paths::AGENT_CERTS_HOOK);
        for p in [paths::SERVER_CERTS_HOOK, paths::AGENT_CERTS_HOOK] {
            assert!(REMOVE_SCRIPT.contains(p.rsplit('/').next().expect("name")));
        }
    }
}
