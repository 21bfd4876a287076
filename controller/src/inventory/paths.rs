//! Paths named in an inventory: `~/` expansion and resolution against the
//! inventory's own folder, done lexically (nothing is read here), plus the
//! default state directory.

use std::path::{Path, PathBuf};

/// Expands `~/` and resolves relative paths against the inventory's folder.
pub fn resolve_path(base_dir: &Path, raw: &str) -> PathBuf {
    if let Some(rest) = raw.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let p = PathBuf::from(raw);
    normalize(&if p.is_absolute() { p } else { base_dir.join(p) })
}

/// Removes `.` and `name/..` lexically, so messages show `.lab/key`, not
/// `inventory/../.lab/key` (symlinks are not resolved: nothing is read).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// Default per-cluster state directory (`$XDG_STATE_HOME/pictl/<cluster>`).
pub fn default_state_dir(cluster: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".local/state"))
                .unwrap_or_else(|| PathBuf::from("/var/lib"))
        });
    base.join("pictl").join(cluster)
}
