//! `k3s etcd-snapshot save`: an on-demand snapshot of a running server's
//! embedded etcd, as K3s takes it (pkg/cli/etcdsnapshot/etcd_snapshot.go
//! `save`, pkg/etcd/snapshot.go `Snapshot`): refused with `etcd database not
//! found in <data-dir>/server` when the server runs without etcd (SQLite),
//! an error when the server is not running (K3s asks the running etcd for
//! its status first), else written to `<etcd-snapshot-dir, default
//! <data-dir>/server/db/snapshots>/<name>-<node>-<unix seconds>` (name
//! `--name`, default `on-demand`), logging `Saving etcd snapshot to <path>`.
//! The simulator's etcd keeps its data in one file, replaced atomically, so
//! its copy is a consistent snapshot as etcd's is.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

use crate::config::{self, Role};
use crate::ha;

/// The subcommands of `k3s etcd-snapshot` the simulator knows.
pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("save") => save(&args[1..]),
        Some(other) => bail!("k3s-sim: 'etcd-snapshot {other}' is not simulated"),
        // pkg/cli/etcdsnapshot: a bare `etcd-snapshot` is `save` (kept for compatibility).
        None => save(&[]),
    }
}

/// `--name N` / `--name=N` (and `--etcd-snapshot-name`), and the rest.
fn split_name(args: &[String]) -> (String, Vec<String>) {
    let (mut name, mut rest) = ("on-demand".to_string(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let key = a.split('=').next().unwrap_or_default();
        if key == "--name" || key == "--etcd-snapshot-name" {
            match a.split_once('=') {
                Some((_, v)) => name = v.to_string(),
                None => name = it.next().cloned().unwrap_or_default(),
            }
        } else {
            rest.push(a.clone());
        }
    }
    (name, rest)
}

fn save(args: &[String]) -> Result<()> {
    let (name, rest) = split_name(args);
    let settings = config::load(Role::Server, &rest)?;
    let data_dir = settings.data_dir();
    let db = ha::Datastore::Etcd(ha::EtcdStart::Existing).store_file(&data_dir);
    if !ha::etcd_dir(&data_dir).join("member/wal").is_dir() {
        bail!(
            "etcd database not found in {}",
            data_dir.join("server").display()
        );
    }
    let port = settings
        .str("https-listen-port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(6443u16);
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        bail!("failed to check etcd status for snapshot: context deadline exceeded");
    }
    let dir = settings
        .str("etcd-snapshot-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("server/db/snapshots"));
    let node = crate::server::node_name(&settings);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let path = dir.join(format!("{name}-{node}-{unix}"));
    crate::info!("Saving etcd snapshot to {}", path.display());
    copy_private(&db, &path)?;
    Ok(())
}

/// Copies `from` to `to` as a 0600 file in a 0700 directory (as etcd's
/// snapshot writer does), through a temporary file.
fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if let Some(dir) = to.parent() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    crate::certs::write_private(to, &bytes, 0o600)
}

/// Simulator-only: a release listed in `/etc/k3s-sim/broken-releases` (one
/// version per line) fails at every start on this node, as a release that
/// cannot run there would. Real K3s has no such file.
pub fn broken_here() -> Option<String> {
    let file = crate::host::path("/etc/k3s-sim/broken-releases");
    let text = std::fs::read_to_string(&file).ok()?;
    let me = crate::version::version();
    text.lines()
        .any(|l| l.trim() == me)
        .then(|| format!("{me} is listed in {} (simulator fault)", file.display()))
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn the_name_comes_from_either_form_and_the_rest_is_left_to_the_server_flags() {
        let args: Vec<String> = ["--name", "pre", "--data-dir", "/d"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            split_name(&args),
            ("pre".into(), vec!["--data-dir".into(), "/d".into()])
        );
        let (name, rest) = split_name(&["--name=x".to_string()]);
        assert_eq!((name.as_str(), rest.len()), ("x", 0));
        assert_eq!(split_name(&[]).0, "on-demand");
    }
}
