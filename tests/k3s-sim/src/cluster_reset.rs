//! `k3s server --cluster-reset [--cluster-reset-restore-path=FILE]`, as
//! K3s's pkg/etcd/etcd.go `Reset` and `Restore` do it: with a restore path
//! (which must exist and be a file: `etcd: snapshot path does not exist:`,
//! `etcd: snapshot path must be a file, not a directory:`), the etcd data
//! dir is moved to `server/db/etcd-old-<unix>` ("Pre-restore etcd database
//! moved to ...") and the snapshot becomes the datastore; the member takes
//! a new name (`setName(true)`) and is the cluster's only member; then
//! "Managed etcd cluster membership has been reset, restart without
//! --cluster-reset flag now. Backup and delete ${datadir}/server/db on each
//! peer etcd server and rejoin the nodes" is logged and the process exits 0.

use anyhow::{Result, bail};
use std::path::Path;

use crate::ha::{self, EtcdStart, Member};

/// Resets the membership (restoring the snapshot first when named); the
/// caller exits 0 after it.
pub fn run(data_dir: &Path, restore: Option<&str>, node: &str, ip: &str, port: u16) -> Result<()> {
    let etcd = ha::etcd_dir(data_dir);
    if let Some(path) = restore {
        let p = Path::new(path);
        if !p.exists() {
            bail!("etcd: snapshot path does not exist: {path}");
        }
        if p.is_dir() {
            bail!("etcd: snapshot path must be a file, not a directory: {path}");
        }
        let snapshot = std::fs::read(p)?;
        if etcd.exists() {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let old = data_dir.join(format!("server/db/etcd-old-{unix}"));
            std::fs::rename(&etcd, &old)?;
            crate::info!("Pre-restore etcd database moved to {}", old.display());
        }
        ha::prepare_etcd(data_dir, EtcdStart::Existing)?;
        let store = ha::Datastore::Etcd(EtcdStart::Existing).store_file(data_dir);
        crate::certs::write_private(&store, &snapshot, 0o600)?;
    } else if !etcd.join("member/wal").is_dir() {
        bail!("k3s-sim: --cluster-reset without an etcd data dir is not simulated");
    }
    // setName(true): a new member name, the only member.
    let _ = std::fs::remove_file(etcd.join("name"));
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let me = Member {
        name: ha::member_name(data_dir, node)?,
        peer_url: format!("https://{host}:{}", crate::replicate::PEER_PORT),
        api_url: format!("https://{host}:{port}"),
    };
    ha::save_members(data_dir, &[me])?;
    crate::info!(
        "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete ${{datadir}}/server/db on each peer etcd server and rejoin the nodes"
    );
    Ok(())
}
