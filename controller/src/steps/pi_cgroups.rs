//! Raspberry Pi preflight: K3s needs the cpu, cpuset and memory cgroup
//! controllers (k3s-io/k3s pkg/cgroups/cgroups_linux.go, `validateCgroupsV2`;
//! v1 needs memory), and Raspberry Pi kernels keep memory off unless the
//! kernel command line (`cmdline.txt`) says `cgroup_enable=memory`. K3s checks
//! the controllers, not the flags, and so does this step: a Pi whose
//! controllers are on is converged whatever its `cmdline.txt` says. Only a Pi
//! whose memory controller is off gets the flag and a reboot; the runner then
//! gathers facts from the new boot, and a controller still off is blocked.

use std::time::Duration;

use serde::Serialize;

use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};
use crate::transport::RemoteCommand;

/// What K3s refuses to start without (cgroup v2; v1 needs memory only, and
/// a Pi kernel that lacks cpu or cpuset is not one this step can fix).
const REQUIRED: [&str; 3] = ["cpu", "cpuset", "memory"];
const ENABLE: &str = "cgroup_enable=memory";
const LEGACY: &str = "cgroup_memory=1";

pub struct PiCgroups;

/// Add `add` to the command line in `path`, then reboot into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PiCgroupsPlan {
    pub path: String,
    pub add: Vec<&'static str>,
    /// `uname -r` of the kernel that booted without the memory controller.
    pub kernel: String,
}

impl Plan for PiCgroupsPlan {
    fn changes(&self) -> Vec<Change> {
        vec![
            Change::new(
                self.path.clone(),
                format!("without {}", self.add.join(" ")),
                format!("with {}", self.add.join(" ")),
            ),
            Change::new(
                "reboot",
                format!("memory cgroup off (kernel {})", self.kernel),
                "reboot to enable it",
            ),
        ]
    }
}

/// The flags that turn the memory controller on for `kernel` (`uname -r`).
/// `cgroup_enable=memory` does it on every Pi kernel. `cgroup_memory=1` was
/// the Raspberry Pi kernels' own switch, removed in 6.12, which logs it as an
/// unknown parameter (raspberrypi/linux#6980): it is added only to kernels
/// older than 6.12, and to a release that cannot be read (as K3s's own hint
/// names both flags).
pub fn memory_flags(kernel: &str) -> Vec<&'static str> {
    let mut nums = kernel
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (nums.next().flatten(), nums.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= (6, 12) => vec![ENABLE],
        _ => vec![LEGACY, ENABLE],
    }
}

fn missing<'a>(cmdline: &str, flags: &[&'a str]) -> Vec<&'a str> {
    flags
        .iter()
        .copied()
        .filter(|f| !cmdline.split_whitespace().any(|w| w == *f))
        .collect()
}

/// The command line with `flags` appended to its (only) line where absent;
/// everything already there is kept as it is.
pub fn with_flags(cmdline: &str, flags: &[&str]) -> String {
    let line = cmdline.lines().next().unwrap_or_default().trim_end();
    let add = missing(cmdline, flags);
    if add.is_empty() {
        return format!("{line}\n");
    }
    let sep = if line.is_empty() { "" } else { " " };
    format!("{line}{sep}{}\n", add.join(" "))
}

/// The pure decision: `controllers` are those the running kernel has on
/// (facts' cgroup v2 root, else cgroup v1's enabled ones).
pub fn assess(
    path: &str,
    cmdline: &str,
    controllers: &[String],
    kernel: &str,
) -> Check<PiCgroupsPlan> {
    let off: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|c| !controllers.iter().any(|have| have == c))
        .collect();
    if off.is_empty() {
        return Check::Converged;
    }
    if !off.contains(&"memory") {
        return Check::Blocked(format!(
            "kernel {kernel} has no {} cgroup controller, which K3s needs and {path} cannot turn on",
            off.join(", ")
        ));
    }
    let add = missing(cmdline, &memory_flags(kernel));
    if add.is_empty() {
        return Check::Blocked(format!(
            "{path} has {ENABLE} but kernel {kernel} booted without the memory cgroup controller (was the node rebooted since?)"
        ));
    }
    Check::Change(PiCgroupsPlan {
        path: path.to_string(),
        add,
        kernel: kernel.to_string(),
    })
}

impl Step for PiCgroups {
    const ID: StepId = StepId::PiCgroups;
    type Plan = PiCgroupsPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<PiCgroupsPlan> {
        let f = cx.facts;
        let Some((path, current)) = &f.boot_cmdline else {
            return Check::Skip("not a Raspberry Pi (no cmdline.txt)".into());
        };
        assess(path, current, &f.cgroup_controllers, &f.kernel)
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
            with_flags(current, &plan.add).as_bytes(),
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

    const PATH: &str = "/boot/firmware/cmdline.txt";
    const FRESH: &str = "console=serial0,115200 console=tty1 root=PARTUUID=abc rootfstype=ext4 fsck.repair=yes rootwait\n";

    fn on(list: &str) -> Vec<String> {
        list.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_pi_with_memory_on_and_no_flags_is_converged() {
        let all = on("cpuset cpu io memory pids");
        assert_eq!(
            assess(PATH, FRESH, &all, "6.12.25+rpt-rpi-v8"),
            Check::Converged
        );
        assert_eq!(
            assess(PATH, FRESH, &all, "6.6.51+rpt-rpi-v8"),
            Check::Converged
        );
    }

    #[test]
    fn memory_off_on_6_12_gets_only_cgroup_enable_memory() {
        let Check::Change(p) = assess(PATH, FRESH, &on("cpuset cpu io pids"), "6.12.25+rpt-rpi-v8")
        else {
            panic!("expected a change")
        };
        assert_eq!(p.add, ["cgroup_enable=memory"]);
        assert_eq!(p.changes()[1].what, "reboot");
        assert!(p.changes()[1].before.contains("6.12.25+rpt-rpi-v8"));
        let after = with_flags(FRESH, &p.add);
        assert!(
            after.ends_with("rootwait cgroup_enable=memory\n"),
            "{after}"
        );
        assert!(!after.contains("cgroup_memory"));
    }

    #[test]
    fn memory_off_on_6_6_gets_both_flags() {
        let Check::Change(p) = assess(PATH, FRESH, &on("cpuset cpu io pids"), "6.6.51+rpt-rpi-v8")
        else {
            panic!("expected a change")
        };
        assert_eq!(p.add, ["cgroup_memory=1", "cgroup_enable=memory"]);
        let partial = "console=tty1  root=/dev/mmcblk0p2\tcgroup_enable=memory rootwait";
        let Check::Change(p) = assess(PATH, partial, &on("cpuset cpu"), "6.6.51-v8+") else {
            panic!("expected a change")
        };
        assert_eq!(p.add, ["cgroup_memory=1"]);
        assert_eq!(
            with_flags(partial, &p.add),
            "console=tty1  root=/dev/mmcblk0p2\tcgroup_enable=memory rootwait cgroup_memory=1\n"
        );
    }

    #[test]
    fn memory_off_with_the_flags_after_the_reboot_is_blocked_naming_file_and_kernel() {
        let fixed = with_flags(FRESH, &["cgroup_enable=memory"]);
        let Check::Blocked(why) =
            assess(PATH, &fixed, &on("cpuset cpu pids"), "6.12.25+rpt-rpi-v8")
        else {
            panic!("expected blocked")
        };
        assert!(
            why.contains(PATH) && why.contains("6.12.25+rpt-rpi-v8"),
            "{why}"
        );
        let Check::Blocked(why) = assess(PATH, FRESH, &on("cpu memory"), "6.12.25") else {
            panic!("expected blocked")
        };
        assert!(why.contains("cpuset"), "{why}");
    }

    #[test]
    fn flags_follow_the_kernel_version_and_are_added_once() {
        assert_eq!(memory_flags("6.12.0"), ["cgroup_enable=memory"]);
        assert_eq!(memory_flags("7.0.1-v8"), ["cgroup_enable=memory"]);
        assert_eq!(
            memory_flags("6.11.9"),
            ["cgroup_memory=1", "cgroup_enable=memory"]
        );
        assert_eq!(
            memory_flags("5.15.84-v8+"),
            ["cgroup_memory=1", "cgroup_enable=memory"]
        );
        assert_eq!(
            memory_flags(""),
            ["cgroup_memory=1", "cgroup_enable=memory"]
        );
        let once = with_flags(FRESH, &memory_flags("6.6.51"));
        assert_eq!(
            with_flags(&once, &memory_flags("6.6.51")),
            once,
            "idempotent"
        );
        assert_eq!(once.lines().count(), 1);
    }
}
