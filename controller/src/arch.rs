//! CPU architectures as K3s names them, and the mapping from `uname -m`.
//!
//! This is where the playson incident (an amd64-only image on arm64 Pis)
//! starts to be prevented: every node's arch is known before anything runs.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
    Armhf,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::Amd64, Arch::Arm64, Arch::Armhf];

    /// K3s's name (`kubernetes.io/arch` uses `arm` for armhf).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Armhf => "armhf",
        }
    }

    /// The release asset holding the k3s binary for this arch.
    pub fn k3s_asset(self) -> &'static str {
        match self {
            Arch::Amd64 => "k3s",
            Arch::Arm64 => "k3s-arm64",
            Arch::Armhf => "k3s-armhf",
        }
    }

    /// The release asset of K3s's own images for this arch (listed in the
    /// same checksum file; K3s calls armhf `arm` there).
    pub fn airgap_asset(self) -> &'static str {
        match self {
            Arch::Amd64 => "k3s-airgap-images-amd64.tar.zst",
            Arch::Arm64 => "k3s-airgap-images-arm64.tar.zst",
            Arch::Armhf => "k3s-airgap-images-arm.tar.zst",
        }
    }

    /// The release's checksum file covering [`Arch::k3s_asset`].
    pub fn checksum_asset(self) -> &'static str {
        match self {
            Arch::Amd64 => "sha256sum-amd64.txt",
            Arch::Arm64 => "sha256sum-arm64.txt",
            Arch::Armhf => "sha256sum-arm.txt",
        }
    }

    /// The Rust targets an agent for this arch can be built for, preferred
    /// first (static musl; the glibc ones are built with `+crt-static` by
    /// `dist.sh`). Where pictl looks for `target/<triple>/release/pictl-agent`.
    pub fn rust_targets(self) -> &'static [&'static str] {
        match self {
            Arch::Amd64 => &["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"],
            Arch::Arm64 => &["aarch64-unknown-linux-musl", "aarch64-unknown-linux-gnu"],
            Arch::Armhf => &[
                "armv7-unknown-linux-musleabihf",
                "armv7-unknown-linux-gnueabihf",
            ],
        }
    }

    /// The ELF `e_machine` of binaries for this arch (EM_X86_64, EM_AARCH64,
    /// EM_ARM): an agent binary is checked against it before it is installed.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
            Arch::Armhf => 40,
        }
    }

    /// How to build this arch's agent, for messages.
    pub fn agent_build_hint(self) -> String {
        format!(
            "./dist.sh {} (after rustup target add {})",
            self.name(),
            self.rust_targets()[0]
        )
    }

    /// Maps `uname -m`; armv6 and unknown machines are refused with the reason.
    pub fn from_uname(machine: &str) -> Result<Arch, String> {
        match machine.trim() {
            "x86_64" | "amd64" => Ok(Arch::Amd64),
            "aarch64" | "arm64" | "armv8l" => Ok(Arch::Arm64),
            "armv7l" | "armv7" | "armhf" => Ok(Arch::Armhf),
            m @ ("armv6l" | "armv6") => Err(format!(
                "{m} (ARMv6, e.g. a Raspberry Pi Zero or 1) is not supported by K3s"
            )),
            "" => Err("the machine type is empty (uname -m printed nothing)".to_string()),
            m => Err(format!(
                "{m} is not an architecture K3s ships (amd64, arm64, armhf)"
            )),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            "armhf" | "arm" => Ok(Arch::Armhf),
            _ => Err(format!("unknown arch \"{s}\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_maps_to_k3s_names() {
        assert_eq!(Arch::from_uname("x86_64\n"), Ok(Arch::Amd64));
        assert_eq!(Arch::from_uname("aarch64"), Ok(Arch::Arm64));
        assert_eq!(Arch::from_uname("armv7l"), Ok(Arch::Armhf));
        assert_eq!(Arch::Armhf.checksum_asset(), "sha256sum-arm.txt");
    }

    #[test]
    fn armv6_and_unknown_are_refused_with_a_reason() {
        assert!(
            Arch::from_uname("armv6l")
                .unwrap_err()
                .contains("not supported by K3s")
        );
        assert!(Arch::from_uname("riscv64").unwrap_err().contains("riscv64"));
    }
}
