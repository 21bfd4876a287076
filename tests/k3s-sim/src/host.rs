//! The node the simulator runs on, as the files K3s and the kernel would read:
//! `/etc/rancher/node/password`, `/sys/fs/cgroup`, `/proc/self/cgroup`,
//! `/proc/cgroups`. `K3S_SIM_NODE_ROOT` (default `/`) re-roots all of them, so
//! host-side tests can present a node (another node password, a missing memory
//! controller) without touching the machine's own `/etc`.
//! Real K3s has no such variable; nothing else in the simulator changes with it.

use std::path::PathBuf;

pub const ROOT_ENV: &str = "K3S_SIM_NODE_ROOT";

/// `abs` (an absolute path on a real node) under the node root.
pub fn path(abs: &str) -> PathBuf {
    match std::env::var(ROOT_ENV) {
        Ok(root) if !root.is_empty() && root != "/" => {
            PathBuf::from(root).join(abs.trim_start_matches('/'))
        }
        _ => PathBuf::from(abs),
    }
}

/// K3s's node password file (pkg/agent/config/config.go: `<root>/etc/rancher/node/password`,
/// the root being `/` unless rootless).
pub fn node_password_file() -> PathBuf {
    path("/etc/rancher/node/password")
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_root_is_slash() {
        // The variable is not set in unit tests.
        if std::env::var(super::ROOT_ENV).is_err() {
            assert_eq!(
                super::path("/etc/rancher/node/password"),
                std::path::PathBuf::from("/etc/rancher/node/password")
            );
        }
    }
}
