//! `pictl restore`: a backup put back onto the running cluster, after
//! every check (the file's checksum and parts, the cluster's name, CA and
//! token) and before any node is touched.
//!
//! SQLite: K3s stopped, `server/db` moved aside (kept as
//! `server/db.pictl-before-restore-<time>`), the backup's files written, K3s
//! started. Embedded etcd, as K3s's backup docs and pkg/etcd/etcd.go
//! `Reset` do it: K3s stopped on every server; on the first, the snapshot
//! restored with `k3s server --cluster-reset --cluster-reset-restore-path`
//! (which exits once the membership is reset), then K3s started; on the
//! others, one at a time, `server/db` moved aside and K3s started, so they
//! rejoin. Every node is then waited for until Ready. Run again, an
//! interrupted restore is done again from the top.

use super::backup::{Server, exec, same_cluster, servers, wait_all_ready};
use super::error::RunError;
use super::options::Options;
use crate::backup_file::{self, Backup};
use crate::facts::Datastore;
use crate::inventory::Inventory;
use crate::transport::RemoteCommand;
use crate::write::Writer;

/// What a restore of `file` would do, after every check; `Err` when it
/// is refused. `confirmed` carries it out.
/// A backup checked against the running cluster, ready to be restored.
pub(super) struct Checked<'i> {
    run: super::run::Run<'i>,
    all: Vec<Server>,
    backup: Backup,
    /// What the restore does, in words.
    pub plan: String,
}

/// Every check a restore makes before it touches a node: the file's
/// checksum and parts, the cluster's name, and (read from the running
/// servers) its CA, token and datastore. Reads only.
pub(super) async fn check<'i>(
    inv: &'i Inventory,
    opts: &'i Options,
    file: &std::path::Path,
) -> Result<Checked<'i>, RunError> {
    let b = backup_file::read(file).map_err(|e| RunError::Backup(crate::error_chain(&e)))?;
    if b.cluster != inv.cluster.name {
        return Err(RunError::Backup(format!(
            "{} is a backup of cluster {}, not of {}: refused",
            file.display(),
            b.cluster,
            inv.cluster.name
        )));
    }
    let names: Vec<String> = inv.servers().map(|n| n.name.clone()).collect();
    let (run, all) = servers(inv, opts, &names).await?;
    let s = &all[0];
    same_cluster(&b, s, file)?;
    if b.datastore != s.datastore {
        return Err(RunError::Backup(format!(
            "{} holds a {:?} datastore and {} runs {:?}: a backup goes back onto the datastore it came from",
            file.display(),
            b.datastore,
            s.name,
            s.datastore
        )));
    }
    let plan = plan(file, &b, &all);
    Ok(Checked {
        run,
        all,
        backup: b,
        plan,
    })
}

/// Restores a checked backup, then waits for every node Ready; the plan.
pub(super) async fn carry_out(
    c: Checked<'_>,
    opts: &Options,
    w: &Writer,
) -> Result<String, RunError> {
    match c.backup.datastore {
        Datastore::Sqlite => restore_sqlite(&c.all[0], &c.backup, w).await?,
        Datastore::Etcd => restore_etcd(&c.all, &c.backup, w).await?,
    }
    wait_all_ready(&c.run, opts.wait).await?;
    Ok(c.plan)
}

async fn restore_sqlite(s: &Server, b: &Backup, w: &Writer) -> Result<(), RunError> {
    stop(s, w).await?;
    let aside = RemoteCommand::script(DB_ASIDE)
        .arg(s.data_dir.as_str())
        .arg(backup_file::now_utc());
    exec(s, aside, "moving server/db aside").await?;
    for p in &b.parts {
        let path = format!("{}/server/db/{}", s.data_dir, p.name);
        s.transport
            .put_file(&p.bytes, &path, 0o600, s.sudo)
            .await
            .map_err(|e| {
                RunError::Backup(format!(
                    "server {}: writing {path}: {}",
                    s.name,
                    crate::error_chain(&e)
                ))
            })?;
    }
    exec(
        s,
        RemoteCommand::new("systemctl").args(["start", "k3s"]),
        "starting K3s",
    )
    .await?;
    Ok(())
}

/// What a restore does, in words.
fn plan(file: &std::path::Path, b: &Backup, all: &[Server]) -> String {
    let s = &all[0];
    let head = format!(
        "restore {} (taken {} on {}) onto {}",
        file.display(),
        b.taken,
        b.server,
        s.name
    );
    match b.datastore {
        Datastore::Sqlite => format!(
            "{head}: stop K3s, move {}/server/db aside, write {} file(s), start K3s, wait for every node Ready",
            s.data_dir,
            b.parts.len()
        ),
        Datastore::Etcd => {
            let others: Vec<&str> = all[1..].iter().map(|o| o.name.as_str()).collect();
            let rejoin = if others.is_empty() {
                String::new()
            } else {
                format!(
                    ", then on {} one at a time: move server/db aside, start K3s (rejoin)",
                    others.join(", ")
                )
            };
            format!(
                "{head}: stop K3s on every server, k3s server --cluster-reset --cluster-reset-restore-path on {}, start K3s{rejoin}; wait for every node Ready",
                s.name
            )
        }
    }
}

/// `$1` the data dir, `$2` the time: `server/db` moved aside (K3s stopped).
const DB_ASIDE: &str = r#"set -eu
db="$1/server/db"
[ ! -e "$db" ] || mv "$db" "$db.pictl-before-restore-$2"
mkdir -m 700 "$db"
"#;

async fn stop(s: &Server, _w: &Writer) -> Result<(), RunError> {
    exec(
        s,
        RemoteCommand::new("systemctl").args(["stop", "k3s"]),
        "stopping K3s",
    )
    .await?;
    Ok(())
}

async fn start(s: &Server, _w: &Writer) -> Result<(), RunError> {
    exec(
        s,
        RemoteCommand::new("systemctl").args(["start", "k3s"]),
        "starting K3s",
    )
    .await?;
    Ok(())
}

async fn restore_etcd(all: &[Server], b: &Backup, w: &Writer) -> Result<(), RunError> {
    let part = b
        .parts
        .first()
        .ok_or_else(|| RunError::Backup("the backup holds no snapshot".into()))?;
    for s in all {
        stop(s, w).await?;
    }
    let first = &all[0];
    let path = format!(
        "{}/server/db/snapshots/pictl-restore-{}",
        first.data_dir,
        backup_file::now_utc()
    );
    first
        .transport
        .put_file(&part.bytes, &path, 0o600, first.sudo)
        .await
        .map_err(|e| {
            RunError::Backup(format!(
                "server {}: writing {path}: {}",
                first.name,
                crate::error_chain(&e)
            ))
        })?;
    let reset = RemoteCommand::new("k3s")
        .args(["server", "--cluster-reset"])
        .arg(format!("--cluster-reset-restore-path={path}"));
    let out = exec(first, reset, "k3s server --cluster-reset").await?;
    let _ = out;
    start(first, w).await?;
    let when = backup_file::now_utc();
    for s in &all[1..] {
        let aside = RemoteCommand::script(DB_ASIDE)
            .arg(s.data_dir.as_str())
            .arg(when.as_str());
        exec(s, aside, "moving server/db aside").await?;
        start(s, w).await?;
    }
    Ok(())
}
