//! The K3s service: enabled, running, and restarted only when its binary,
//! config or unit differ from what it was started with (a handler, in
//! Ansible's terms).
//!
//! "What it was started with" is a `sha256sum` record pictl writes on the
//! node after every successful (re)start ([`paths::STARTED_WITH`]), so the
//! decision needs no clocks, and a run interrupted between writing a file
//! and restarting is still repaired by the next one.
//!
//! A mode or owner fix of an input is not a change of what K3s reads (it
//! reads them at start, and the bytes are the same): it neither restarts
//! K3s nor reloads systemd.

use std::time::Duration;

use super::service::{RestartReason, ServiceAction, ServicePlan};
use crate::facts::paths;
use crate::inventory::Role;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;

pub struct K3sService;

/// The steps whose changes K3s only picks up when restarted.
const INPUT_STEPS: [StepId; 4] = [
    StepId::K3sBinary,
    StepId::K3sConfig,
    StepId::K3sRegistries,
    StepId::K3sUnit,
];

impl Plan for ServicePlan {
    fn changes(&self) -> Vec<Change> {
        ServicePlan::changes(self)
    }
}

/// A shell function: the journal lines on stdin around K3s's first error
/// (3 before, 8 after) and the last 5, with `[...]` for what is left out.
/// A K3s that cannot start says why once, then retries for as long as it
/// is let: the last lines alone show the retries, not the cause.
macro_rules! journal_excerpt {
    () => {
        r#"excerpt() {
  awk '{ l[NR] = $0 }
    !f && /level=(error|fatal)|[Ee]rror:|[Ff]ailed to|[Ff]atal/ { f = NR }
    END {
      if (f) { s = f - 3; e = f + 8 } else { s = NR - 14; e = NR }
      if (s < 1) s = 1
      if (e > NR) e = NR
      for (i = s; i <= e; i++) print l[i]
      t = e + 1; if (t < NR - 4) { print "[...]"; t = NR - 4 }
      for (i = t; i <= NR; i++) print l[i]
    }'
}
"#
    };
}

/// `$1` unit, `$2` start|restart|none, `$3` enable yes|no, `$4`
/// daemon-reload yes|no (see [`ServicePlan::systemd_args`]), `$5` wait for
/// the server's files yes|no, `$6` seconds, `$7` K3s's data dir; then the files to record.
pub(super) const SCRIPT: &str = concat!(
    r#"set -eu
"#,
    super::service::start_unit!(),
    journal_excerpt!(),
    r#"unit=$1; action=$2; enable=$3; reload=$4; server=$5; secs=$6; dd=$7; since=$(date +%s); deadline=$(( since + secs )); shift 7
[ "$enable" = no ] || systemctl enable --quiet --no-reload "$unit"
[ "$reload" = no ] || systemctl daemon-reload
# --no-block: a Type=notify unit would otherwise hold systemctl until ready,
# past our own deadline, and hide why it never got there.
# The invocation ID tells the new process from the old one, which a queued
# restart leaves "active" for a moment.
old=$(systemctl show -p InvocationID --value "$unit")
if [ "$action" != none ]; then start_unit --no-block "$action" "$unit"; fi
ready() {
  systemctl is-active --quiet "$unit" || return 1
  [ "$action" = none ] || [ "$(systemctl show -p InvocationID --value "$unit")" != "$old" ] || return 1
  [ "$server" = no ] || { [ -s "$dd/server/token" ] && [ -s /etc/rancher/k3s/k3s.yaml ]; }
}
until ready; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    # K3s says why in its journal (a wrong token, a missing cgroup, …).
    journalctl -u "$unit" --since "@$since" --no-pager -o cat 2>/dev/null | excerpt >&2 || true
    echo "$unit did not become ready within $secs s" >&2
    exit 1
  fi
  sleep 0.2
done
# The record names K3s's inputs and their hashes (as sha256sum prints
# them): root's only. A hash the facts cache holds for a file as it is now
# (same inode, size and ctime; see facts.rs) is taken from there: K3s's
# binary was hashed when it was installed, 70 MB that take a Pi 4 most of
# a second to hash again.
umask 077
mkdir -p /var/lib/pictl && chmod 700 /var/lib/pictl
nl='
'
c=
[ ! -r /var/lib/pictl/hashes ] || c=$(cat /var/lib/pictl/hashes)
x=$nl$c$nl; rest=$c$nl
"#,
    crate::facts::hash_cache_hit!(),
    r#"ids=$(stat -c '%i %s %.9Z %n' -- "$@")
rec=
while read -r i s t f; do
  hit "$f $i $s $t" || { h=$(sha256sum < "$f"); h=${h%% *}; }
  rec="$rec$h  $f$nl"
done <<END
$ids
END
printf '%s' "$rec" > /var/lib/pictl/k3s-started-with.tmp
mv /var/lib/pictl/k3s-started-with.tmp /var/lib/pictl/k3s-started-with
"#
);

impl K3sService {
    /// The files K3s reads at start that pictl writes (registries.yaml
    /// only when the inventory has `[registries]`).
    fn inputs(cx: &NodeCx<'_>) -> Vec<&'static str> {
        let mut files = vec![paths::K3S_BIN, paths::CONFIG, cx.desired.unit_path];
        if cx.desired.registries.is_some() {
            files.push(paths::REGISTRIES);
        }
        files
    }

    fn restart_reason(cx: &NodeCx<'_>) -> Option<RestartReason> {
        let changed: Vec<StepId> = INPUT_STEPS
            .into_iter()
            .filter(|s| cx.pending.contains(s))
            .collect();
        if !changed.is_empty() {
            return Some(RestartReason::ChangedByRun(changed));
        }
        let stale: Vec<&'static str> = Self::inputs(cx)
            .into_iter()
            .filter(|p| cx.facts.started_with.get(*p).map(String::as_str) != cx.facts.file_sha(p))
            .collect();
        (!stale.is_empty()).then_some(RestartReason::StartedWithOlder(stale))
    }
}

impl K3sService {
    /// K3s was set up outside pictl, runs the release pictl installs, and
    /// its settings are what pictl's files say: taking it over needs no
    /// restart, only the record of what it runs with.
    fn adopted_as_is(cx: &NodeCx<'_>, reason: &RestartReason) -> bool {
        let binary_changed =
            matches!(reason, RestartReason::ChangedByRun(s) if s.contains(&StepId::K3sBinary));
        !binary_changed && cx.adoption.is_some_and(|a| a.verdict.equivalent())
    }
}

impl Step for K3sService {
    const ID: StepId = StepId::K3sService;
    type Plan = ServicePlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<ServicePlan> {
        let unit = cx.facts.unit(cx.desired.unit_name);
        let restart = match Self::restart_reason(cx) {
            Some(reason) if Self::adopted_as_is(cx, &reason) => ServiceAction::Adopt,
            Some(reason) => ServiceAction::Restart(reason),
            None => ServiceAction::Keep,
        };
        let plan = ServicePlan {
            unit: cx.desired.unit_name,
            daemon_reload: super::service::needs_reload(
                &unit,
                cx.pending.contains(&StepId::K3sUnit) || !unit.enabled,
            ),
            enable: !unit.enabled,
            action: ServiceAction::start_or(&unit, restart),
        };
        if plan.is_empty() {
            Check::Converged
        } else {
            Check::Change(plan)
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &ServicePlan,
    ) -> Result<Applied, StepError> {
        let action = plan.action.verb();
        let server = cx.node.role == Role::Server;
        // How long a (re)started K3s may take to become active (and, on
        // servers, to write its token and admin kubeconfig): `--wait`. A Pi
        // unpacking its data dir onto an SD card at first start takes minutes.
        let deadline = io.wait;
        let secs = deadline.as_secs().to_string();
        let [enable, reload] = plan.systemd_args();
        let cmd = RemoteCommand::script(SCRIPT)
            .args([
                plan.unit,
                action,
                enable,
                reload,
                if server { "yes" } else { "no" },
                &secs,
                &cx.desired.data_dir(),
            ])
            .args(Self::inputs(cx))
            .sudo(cx.node.ssh.sudo)
            .timeout(deadline + Duration::from_secs(30));
        let out = io.transport.exec(&cmd).await?;
        if !out.success() && out.stderr_text().contains("Node password rejected") {
            return Err(StepError::NodePasswordRejected {
                node: cx.node.name.clone(),
            });
        }
        StepError::check_output(&format!("systemctl {action} {}", plan.unit), out)?;
        Ok(Applied::Done)
    }
}

#[cfg(test)]
mod tests {
    fn excerpt(lines: &[String]) -> Vec<String> {
        let script = concat!(journal_excerpt!(), "excerpt");
        let dir = tempfile::tempdir().expect("tmp");
        let input = dir.path().join("journal");
        std::fs::write(&input, lines.join("\n") + "\n").expect("write");
        let script = format!("{script} < '{}'", input.display());
        let out = crate::test_sh::run(&script, [] as [&str; 0], "/usr/bin:/bin");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn the_journal_excerpt_shows_the_first_error_and_the_last_lines() {
        let mut lines: Vec<String> = (1..=40)
            .map(|i| format!("level=info msg=\"line {i}\""))
            .collect();
        lines[9] = "level=fatal msg=\"failed to find memory cgroup (v2)\"".into();
        let got = excerpt(&lines);
        assert_eq!(got[0], lines[6], "3 lines before the error: {got:?}");
        assert!(got.contains(&lines[9]), "{got:?}");
        assert_eq!(got[12], "[...]", "{got:?}");
        assert_eq!(got[13..], lines[35..], "the last 5: {got:?}");
        // No error line: the last 15.
        let quiet: Vec<String> = (1..=40)
            .map(|i| format!("level=info msg=\"{i}\""))
            .collect();
        assert_eq!(excerpt(&quiet), quiet[25..]);
        // A short journal is shown whole.
        assert_eq!(excerpt(&lines[..12]), lines[6..12]);
    }
}
