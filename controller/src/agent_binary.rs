//! Where the health agent's binary for a node comes from, so that every node
//! gets one with no configuration: the inventory's `[agent] binaries` (an
//! override), else `pictl-agent-<arch>` beside the running `pictl` (what
//! `dist.sh` lays out for a release), else the host's own `pictl-agent`
//! beside it, else a cross build in the cargo target dir `pictl` was built
//! into (`target/<triple>/release/pictl-agent`). Every candidate is checked to
//! be an ELF binary for the node's arch before it is used, so a mislabelled
//! file is refused here rather than failing on the node; and to be linked
//! statically, since an agent linked against the build machine's glibc does
//! not start on a Pi whose C library is older. The one dynamically linked
//! agent accepted is the host's own `pictl-agent` beside `pictl` for the
//! host's arch (what `cargo build` and `cargo install --path agent` make, and
//! what the lab's amd64 nodes run): built on this machine for its own arch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::arch::Arch;
use crate::artifacts::sha256_hex;
use crate::inventory::AgentSettings;

/// Why a node has no agent binary this run (the node's agent step is
/// skipped with it; the rest of the run goes on).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentBinaryError {
    /// None found: where pictl looked and how to build one.
    #[error("{0}")]
    NotFound(String),
    /// Found but not readable.
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// Not an agent for the node: another arch, not ELF, or linked
    /// dynamically where it would not start.
    #[error("{}: {why}", path.display())]
    Refused { path: PathBuf, why: String },
    /// No binary was loaded for the node's arch.
    #[error("no agent binary for {0}")]
    NotLoaded(Arch),
}

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

/// Where an agent binary was found: the host's own build may be linked
/// dynamically, nothing else may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `pictl-agent` beside `pictl`, for the host's arch: a `cargo build` or
    /// `cargo install` on this machine, for this machine's arch.
    HostBuild,
    /// The inventory's `[agent] binaries`, a release's `pictl-agent-<arch>`
    /// or a cross build: meant for any node of that arch.
    Shipped,
}

/// The binary for `arch` and where it came from, or why there is none
/// (shown as the step's skip reason).
pub fn for_arch(settings: &AgentSettings, arch: Arch) -> Result<(PathBuf, Origin), String> {
    if let Some(p) = settings.binaries.get(&arch) {
        return Ok((p.clone(), Origin::Shipped));
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("no pictl-agent for {arch}: cannot locate pictl itself: {e}"))?;
    let looked = candidates(&exe, arch, host_arch());
    let found = looked
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| missing(&looked, arch))?;
    let host_build = exe.parent().map(|d| d.join("pictl-agent"));
    let origin = if host_build.as_ref() == Some(found) {
        Origin::HostBuild
    } else {
        Origin::Shipped
    };
    Ok((found.clone(), origin))
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

/// How an ELF executable is linked: with a program interpreter (the C
/// library's dynamic loader, `PT_INTERP`), or on its own. A static-pie
/// binary (musl's, or glibc's with `crt-static`) has a `PT_DYNAMIC` segment
/// for its own relocations but no interpreter: static.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Linkage {
    Static,
    Dynamic { interpreter: String },
}

const PT_INTERP: u32 = 3;

/// The fields of an ELF file this check reads, in the file's class and
/// byte order.
struct ElfReader<'a> {
    bytes: &'a [u8],
    wide: bool,
    big_endian: bool,
}

impl ElfReader<'_> {
    fn uint(&self, at: usize, len: usize) -> Option<u64> {
        let field = self.bytes.get(at..at.checked_add(len)?)?;
        let mut v: u64 = 0;
        for i in 0..len {
            let b = if self.big_endian {
                field[i]
            } else {
                field[len - 1 - i]
            };
            v = (v << 8) | u64::from(b);
        }
        Some(v)
    }

    /// An address-sized field (8 bytes in ELF64, 4 in ELF32).
    fn word(&self, at64: usize, at32: usize) -> Option<usize> {
        let v = if self.wide {
            self.uint(at64, 8)?
        } else {
            self.uint(at32, 4)?
        };
        usize::try_from(v).ok()
    }

    fn half(&self, at64: usize, at32: usize) -> Option<usize> {
        let at = if self.wide { at64 } else { at32 };
        usize::try_from(self.uint(at, 2)?).ok()
    }

    /// The program interpreter's path, if a `PT_INTERP` header names one.
    fn interpreter(&self) -> Option<Result<String, String>> {
        let truncated = || Some(Err("truncated ELF program headers".to_string()));
        let (Some(phoff), Some(phentsize), Some(phnum)) = (
            self.word(0x20, 0x1c),
            self.half(0x36, 0x2a),
            self.half(0x38, 0x2c),
        ) else {
            return truncated();
        };
        for n in 0..phnum {
            let Some(ph) = phentsize.checked_mul(n).and_then(|o| o.checked_add(phoff)) else {
                return truncated();
            };
            let Some(kind) = self.uint(ph, 4) else {
                return truncated();
            };
            if kind != u64::from(PT_INTERP) {
                continue;
            }
            let (Some(offset), Some(size)) =
                (self.word(ph + 8, ph + 4), self.word(ph + 32, ph + 16))
            else {
                return truncated();
            };
            let path = offset
                .checked_add(size)
                .and_then(|end| self.bytes.get(offset..end))
                .map(|p| {
                    String::from_utf8_lossy(p)
                        .trim_end_matches('\0')
                        .to_string()
                });
            return Some(path.ok_or_else(|| "truncated ELF interpreter path".to_string()));
        }
        None
    }
}

/// Why `bytes` are not a Linux executable for `arch`, if they are not; else
/// how they are linked.
pub fn check_elf(bytes: &[u8], arch: Arch) -> Result<Linkage, String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    let elf = ElfReader {
        bytes,
        wide: bytes[4] == 2,
        big_endian: bytes[5] == 2,
    };
    // e_machine is at offset 18, in the file's byte order (EI_DATA at 5).
    let machine = elf.uint(18, 2).unwrap_or_default();
    if machine != u64::from(arch.elf_machine()) {
        let found = Arch::ALL
            .into_iter()
            .find(|a| u64::from(a.elf_machine()) == machine)
            .map_or_else(|| format!("ELF machine {machine}"), |a| a.to_string());
        return Err(format!("built for {found}, not {arch}"));
    }
    match elf.interpreter() {
        None => Ok(Linkage::Static),
        Some(Ok(interpreter)) => Ok(Linkage::Dynamic { interpreter }),
        Some(Err(e)) => Err(e),
    }
}

/// Whether an agent found at `origin`, linked as `linkage`, may go to the
/// nodes of `arch`: a dynamically linked one only when it is the host's own
/// build; otherwise the refusal names the command that builds a static one.
pub fn accept(linkage: &Linkage, origin: Origin, arch: Arch) -> Result<(), String> {
    match (linkage, origin) {
        (Linkage::Static, _) | (Linkage::Dynamic { .. }, Origin::HostBuild) => Ok(()),
        (Linkage::Dynamic { interpreter }, Origin::Shipped) => Err(format!(
            "dynamically linked (interpreter {interpreter}): it starts only on nodes whose \
             C library matches the build machine's; build a static agent with \
             ./dist.sh --agents-only {} (after rustup target add {})",
            arch.name(),
            arch.rust_targets()[0]
        )),
    }
}

/// Reads each needed arch's binary once.
pub fn load(
    settings: &AgentSettings,
    arches: impl IntoIterator<Item = Arch>,
) -> BTreeMap<Arch, Result<AgentBinary, AgentBinaryError>> {
    let mut out = BTreeMap::new();
    for arch in arches {
        out.entry(arch).or_insert_with(|| {
            let (path, origin) = for_arch(settings, arch).map_err(AgentBinaryError::NotFound)?;
            let bytes = std::fs::read(&path).map_err(|e| AgentBinaryError::Unreadable {
                path: path.clone(),
                source: Arc::new(e),
            })?;
            check_elf(&bytes, arch)
                .and_then(|linkage| accept(&linkage, origin, arch))
                .map_err(|why| AgentBinaryError::Refused { path, why })?;
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
        assert_eq!(check_elf(&elf(183), Arch::Arm64), Ok(Linkage::Static));
        assert_eq!(
            check_elf(&elf(62), Arch::Arm64),
            Err("built for amd64, not arm64".into())
        );
        assert!(check_elf(b"#!/bin/sh\n", Arch::Amd64).is_err());
    }

    /// A little-endian ELF executable for `machine` (ELF64 when `wide`, else
    /// ELF32) whose program headers are `segments` (p_type, contents): what
    /// the linkage check reads, and nothing else.
    fn elf_with(wide: bool, machine: u16, segments: &[(u32, &[u8])]) -> Vec<u8> {
        let (ehsize, phentsize) = if wide { (64, 56) } else { (52, 32) };
        let data_at = ehsize + phentsize * segments.len();
        let mut b = vec![0u8; data_at];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = if wide { 2 } else { 1 };
        b[5] = 1;
        b[16] = 2; // ET_EXEC
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        let put = |b: &mut Vec<u8>, at: usize, v: usize, len: usize| {
            b[at..at + len].copy_from_slice(&v.to_le_bytes()[..len]);
        };
        let word = if wide { 8 } else { 4 };
        put(&mut b, if wide { 0x20 } else { 0x1c }, ehsize, word);
        put(&mut b, if wide { 0x36 } else { 0x2a }, phentsize, 2);
        put(&mut b, if wide { 0x38 } else { 0x2c }, segments.len(), 2);
        for (n, (kind, contents)) in segments.iter().enumerate() {
            let ph = ehsize + phentsize * n;
            let offset = b.len();
            b.extend_from_slice(contents);
            put(&mut b, ph, *kind as usize, 4);
            put(&mut b, ph + if wide { 8 } else { 4 }, offset, word);
            put(
                &mut b,
                ph + if wide { 32 } else { 16 },
                contents.len(),
                word,
            );
        }
        b
    }

    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;

    #[test]
    fn an_interpreter_header_makes_an_agent_dynamic_in_both_elf_classes() {
        let glibc64: &[u8] = b"/lib/ld-linux-aarch64.so.1\0";
        let arm64 = elf_with(
            true,
            183,
            &[(PT_LOAD, b""), (PT_INTERP, glibc64), (PT_DYNAMIC, b"")],
        );
        assert_eq!(
            check_elf(&arm64, Arch::Arm64),
            Ok(Linkage::Dynamic {
                interpreter: "/lib/ld-linux-aarch64.so.1".into()
            })
        );
        let glibc32: &[u8] = b"/lib/ld-linux-armhf.so.3\0";
        let armhf = elf_with(false, 40, &[(PT_INTERP, glibc32), (PT_LOAD, b"")]);
        assert_eq!(
            check_elf(&armhf, Arch::Armhf),
            Ok(Linkage::Dynamic {
                interpreter: "/lib/ld-linux-armhf.so.3".into()
            })
        );
    }

    #[test]
    fn static_and_static_pie_agents_are_static_in_both_elf_classes() {
        // musl's static-pie: its own relocations (PT_DYNAMIC), no loader.
        for wide in [true, false] {
            let machine = if wide { 183 } else { 40 };
            let arch = if wide { Arch::Arm64 } else { Arch::Armhf };
            let plain = elf_with(wide, machine, &[(PT_LOAD, b"")]);
            assert_eq!(check_elf(&plain, arch), Ok(Linkage::Static));
            let pie = elf_with(wide, machine, &[(PT_LOAD, b""), (PT_DYNAMIC, b"")]);
            assert_eq!(check_elf(&pie, arch), Ok(Linkage::Static));
        }
    }

    #[test]
    fn program_headers_past_the_end_of_the_file_are_refused() {
        let mut cut = elf_with(true, 62, &[(PT_LOAD, b""), (PT_INTERP, b"/lib64/ld\0")]);
        cut.truncate(64 + 56 + 10);
        assert_eq!(
            check_elf(&cut, Arch::Amd64),
            Err("truncated ELF program headers".into())
        );
    }

    #[test]
    fn a_dynamic_agent_is_refused_with_the_static_build_command_unless_the_hosts_own() {
        let dynamic = Linkage::Dynamic {
            interpreter: "/lib/ld-linux-aarch64.so.1".into(),
        };
        let e = accept(&dynamic, Origin::Shipped, Arch::Arm64).expect_err("refused");
        assert!(e.contains("dynamically linked"), "{e}");
        assert!(e.contains("/lib/ld-linux-aarch64.so.1"), "{e}");
        assert!(
            e.contains(
                "./dist.sh --agents-only arm64 (after rustup target add aarch64-unknown-linux-musl)"
            ),
            "{e}"
        );
        assert_eq!(accept(&dynamic, Origin::HostBuild, Arch::Arm64), Ok(()));
        assert_eq!(
            accept(&Linkage::Static, Origin::Shipped, Arch::Arm64),
            Ok(())
        );
    }

    #[test]
    fn a_binary_built_on_this_machine_with_cargo_is_dynamic() {
        // This test binary is a plain `cargo build` of the host: glibc's loader.
        let exe = std::env::current_exe().expect("current exe");
        let bytes = std::fs::read(&exe).expect("read the test binary");
        let arch = Arch::from_uname(std::env::consts::ARCH).expect("a K3s arch");
        let linkage = check_elf(&bytes, arch).expect("an ELF for this arch");
        assert!(
            matches!(&linkage, Linkage::Dynamic { interpreter } if interpreter.contains("ld-")),
            "{linkage:?}"
        );
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
