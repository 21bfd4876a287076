//! Where the health agent's binary for a node comes from: a path per arch
//! from the inventory's `[agent] binaries`, or else the `pictl-agent` built
//! beside the running `pictl`, for nodes of the controller's own arch.
//! Cross-built binaries for the Pis are the operator's to provide.

use std::collections::BTreeMap;
use std::path::PathBuf;
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

/// The binary for `arch`, or why there is none (shown as the step's skip reason).
pub fn for_arch(settings: &AgentSettings, arch: Arch) -> Result<PathBuf, String> {
    if let Some(p) = settings.binaries.get(&arch) {
        return Ok(p.clone());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("pictl-agent")));
    match (host_arch() == Some(arch), beside) {
        (true, Some(p)) if p.is_file() => Ok(p),
        (true, _) => Err("no pictl-agent beside pictl (cargo build -p pictl-agent)".into()),
        (false, _) => Err(format!(
            "no pictl-agent for {arch}: build one (cargo zigbuild --release -p pictl-agent --target {}) and set [agent] binaries.{}",
            arch.musl_target(),
            arch.name()
        )),
    }
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
            Ok(AgentBinary {
                sha256: sha256_hex(&bytes),
                bytes: Arc::new(bytes),
            })
        });
    }
    out
}
