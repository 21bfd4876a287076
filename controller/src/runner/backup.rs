//! `pictl backup` and `pictl restore`: the cluster's datastore taken from
//! the first server into the controller's state directory, and put back.
//!
//! A backup is K3s's own snapshot for embedded etcd (`k3s etcd-snapshot
//! save`, pkg/etcd/snapshot.go) and, for SQLite, the `server/db` files K3s's
//! backup docs name, copied while K3s is stopped (a running SQLite is not
//! consistent on disk; the containers keep running while K3s restarts).
//! With it goes the server token, which encrypts the datastore's secrets
//! and whose CA hash names the cluster: a restore is refused, before any
//! node is touched, unless the running cluster has that same token.
//! The restore is in [`super::restore`].

use std::time::{Duration, Instant};

use super::error::RunError;
use super::manager;
use super::options::Options;
use super::run::Run;
use crate::artifacts::ArtifactStore;
use crate::backup_file::{self, Backup, Part};
use crate::cluster::{NodeState, nodes};
use crate::facts::Datastore;
use crate::inventory::Inventory;
use crate::step::StepError;
use crate::transport::{RemoteCommand, Transport};
use crate::write::Writer;

/// `$1` etcd|sqlite, `$2` the data dir, `$3` a name: the snapshot taken,
/// its files' paths printed one per line.
const TAKE: &str = r#"set -eu
if [ "$1" = etcd ]; then
  out=$(k3s etcd-snapshot save --name "$3" 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
  path=$(printf '%s\n' "$out" | sed -n 's/.*Saving etcd snapshot to \([^" ]*\).*/\1/p' | tail -n 1)
  [ -n "$path" ] && [ -s "$path" ] || { printf 'no snapshot file: %s\n' "$out" >&2; exit 1; }
  printf '%s\n' "$path"
  exit 0
fi
db="$2/server/db"; tmp="$db/$3"
[ -f "$db/state.db" ] || { echo "no SQLite datastore at $db/state.db" >&2; exit 1; }
rm -rf "$tmp" && mkdir -m 700 "$tmp"
systemctl stop k3s
for f in state.db state.db-wal state.db-shm; do
  [ ! -e "$db/$f" ] || { cp -p "$db/$f" "$tmp/$f" && printf '%s\n' "$tmp/$f"; }
done
systemctl start k3s
"#;

/// What pictl may read about the first server before it backs up or restores.
pub(super) struct Server {
    pub name: String,
    pub transport: std::sync::Arc<dyn Transport>,
    pub sudo: bool,
    pub datastore: Datastore,
    pub data_dir: String,
    pub token: crate::secret::Secret,
}

/// Connects to `names` and reads their facts (nothing recorded); each as
/// a [`Server`], in the order given.
pub(super) async fn servers<'i>(
    inv: &'i Inventory,
    opts: &'i Options,
    names: &[String],
) -> Result<(Run<'i>, Vec<Server>), RunError> {
    let store = ArtifactStore::new(&inv.cluster.mirror, "backup", &opts.cache_dir, false);
    let mut run = Run::new(inv, opts, "(backup)".into(), store).only(names);
    manager::connect(&mut run).await?;
    let mut out = Vec::new();
    for r in &run.nodes {
        let name = r.node.name.clone();
        let why = |what: &str| RunError::Backup(format!("server {name}: {what}"));
        let failed = r.report.unreachable.clone().or(r.report.failed.clone());
        if let Some(f) = failed {
            return Err(why(&f));
        }
        let f = r.facts.as_ref().ok_or_else(|| why("no facts"))?;
        out.push(Server {
            name: name.clone(),
            transport: r.transport.clone().ok_or_else(|| why("not connected"))?,
            sudo: r.node.ssh.sudo,
            datastore: f
                .datastore
                .ok_or_else(|| why("no K3s datastore (is K3s installed?)"))?,
            data_dir: crate::data_dir::on_node(f),
            token: f
                .server_token
                .clone()
                .ok_or_else(|| why("no server token"))?,
        });
    }
    Ok((run, out))
}

/// Connects to the first server and reads its facts (nothing recorded).
async fn first_server<'i>(
    inv: &'i Inventory,
    opts: &'i Options,
) -> Result<(Run<'i>, Server), RunError> {
    let name = inv
        .servers()
        .next()
        .map(|n| n.name.clone())
        .ok_or_else(|| RunError::Backup("the inventory has no server".into()))?;
    let (run, mut servers) = servers(inv, opts, std::slice::from_ref(&name)).await?;
    Ok((run, servers.remove(0)))
}

pub(super) async fn exec(s: &Server, cmd: RemoteCommand, what: &str) -> Result<Vec<u8>, RunError> {
    let cmd = cmd.sudo(s.sudo).timeout(Duration::from_secs(300));
    let out = s.transport.exec(&cmd).await.map_err(StepError::from);
    let out = out.and_then(|o| StepError::check_output(what, o));
    out.map(|o| o.stdout)
        .map_err(|e| RunError::Backup(format!("server {}: {}", s.name, crate::error_chain(&e))))
}

/// Takes a backup of the cluster's datastore; the file's path.
pub(super) async fn take(
    inv: &Inventory,
    opts: &Options,
    w: &Writer,
) -> Result<std::path::PathBuf, RunError> {
    let (_run, s) = first_server(inv, opts).await?;
    let taken = backup_file::now_utc();
    let store = match s.datastore {
        Datastore::Etcd => "etcd",
        Datastore::Sqlite => "sqlite",
    };
    let name = format!("pictl-backup-{taken}");
    let cmd = RemoteCommand::script(TAKE)
        .arg(store)
        .arg(s.data_dir.as_str())
        .arg(name.as_str());
    let listed = exec(&s, cmd, "taking the snapshot").await?;
    let mut parts = Vec::new();
    for path in String::from_utf8_lossy(&listed)
        .lines()
        .filter(|l| !l.is_empty())
    {
        let bytes = exec(
            &s,
            RemoteCommand::new("cat").arg(path),
            "reading the snapshot",
        )
        .await?;
        let base = path.rsplit('/').next().unwrap_or(path).to_string();
        parts.push(Part { name: base, bytes });
    }
    if s.datastore == Datastore::Sqlite {
        let tmp = format!("{}/server/db/{name}", s.data_dir);
        exec(
            &s,
            RemoteCommand::new("rm").arg("-rf").arg(tmp),
            "cleaning up",
        )
        .await?;
    }
    let b = Backup {
        cluster: inv.cluster.name.clone(),
        datastore: s.datastore,
        token: s.token.clone(),
        server: s.name.clone(),
        taken,
        parts,
    };
    backup_file::write(&inv.cluster.state_dir, &b, w)
        .map_err(|e| RunError::Backup(crate::error_chain(&e)))
}

/// The running cluster is the backup's: the same server token (its CA hash
/// and secret), compared without printing either.
pub(super) fn same_cluster(b: &Backup, s: &Server, file: &std::path::Path) -> Result<(), RunError> {
    if b.token.expose() == s.token.expose() {
        return Ok(());
    }
    let ca = |t: &str| {
        crate::secret::token_ca_hash(t)
            .unwrap_or_default()
            .to_string()
    };
    let why = if ca(b.token.expose()) != ca(s.token.expose()) {
        "another CA (the token's CA hash differs)"
    } else {
        "another server token"
    };
    Err(RunError::Backup(format!(
        "{} belongs to another cluster than the one {} runs: {why}; nothing was stopped",
        file.display(),
        s.name
    )))
}

/// Waits until every node of the inventory is Ready, through the API.
pub(super) async fn wait_all_ready(run: &Run<'_>, wait: Duration) -> Result<(), RunError> {
    let deadline = Instant::now() + wait;
    let client = super::reset::admin_client(run)
        .await
        .map_err(RunError::Backup)?;
    loop {
        let mut behind = Vec::new();
        for n in &run.inv.nodes {
            match nodes::get(&client, &n.name).await {
                Ok(Some(k)) if NodeState::of(&k).ready => {}
                _ => behind.push(n.name.clone()),
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(RunError::Backup(format!(
                "restored, but not Ready after {} s: {}",
                wait.as_secs(),
                behind.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
