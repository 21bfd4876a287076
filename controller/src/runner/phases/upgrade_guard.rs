//! What makes a server's upgrade undoable: before its binary changes, a
//! snapshot of its datastore is taken on the node and the binary, config
//! and unit it runs with are kept beside it (`/var/lib/pictl/previous`),
//! so a server that does not come back Ready on the new release is rolled
//! back to them and restarted.
//!
//! The snapshot is K3s's own for embedded etcd (`k3s etcd-snapshot save
//! --name pre-upgrade-<version>`, which lands in `server/db/snapshots` as
//! `<name>-<node>-<unix>`; K3s's backup docs restore it with
//! `--cluster-reset --cluster-reset-restore-path`). K3s has no snapshot
//! command for SQLite: its docs back up the `server/db` files, which are
//! consistent only while K3s is stopped, so K3s is stopped (its upgrade
//! restarts it anyway) and `state.db` with its `-wal` and `-shm` files is
//! copied to `server/db/snapshots/<name>-<node>-<unix>/`.

use crate::facts::Datastore;
use crate::report::Change;
use crate::step::StepError;
use crate::transport::{RemoteCommand, Transport};
use crate::write::Writer;

/// Where the previous release's files are kept on the node.
pub const PREVIOUS: &str = "/var/lib/pictl/previous";

/// One server's guard, planned from its facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardPlan {
    /// The snapshot's base name: `pre-upgrade-<version>`.
    pub name: String,
    pub datastore: Datastore,
    /// K3s's data dir on the node.
    pub data_dir: String,
}

impl GuardPlan {
    pub fn new(to: &str, datastore: Datastore, data_dir: String) -> Self {
        // K3s's snapshot names are file names: `+` is kept, nothing else odd.
        Self {
            name: format!("pre-upgrade-{to}"),
            datastore,
            data_dir,
        }
    }

    pub fn changes(&self) -> Vec<Change> {
        let how = match self.datastore {
            Datastore::Etcd => "k3s etcd-snapshot save",
            Datastore::Sqlite => "K3s stopped, server/db copied",
        };
        vec![
            Change::new(
                "snapshot",
                "none",
                format!(
                    "{} in {}/server/db/snapshots ({how})",
                    self.name, self.data_dir
                ),
            ),
            Change::new(
                "previous release",
                "in place",
                format!("binary, config and unit kept in {PREVIOUS} for a rollback"),
            ),
        ]
    }
}

/// `$1` etcd|sqlite, `$2` the data dir, `$3` the snapshot's name. Keeps the
/// previous release, then snapshots; prints the snapshot's path.
pub(crate) const TAKE: &str = r#"set -eu
prev=/var/lib/pictl/previous
mkdir -p /var/lib/pictl && chmod 700 /var/lib/pictl
rm -rf "$prev.new" && mkdir -m 700 "$prev.new"
cp -p /usr/local/bin/k3s "$prev.new/k3s"
for f in /etc/rancher/k3s/config.yaml /etc/systemd/system/k3s.service /etc/systemd/system/k3s.service.env; do
  k=$(printf '%s' "$f" | tr / _)
  if [ -e "$f" ]; then cp -p "$f" "$prev.new/$k"; else : > "$prev.new/$k.absent"; fi
done
rm -rf "$prev" && mv "$prev.new" "$prev"
if [ "$1" = etcd ]; then
  out=$(k3s etcd-snapshot save --name "$3" 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
  path=$(printf '%s\n' "$out" | sed -n 's/.*Saving etcd snapshot to \([^" ]*\).*/\1/p' | tail -n 1)
  [ -n "$path" ] && [ -s "$path" ] || { printf 'no snapshot file: %s\n' "$out" >&2; exit 1; }
else
  db="$2/server/db"
  [ -f "$db/state.db" ] || { echo "no SQLite datastore at $db/state.db" >&2; exit 1; }
  path="$db/snapshots/$3-$(hostname)-$(date +%s)"
  systemctl stop k3s
  mkdir -p "$db/snapshots" && chmod 700 "$db/snapshots" && mkdir -m 700 "$path"
  for f in state.db state.db-wal state.db-shm; do
    [ ! -e "$db/$f" ] || cp -p "$db/$f" "$path/$f"
  done
fi
printf '%s\n' "$path"
"#;

/// Restores the kept release and restarts K3s (the unit is Type=notify:
/// the restart returns once K3s is up, or fails).
pub(crate) const ROLL_BACK: &str = r#"set -eu
prev=/var/lib/pictl/previous
[ -f "$prev/k3s" ] || { echo "nothing kept in $prev to roll back to" >&2; exit 1; }
cp -p "$prev/k3s" /usr/local/bin/.k3s.pictl-rollback
mv -f /usr/local/bin/.k3s.pictl-rollback /usr/local/bin/k3s
for f in /etc/rancher/k3s/config.yaml /etc/systemd/system/k3s.service /etc/systemd/system/k3s.service.env; do
  k=$(printf '%s' "$f" | tr / _)
  if [ -e "$prev/$k" ]; then cp -p "$prev/$k" "$f.pictl-rollback" && mv -f "$f.pictl-rollback" "$f"
  elif [ -e "$prev/$k.absent" ]; then rm -f "$f"; fi
done
rm -f /var/lib/pictl/k3s-started-with
systemctl daemon-reload
systemctl restart k3s
"#;

/// Keeps the previous release and takes the snapshot; its path on the node.
pub async fn take(
    t: &dyn Transport,
    sudo: bool,
    plan: &GuardPlan,
    wait: std::time::Duration,
    _w: &Writer,
) -> Result<String, StepError> {
    let store = match plan.datastore {
        Datastore::Etcd => "etcd",
        Datastore::Sqlite => "sqlite",
    };
    let cmd = RemoteCommand::script(TAKE)
        .arg(store)
        .arg(plan.data_dir.as_str())
        .arg(plan.name.as_str())
        .sudo(sudo)
        .timeout(wait.max(std::time::Duration::from_secs(120)));
    let out = StepError::check_output("the pre-upgrade snapshot", t.exec(&cmd).await?)?;
    Ok(out.stdout_text().trim().to_string())
}

/// Puts the kept release back and restarts K3s with it.
pub async fn roll_back(
    t: &dyn Transport,
    sudo: bool,
    wait: std::time::Duration,
    _w: &Writer,
) -> Result<(), StepError> {
    let cmd = RemoteCommand::script(ROLL_BACK)
        .sudo(sudo)
        .timeout(wait.max(std::time::Duration::from_secs(120)));
    StepError::check_output("the rollback", t.exec(&cmd).await?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::paths;

    #[test]
    fn the_kept_files_are_the_ones_the_scripts_name() {
        for f in [
            paths::CONFIG,
            paths::SERVER_UNIT,
            "/etc/systemd/system/k3s.service.env",
        ] {
            assert!(TAKE.contains(f) && ROLL_BACK.contains(f), "{f}");
        }
        assert!(TAKE.contains(paths::K3S_BIN) && ROLL_BACK.contains(paths::K3S_BIN));
        assert!(TAKE.contains(PREVIOUS) && ROLL_BACK.contains(PREVIOUS));
        assert!(ROLL_BACK.contains(paths::STARTED_WITH));
    }
}
