//! The leak check after `lab down`, from the kernel's own tables.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::state_dir;

/// Everything instance `id` could have left on the host: network namespaces,
/// links (bridge, veths), the routing rule, mounts under its state dir, its
/// cgroups, and processes (by cgroup, by command line). Empty when clean.
/// Checked from the kernel's own tables, not from the tool's state files.
pub fn leaks(id: u32) -> Vec<String> {
    let mut found = Vec::new();
    let ns_prefix = format!("pictl{id}-node");
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let node = name
                .strip_prefix(&ns_prefix)
                .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()));
            // `lab host`'s extra namespaces.
            if node || name.starts_with(&format!("pictl{id}-x-")) {
                found.push(format!("netns {name}"));
            }
        }
    }
    let bridge = format!("pictl{id}");
    let veth_prefix = format!("pictl{id}n");
    if let Ok(entries) = fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let veth = name.strip_prefix(&veth_prefix).is_some_and(|r| {
                let r = r.strip_suffix('p').unwrap_or(r);
                !r.is_empty() && r.chars().all(|c| c.is_ascii_digit())
            });
            let veth = veth || name.starts_with(&format!("pictl{id}x"));
            if name == bridge || veth {
                found.push(format!("link {name}"));
            }
        }
    }
    if let Ok(out) = Command::new("ip")
        .args(["rule", "show", "priority", &(17700 + id).to_string()])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.trim().is_empty() {
            found.push(format!("ip rule {}", text.trim()));
        }
    }
    let dir = state_dir(id);
    let dir_prefix = format!("{}/", dir.display());
    if let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") {
        for line in mounts.lines() {
            if let Some(point) = line.split(' ').nth(4)
                && point.starts_with(&dir_prefix)
            {
                found.push(format!("mount {point}"));
            }
        }
    }
    let cg_name = format!("pictl-lab{id}");
    let mut cg_roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        cg_roots.extend(entries.flatten().map(|e| e.path()));
    }
    for root in cg_roots {
        let cg = root.join(&cg_name);
        if cg.is_dir() {
            found.push(format!("cgroup {}", cg.display()));
        }
    }
    let cg_marker = format!("/{cg_name}/");
    let cg_end = format!("/{cg_name}");
    let launcher = format!("--id {id} _run ");
    let me = std::process::id().to_string();
    if let Ok(procs) = fs::read_dir("/proc") {
        for p in procs.flatten() {
            let pid = p.file_name().to_string_lossy().into_owned();
            if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
                continue;
            }
            let base = p.path();
            let zombie = fs::read_to_string(base.join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(") ")
                        .map(|(_, r)| r.starts_with('Z') || r.starts_with('X'))
                })
                .unwrap_or(true);
            if zombie {
                continue;
            }
            let cmdline = fs::read(base.join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let cgroups = fs::read_to_string(base.join("cgroup")).unwrap_or_default();
            let in_cg = cgroups
                .lines()
                .any(|l| l.contains(&cg_marker) || l.ends_with(&cg_end));
            if in_cg || cmdline.contains(&dir_prefix) || cmdline.contains(&launcher) {
                found.push(format!("process {pid}: {}", cmdline.trim()));
            }
        }
    }
    found
}
