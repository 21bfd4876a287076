//! Where the health agent's binary for a node comes from, so that every node
//! gets one with no configuration: the inventory's `[agent] binaries` (an
//! override), else `pictl-agent-<arch>` beside the running `pictl` (what
//! `dist.sh` lays out for a release), else the host's own `pictl-agent`
//! beside it, else a cross build in the cargo target dir `pictl` was built
//! into (`target/<triple>/release/pictl-agent`). Every candidate is checked to
//! be an ELF binary for the node's arch before it is used, so a mislabelled
//! file is refused here rather than failing on the node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::arch::Arch;
use crate::artifacts::sha256_hex;
use crate::inventory::AgentSettings;

/// One agent binary, read and hashed once per run.
#[derive(Clone)]
pub struct AgentBinary {
    pub sha256: String,
    pub bytes: Arc<Vec<u8>>,
}

impl std::fmt::Debug for AgentBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBinary")
            .field("sha256", &self.sha256)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The controller's own arch, if K3s ships it.
fn host_arch() -> Option<Arch> {
    Arch::from_uname(std::env::consts::ARCH).ok()
}

/// Where to look for `arch`'s agent when the inventory names none, in order,
/// for a `pictl` at `exe` (pure, so the order is tested).
pub fn candidates(exe: &Path, arch: Arch, host: Option<Arch>) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut out = vec![dir.join(format!("pictl-agent-{}", arch.name()))];
    if host == Some(arch) {
        out.push(dir.join("pictl-agent"));
    }
    // `<target>/{debug,release}/pictl` → `<target>/<triple>/release/pictl-agent`.
    if let Some(target) = dir.parent() {
        out.extend(
            arch.rust_targets()
                .iter()
                .map(|t| target.join(t).join("release").join("pictl-agent")),
        );
    }
    out
}

/// The binary for `arch`, or why there is none (shown as the step's skip reason).
pub fn for_arch(settings: &AgentSettings, arch: Arch) -> Result<PathBuf, String> {
    if let Some(p) = settings.binaries.get(&arch) {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("no pictl-agent for {arch}: cannot locate pictl itself: {e}"))?;
    let looked = candidates(&exe, arch, host_arch());
    looked
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| missing(&looked, arch))
}

/// Why there is no agent for `arch`: where pictl looked, how to build one.
fn missing(looked: &[PathBuf], arch: Arch) -> String {
    let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
    format!(
        "no pictl-agent for {arch} (looked for {}): build it with {}, or set [agent] binaries.{}",
        looked.join(", "),
        arch.agent_build_hint(),
        arch.name()
    )
}

/// Why `bytes` are not a Linux executable for `arch`, if they are not.
pub fn check_elf(bytes: &[u8], arch: Arch) -> Result<(), String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    // e_machine is at offset 18, in the file's byte order (EI_DATA at 5).
    let m = [bytes[18], bytes[19]];
    let machine = if bytes[5] == 2 {
        u16::from_be_bytes(m)
    } else {
        u16::from_le_bytes(m)
    };
    if machine == arch.elf_machine() {
        return Ok(());
    }
    let found = Arch::ALL
        .into_iter()
        .find(|a| a.elf_machine() == machine)
        .map_or_else(|| format!("ELF machine {machine}"), |a| a.to_string());
    Err(format!("built for {found}, not {arch}"))
}

/// Reads each needed arch's binary once.
pub fn load(
    settings: &AgentSettings,
    arches: impl IntoIterator<Item = Arch>,
) -> BTreeMap<Arch, Result<AgentBinary, String>> {
    let mut out = BTreeMap::new();
    for arch in arches {
        out.entry(arch).or_insert_with(|| {
            let path = for_arch(settings, arch)?;
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            check_elf(&bytes, arch).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(AgentBinary {
                sha256: sha256_hex(&bytes),
                bytes: Arc::new(bytes),
            })
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_prefer_the_release_layout_then_the_cargo_target_dir() {
        let exe = Path::new("/t/debug/pictl");
        let got = candidates(exe, Arch::Arm64, Some(Arch::Amd64));
        assert_eq!(
            got,
            [
                "/t/debug/pictl-agent-arm64",
                "/t/aarch64-unknown-linux-musl/release/pictl-agent",
                "/t/aarch64-unknown-linux-gnu/release/pictl-agent",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn the_hosts_own_agent_beside_pictl_serves_only_the_hosts_arch() {
        let exe = Path::new("/opt/pictl/pictl");
        let amd = candidates(exe, Arch::Amd64, Some(Arch::Amd64));
        assert_eq!(amd[1], PathBuf::from("/opt/pictl/pictl-agent"));
        let arm = candidates(exe, Arch::Armhf, Some(Arch::Amd64));
        assert!(!arm.contains(&PathBuf::from("/opt/pictl/pictl-agent")));
    }

    fn elf(machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b
    }

    #[test]
    fn elf_check_refuses_a_binary_of_another_arch_naming_it() {
        assert_eq!(check_elf(&elf(183), Arch::Arm64), Ok(()));
        assert_eq!(
            check_elf(&elf(62), Arch::Arm64),
            Err("built for amd64, not arm64".into())
        );
        assert!(check_elf(b"#!/bin/sh\n", Arch::Amd64).is_err());
    }

    #[test]
    fn missing_agent_names_where_it_looked_and_how_to_build_it() {
        for arch in Arch::ALL {
            let looked = candidates(Path::new("/opt/pictl/bin/pictl"), arch, None);
            let e = missing(&looked, arch);
            assert!(e.contains("looked for /opt/pictl/bin/pictl-agent-"), "{e}");
            assert!(e.contains("./dist.sh"), "{e}");
            assert!(e.contains(&format!("binaries.{}", arch.name())), "{e}");
        }
    }
}
