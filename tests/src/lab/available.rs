//! Whether the lab can run here (root, the tools it needs, arm64's
//! qemu-user), and skipping its tests with the reason outside CI.

use std::fs;
use std::path::{Path, PathBuf};

use super::tool;

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Why the lab cannot be created on this machine, or None when it can.
pub fn lab_unavailable_reason() -> Option<String> {
    if effective_uid() != Some(0) {
        return Some("the lab needs root (network namespaces, mounts, systemd-nspawn)".into());
    }
    let cache_present = std::env::var_os("PICTL_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pictl-lab/bookworm-base.tar"))
        .is_file();
    let mut needed = vec![
        "systemd-nspawn",
        "ip",
        "ssh",
        "ssh-keygen",
        "flock",
        "setsid",
    ];
    if !cache_present {
        needed.push("debootstrap");
    }
    let missing: Vec<&str> = needed.into_iter().filter(|t| !which(t)).collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing host tools: {} (run tests/lab/install-deps.sh)",
            missing.join(", ")
        ));
    }
    if !tool().is_file() {
        return Some(format!("lab tool not found at {}", tool().display()));
    }
    None
}

/// Why arm64 nodes cannot run here (qemu-aarch64 not registered with
/// binfmt_misc, or without the C flag sudo needs), or None when they can.
pub fn arm64_unavailable_reason() -> Option<String> {
    let entry = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let Ok(text) = fs::read_to_string(entry) else {
        return Some(
            "qemu-aarch64 is not registered in binfmt_misc (run tests/lab/install-deps.sh)".into(),
        );
    };
    if !text.lines().any(|l| l == "enabled") {
        return Some("binfmt qemu-aarch64 is disabled (run tests/lab/install-deps.sh)".into());
    }
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .unwrap_or("");
    if !flags.contains('C') {
        return Some(format!(
            "binfmt qemu-aarch64 has flags {flags:?}, without C sudo fails in arm64 nodes (run tests/lab/install-deps.sh)"
        ));
    }
    None
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// Decide whether a lab test may run. True when the lab can be created. When it
/// cannot: in CI (`CI=true`) this panics, so lab tests never silently pass
/// there; elsewhere it prints `SKIPPED: <reason>` and returns false, and the
/// test should return.
pub fn lab_or_skip() -> bool {
    match lab_unavailable_reason() {
        None => true,
        Some(reason) if in_ci() => {
            panic!("the lab is required in CI (CI=true) but cannot be created: {reason}")
        }
        Some(reason) => {
            println!("SKIPPED: {reason}");
            false
        }
    }
}

/// [`lab_or_skip`] for arm64 nodes (qemu-user through binfmt_misc).
pub fn arm64_or_skip() -> bool {
    match arm64_unavailable_reason() {
        None => true,
        Some(reason) if in_ci() => {
            panic!("arm64 lab nodes are required in CI (CI=true) but cannot run: {reason}")
        }
        Some(reason) => {
            println!("SKIPPED: {reason}");
            false
        }
    }
}
