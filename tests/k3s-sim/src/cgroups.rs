//! K3s's cgroup checks, run before anything else at `k3s server` and `k3s agent`
//! start (pkg/agent/run.go calls pkg/cgroups/cgroups_linux.go `Validate`), plus the
//! warnings pkg/daemons/agent/agent_linux.go logs when pids or CPU quotas are
//! missing. cgroup v2 (a `cgroup.controllers` file at the root): cpu, cpuset and
//! memory are required (`validateCgroupsV2`). v1: `/proc/self/cgroup` must name
//! memory, cpuset is only warned about (`validateCgroupsV1`).
//!
//! The simulator reads the controllers as K3s does and knows nothing of
//! Raspberry Pis or `cmdline.txt`: the lab models a Pi's kernel (tests/lab/README.md,
//! "Raspberry Pi kernels"), hiding the memory controller of a Pi node that booted
//! without `cgroup_enable=memory`.

use crate::host;
use anyhow::{Result, anyhow, bail};

const V1_MEMORY: &str = "ailed to find memory cgroup, you may need to add \"cgroup_memory=1 cgroup_enable=memory\" to your linux cmdline (/boot/cmdline.txt on a Raspberry Pi)";

/// What `Validate` concluded, for `check-config`.
pub struct Report {
    pub v2: bool,
    pub missing: Vec<&'static str>,
}

pub fn inspect() -> Result<Report> {
    let root = host::path("/sys/fs/cgroup/cgroup.controllers");
    if root.exists() {
        let text =
            std::fs::read_to_string(&root).map_err(|e| anyhow!("open {}: {e}", root.display()))?;
        let has = |c: &str| text.split_whitespace().any(|w| w == c);
        let missing = ["cpu", "cpuset", "memory", "pids"]
            .into_iter()
            .filter(|c| !has(c))
            .collect();
        return Ok(Report { v2: true, missing });
    }
    let p = host::path("/proc/self/cgroup");
    let text = std::fs::read_to_string(&p).map_err(|e| anyhow!("open {}: {e}", p.display()))?;
    let text = without_disabled(&text, &disabled_v1());
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

/// The controllers the kernel lists as disabled (`enabled` 0 in `/proc/cgroups`,
/// as `cgroup_disable=` leaves them). Not K3s: a kernel has no hierarchy for a
/// disabled controller, so its `/proc/self/cgroup` never names one; the lab's
/// nodes share the host's kernel, whose `/proc/self/cgroup` cannot be changed
/// per node, so the lab hides a Pi's memory controller in `/proc/cgroups` only
/// and the simulator reads `/proc/self/cgroup` as that kernel would write it.
fn disabled_v1() -> Vec<String> {
    let text = std::fs::read_to_string(host::path("/proc/cgroups")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[3] == "0").then(|| f[0].to_string())
        })
        .collect()
}

/// `/proc/self/cgroup` without the hierarchies of `disabled` controllers.
fn without_disabled(text: &str, disabled: &[String]) -> String {
    text.lines()
        .filter(|l| {
            !l.split(':')
                .nth(1)
                .is_some_and(|cs| cs.split(',').any(|c| disabled.iter().any(|d| d == c)))
        })
        .map(|l| format!("{l}\n"))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_controllers_have_no_line_in_self_cgroup() {
        let own = "5:pids:/\n4:memory:/x\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n";
        let off = vec!["memory".to_string()];
        assert_eq!(
            without_disabled(own, &off),
            "5:pids:/\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n"
        );
        assert_eq!(without_disabled(own, &[]), own);
    }
}
