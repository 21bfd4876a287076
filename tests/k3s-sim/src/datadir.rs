//! K3s's first start: the `k3s` binary carries its userspace (containerd, runc,
//! CNI plugins, ...) as an archive and unpacks it under `<data-dir>/data/<hash>`
//! before the server or agent runs (cmd/k3s/main.go `extract`), logging
//! "Acquiring lock file" and "Preparing data dir". On a Raspberry Pi writing that
//! to an SD card takes minutes, which is what a first start's deadline must allow
//! for. The simulator has nothing to unpack; `K3S_SIM_UNPACK_DELAY` (a Go
//! duration such as `90s`, default none) makes the first start of each version
//! that slow. Later starts of the same version find the directory and skip it.
//! Its `bin/aux` holds K3s's iptables tools (see `xtables`).

use anyhow::{Context, Result, anyhow};
use std::path::Path;

pub const DELAY_ENV: &str = "K3S_SIM_UNPACK_DELAY";

pub fn prepare(data_dir: &Path) -> Result<()> {
    use sha2::Digest;
    let id = hex::encode(sha2::Sha256::digest(
        format!("{} {}", crate::version::version(), crate::version::commit()).as_bytes(),
    ));
    let data = data_dir.join("data");
    let dir = data.join(&id);
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    crate::info!("Acquiring lock file {}", data.join(".lock").display());
    crate::info!("Preparing data dir {}", dir.display());
    let delay = match std::env::var(DELAY_ENV) {
        Ok(v) if !v.is_empty() => crate::config::parse_duration(&v)
            .ok_or_else(|| anyhow!("invalid {DELAY_ENV}={v:?}: expected a duration such as 90s"))?,
        _ => std::time::Duration::ZERO,
    };
    std::thread::sleep(delay);
    let tmp = data.join(format!("{id}-tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("bin"))
        .with_context(|| format!("creating {}", tmp.display()))?;
    crate::xtables::lay_out(&tmp.join("bin"))?;
    let current = data.join("current");
    if std::fs::symlink_metadata(&current).is_ok() {
        std::fs::rename(&current, data.join("previous"))?;
    }
    std::os::unix::fs::symlink(&dir, &current)?;
    std::fs::rename(&tmp, &dir)?;
    Ok(())
}
