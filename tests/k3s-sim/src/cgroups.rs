//! K3s's cgroup checks, run before anything else at `k3s server` and `k3s agent`
//! start (pkg/agent/run.go calls pkg/cgroups/cgroups_linux.go `Validate`), plus the
//! warnings pkg/daemons/agent/agent_linux.go logs when pids or CPU quotas are
//! missing. cgroup v2 (a `cgroup.controllers` file at the root): cpu, cpuset and
//! memory are required. v1: memory is required, cpuset only warned about.
//!
//! The lab's Raspberry Pi nodes are containers on a PC kernel, so the simulator
//! also models the one part of a Pi's kernel that matters to K3s: Raspberry Pi OS
//! boots with the memory controller off unless the command line it booted with
//! (`cmdline.txt`) says `cgroup_enable=memory`. Editing the file changes nothing
//! until the node reboots.

use crate::host;
use anyhow::{Result, anyhow, bail};
use std::time::SystemTime;

const V1_MEMORY: &str = "ailed to find memory cgroup, you may need to add \"cgroup_memory=1 cgroup_enable=memory\" to your linux cmdline (/boot/cmdline.txt on a Raspberry Pi)";

/// What `Validate` concluded, for `check-config`.
pub struct Report {
    pub v2: bool,
    pub missing: Vec<&'static str>,
}

pub fn inspect() -> Result<Report> {
    let root = host::path("/sys/fs/cgroup/cgroup.controllers");
    let pi_memory_off = pi_memory_off();
    if root.exists() {
        let text =
            std::fs::read_to_string(&root).map_err(|e| anyhow!("open {}: {e}", root.display()))?;
        let has =
            |c: &str| !(c == "memory" && pi_memory_off) && text.split_whitespace().any(|w| w == c);
        let missing = ["cpu", "cpuset", "memory", "pids"]
            .into_iter()
            .filter(|c| !has(c))
            .collect();
        return Ok(Report { v2: true, missing });
    }
    let p = host::path("/proc/self/cgroup");
    let text = std::fs::read_to_string(&p).map_err(|e| anyhow!("open {}: {e}", p.display()))?;
    let text: String = text
        .lines()
        .filter(|l| !(pi_memory_off && l.split(':').nth(1).is_some_and(|c| c.contains("memory"))))
        .map(|l| format!("{l}\n"))
        .collect();
    let has_controller = |c: &str| {
        text.lines().any(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|cs| cs.split(',').any(|x| x == c))
        })
    };
    let mut missing = Vec::new();
    // K3s's v1 test is a substring match on the whole file.
    if !text.contains("cpuset") {
        missing.push("cpuset");
    }
    if !text.contains("memory") {
        missing.push("memory");
    }
    if !has_controller("pids") {
        missing.push("pids");
    }
    if !has_controller("cpu") {
        missing.push("cpu");
    }
    Ok(Report { v2: false, missing })
}

/// K3s's `Validate` and the kubelet-arg warnings: fatal errors carry K3s's messages.
pub fn validate() -> Result<()> {
    let r = inspect()?;
    if r.v2 {
        for c in ["cpu", "cpuset", "memory"] {
            if r.missing.contains(&c) {
                bail!("failed to find {c} cgroup (v2)");
            }
        }
    } else {
        if r.missing.contains(&"cpuset") {
            crate::warn!(
                "Failed to find cpuset cgroup, you may need to add \"cgroup_enable=cpuset\" to your linux cmdline (/boot/cmdline.txt on a Raspberry Pi)"
            );
        }
        if r.missing.contains(&"memory") {
            crate::error!("F{V1_MEMORY}");
            bail!("f{V1_MEMORY}");
        }
        if r.missing.contains(&"cpu") {
            crate::warn!("Disabling CPU quotas due to missing cpu.cfs_period_us");
        }
    }
    if r.missing.contains(&"pids") {
        crate::warn!("Disabling pod PIDs limit feature due to missing cgroup pids support");
    }
    Ok(())
}

/// The command line files a Pi's firmware reads, newest layout first.
const CMDLINE_FILES: [&str; 2] = ["/boot/firmware/cmdline.txt", "/boot/cmdline.txt"];
/// Where the line seen in this boot is remembered (`/run` is emptied by a reboot).
const BOOTED: &str = "/run/k3s-sim/booted-cmdline";

fn is_pi() -> bool {
    host::path("/etc/rpi-issue").exists()
        || std::fs::read_to_string(host::path("/proc/device-tree/model"))
            .is_ok_and(|m| m.starts_with("Raspberry Pi"))
}

/// True on a Raspberry Pi whose booted command line leaves the memory controller off.
pub fn pi_memory_off() -> bool {
    if !is_pi() {
        return false;
    }
    let Some(file) = CMDLINE_FILES
        .iter()
        .map(|f| host::path(f))
        .find(|p| p.exists())
    else {
        return false;
    };
    let booted = host::path(BOOTED);
    let line = match std::fs::read_to_string(&booted) {
        Ok(l) => l,
        Err(_) => {
            let changed_since_boot = match (
                std::fs::metadata(&file).and_then(|m| m.modified()),
                boot_time(),
            ) {
                (Ok(mtime), Some(boot)) => mtime > boot,
                _ => false,
            };
            if changed_since_boot {
                // The kernel runs the line it booted with, which the simulator never saw:
                // a Pi is first booted without the flag, so assume it is not there.
                String::new()
            } else {
                let l = std::fs::read_to_string(&file).unwrap_or_default();
                if let Some(dir) = booted.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(&booted, &l);
                l
            }
        }
    };
    !memory_enabled(&line)
}

/// The last of `cgroup_enable=memory` / `cgroup_disable=memory` wins; Raspberry Pi
/// OS's default (with neither) is off.
pub fn memory_enabled(cmdline: &str) -> bool {
    let mut on = false;
    for w in cmdline.split_whitespace() {
        match w {
            "cgroup_enable=memory" => on = true,
            "cgroup_disable=memory" => on = false,
            _ => {}
        }
    }
    on
}

/// When PID 1 of this node (its systemd; in a container, the container's) started:
/// now minus the kernel's uptime gives the kernel's boot to 10 ms (`btime` in
/// /proc/stat is truncated to the second), plus PID 1's start in clock ticks.
fn boot_time() -> Option<SystemTime> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let one = std::fs::read_to_string("/proc/1/stat").ok()?;
    let rest = &one[one.rfind(')')? + 1..];
    // Field 22 (starttime, in clock ticks of 1/100 s on Linux); `rest` starts at field 3.
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let kernel_boot = SystemTime::now().checked_sub(std::time::Duration::from_secs_f64(uptime))?;
    Some(kernel_boot + std::time::Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_memory_follows_the_last_cgroup_flag() {
        assert!(!memory_enabled("console=tty1 root=PARTUUID=1 rootwait"));
        assert!(memory_enabled(
            "console=tty1 cgroup_memory=1 cgroup_enable=memory"
        ));
        assert!(!memory_enabled(
            "cgroup_enable=memory cgroup_disable=memory"
        ));
        assert!(!memory_enabled("cgroup_memory=1"));
    }

    #[test]
    fn boot_time_is_in_the_past() {
        if let Some(b) = boot_time() {
            assert!(b <= SystemTime::now());
        }
    }
}
