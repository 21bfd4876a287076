//! Raspberry Pi preflight: K3s needs the memory cgroup, which Raspberry Pi
//! OS leaves off unless `cmdline.txt` asks for it. Edit the file only when
//! a flag is missing, reboot only then, and re-check after the reboot.

use std::time::Duration;

use serde::Serialize;

use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;

const FLAGS: [&str; 2] = ["cgroup_memory=1", "cgroup_enable=memory"];

pub struct PiCgroups;

/// Add the missing flags to `path`, then reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PiCgroupsPlan {
    pub path: String,
    pub missing: Vec<&'static str>,
}

impl Plan for PiCgroupsPlan {
    fn changes(&self) -> Vec<Change> {
        vec![
            Change::new(
                self.path.clone(),
                format!("without {}", self.missing.join(" ")),
                format!("with {}", FLAGS.join(" ")),
            ),
            Change::new("reboot", "memory cgroup off", "reboot to enable it"),
        ]
    }
}

fn missing(cmdline: &str) -> Vec<&'static str> {
    FLAGS
        .iter()
        .copied()
        .filter(|f| !cmdline.split_whitespace().any(|w| w == *f))
        .collect()
}

/// The command line with the missing cgroup flags appended to its (only)
/// line; everything already there is kept as it is.
pub fn with_cgroup_flags(cmdline: &str) -> String {
    let line = cmdline.lines().next().unwrap_or_default().trim_end();
    let add = missing(cmdline);
    if add.is_empty() {
        return format!("{line}\n");
    }
    let sep = if line.is_empty() { "" } else { " " };
    format!("{line}{sep}{}\n", add.join(" "))
}

impl Step for PiCgroups {
    const ID: StepId = StepId::PiCgroups;
    type Plan = PiCgroupsPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<PiCgroupsPlan> {
        let Some((path, current)) = &cx.facts.boot_cmdline else {
            return Check::Skip("not a Raspberry Pi (no cmdline.txt)".into());
        };
        let absent = missing(current);
        if !absent.is_empty() {
            return Check::Change(PiCgroupsPlan {
                path: path.clone(),
                missing: absent,
            });
        }
        if !cx.facts.memory_cgroup {
            return Check::Blocked(format!(
                "{path} has {} but the memory cgroup controller is not enabled (was the node rebooted since?)",
                FLAGS.join(" ")
            ));
        }
        Check::Converged
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &PiCgroupsPlan,
    ) -> Result<Applied, StepError> {
        let Some((_, current)) = &cx.facts.boot_cmdline else {
            return Ok(Applied::Done);
        };
        let t = io.transport;
        // 0644 as on ext4 /boot; vfat (/boot/firmware) ignores modes it can express.
        t.put_file(
            with_cgroup_flags(current).as_bytes(),
            &plan.path,
            0o644,
            cx.node.ssh.sudo,
        )
        .await?;
        // --no-block: queue the reboot and answer, so that a refusal
        // (sudo, polkit) is reported rather than mistaken for the reboot.
        let reboot = RemoteCommand::new("systemctl")
            .args(["--no-block", "reboot"])
            .sudo(cx.node.ssh.sudo)
            .timeout(Duration::from_secs(30));
        match t.exec(&reboot).await {
            Ok(out) => {
                StepError::check_output("scheduling the reboot", out)?;
            }
            // The node may already be going down: the runner waits for it.
            Err(e) if e.is_unreachable() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Applied::Rebooting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_added_once_and_kept_on_one_line() {
        let pi = "console=serial0,115200 console=tty1 root=PARTUUID=abc rootfstype=ext4 fsck.repair=yes rootwait\n";
        let once = with_cgroup_flags(pi);
        assert!(once.ends_with("rootwait cgroup_memory=1 cgroup_enable=memory\n"));
        assert_eq!(with_cgroup_flags(&once), once, "idempotent");
        assert_eq!(once.lines().count(), 1);
    }

    #[test]
    fn only_missing_flags_are_added_and_spacing_is_kept() {
        let partial = "console=tty1  root=/dev/mmcblk0p2\tcgroup_enable=memory rootwait";
        assert_eq!(
            with_cgroup_flags(partial),
            "console=tty1  root=/dev/mmcblk0p2\tcgroup_enable=memory rootwait cgroup_memory=1\n"
        );
        assert!(missing("a  cgroup_memory=1\tcgroup_enable=memory").is_empty());
    }
}
