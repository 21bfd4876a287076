//! Embedded-etcd HA, as far as pictl can see it: which datastore a server uses
//! (K3s's `pkg/cluster/managed.go` `assignManagedDriver`: an initialized etcd
//! dir on disk, else etcd when `cluster-init` or joining with `server:` and a
//! token, else SQLite through kine), the members of the etcd cluster, and who
//! leads it. The election here is not Raft: every server asks every member for
//! its status twice a second; with a majority reachable, a sitting leader that
//! sees a majority keeps its place, else the reachable member with the most
//! changes (then the lowest name) leads. Replication is in `replicate.rs`, the
//! API's view of it (forwarding, quorum errors) in `ha_api.rs`.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a server keeps its state (K3s's layout under `<data-dir>/server/db`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datastore {
    /// kine over SQLite: `server/db/state.db`.
    Sqlite,
    /// Embedded etcd: `server/db/etcd/`.
    Etcd(EtcdStart),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdStart {
    /// `cluster-init` on a data dir without etcd: a new one-member cluster
    /// (migrating `state.db` into it when there is one).
    New,
    /// `server:` and a token on a data dir without etcd: join that cluster.
    Join,
    /// `server/db/etcd/member/wal` exists: restart as the member it was.
    Existing,
}

pub fn sqlite_file(data_dir: &Path) -> PathBuf {
    data_dir.join("server/db/state.db")
}

pub fn etcd_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server/db/etcd")
}

fn wal_dir(data_dir: &Path) -> PathBuf {
    etcd_dir(data_dir).join("member/wal")
}

/// pkg/cluster/managed.go `assignManagedDriver` with pkg/etcd/etcd.go
/// `IsInitialized` (the WAL directory decides).
pub fn select(data_dir: &Path, cluster_init: bool, joining: bool) -> Datastore {
    if wal_dir(data_dir).is_dir() {
        Datastore::Etcd(EtcdStart::Existing)
    } else if cluster_init {
        Datastore::Etcd(EtcdStart::New)
    } else if joining {
        Datastore::Etcd(EtcdStart::Join)
    } else {
        Datastore::Sqlite
    }
}

impl Datastore {
    /// The file the simulator's store persists to.
    pub fn store_file(self, data_dir: &Path) -> PathBuf {
        match self {
            Datastore::Sqlite => sqlite_file(data_dir),
            Datastore::Etcd(_) => etcd_dir(data_dir).join("member/snap/db"),
        }
    }
}

/// Creates the etcd dir (0700, as K3s) and, for a new cluster over an
/// existing SQLite datastore, moves its content in the way pkg/etcd/etcd.go
/// `migrateFromSQLite` does: copy, then rename `state.db` to `state.db.migrated`.
pub fn prepare_etcd(data_dir: &Path, start: EtcdStart) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let wal = wal_dir(data_dir);
    std::fs::create_dir_all(&wal).with_context(|| format!("creating {}", wal.display()))?;
    std::fs::create_dir_all(etcd_dir(data_dir).join("member/snap"))?;
    std::fs::set_permissions(etcd_dir(data_dir), std::fs::Permissions::from_mode(0o700))?;
    let sqlite = sqlite_file(data_dir);
    if start == EtcdStart::New && sqlite.exists() {
        crate::info!("Migrating content from sqlite to etcd");
        let to = Datastore::Etcd(start).store_file(data_dir);
        std::fs::copy(&sqlite, &to).with_context(|| format!("copying {}", sqlite.display()))?;
        let mut migrated = sqlite.clone().into_os_string();
        migrated.push(".migrated");
        std::fs::rename(&sqlite, &migrated)?;
    }
    Ok(())
}

/// pkg/etcd/etcd.go `setName`: `<node name>-<8 hex>`, kept in `db/etcd/name`.
pub fn member_name(data_dir: &Path, node: &str) -> Result<String> {
    let file = etcd_dir(data_dir).join("name");
    if let Ok(n) = std::fs::read_to_string(&file) {
        return Ok(n.trim().to_string());
    }
    let name = format!("{node}-{}", crate::certs::random_hex(4));
    crate::certs::write_private(&file, name.as_bytes(), 0o600)?;
    Ok(name)
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    /// `https://<ip>:2380`: replication (mutual TLS with the cluster CA).
    pub peer_url: String,
    /// `https://<ip>:6443`: the member's apiserver, where writes are forwarded.
    pub api_url: String,
}

pub fn members_file(data_dir: &Path) -> PathBuf {
    etcd_dir(data_dir).join("member/sim-members.json")
}

pub fn load_members(data_dir: &Path) -> Result<Vec<Member>> {
    let f = members_file(data_dir);
    match std::fs::read(&f) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("corrupt {}", f.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", f.display())),
    }
}

pub fn save_members(data_dir: &Path, members: &[Member]) -> Result<()> {
    crate::certs::write_private(
        &members_file(data_dir),
        &serde_json::to_vec(members)?,
        0o600,
    )
}

/// What a member answers when asked for its status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Status {
    pub name: String,
    pub rv: u64,
    /// Who it follows, itself when it leads.
    pub leader: Option<String>,
    /// Members it reached in its last round, itself included.
    pub sees: usize,
    /// The leader's term id it last took a snapshot under.
    pub epoch: Option<String>,
}

pub fn majority(members: usize) -> usize {
    members / 2 + 1
}

/// Who leads, seen from `me` with the statuses of the members it reached.
/// None: no majority reachable.
pub fn elect(me: &Status, members: &[String], reached: &[Status]) -> Option<String> {
    let need = majority(members.len());
    let reached: Vec<&Status> = reached
        .iter()
        .filter(|s| members.contains(&s.name) && s.name != me.name)
        .collect();
    if 1 + reached.len() < need {
        return None;
    }
    // A sitting leader that still sees a majority keeps its place (its
    // followers hold exactly its changes); two claims resolve to the lowest name.
    let mut claims: Vec<&str> = reached
        .iter()
        .filter(|s| s.leader.as_deref() == Some(s.name.as_str()) && s.sees >= need)
        .map(|s| s.name.as_str())
        .collect();
    if me.leader.as_deref() == Some(me.name.as_str()) {
        claims.push(&me.name);
    }
    if let Some(l) = claims.into_iter().min() {
        return Some(l.to_string());
    }
    // No leader: the reachable member with the most changes, so nothing a
    // majority acknowledged is lost (and a new member, empty, never leads);
    // ties go to the lowest name.
    std::iter::once(me)
        .chain(reached.iter().copied())
        .max_by(|a, b| a.rv.cmp(&b.rv).then_with(|| b.name.cmp(&a.name)))
        .map(|s| s.name.clone())
}

/// This server's view of the cluster, shared by the API, the peer listener
/// and the election loop.
#[derive(Default)]
pub struct View {
    pub leader: Option<String>,
    /// The id of the term this server leads, when it leads.
    pub epoch: Option<String>,
    /// The leader's term id this server's copy was last reset to (a snapshot).
    pub synced_epoch: Option<String>,
    pub sees: usize,
    pub last_change: Option<Instant>,
}

pub struct Membership {
    pub me: Member,
    pub data_dir: PathBuf,
    pub members: Mutex<Vec<Member>>,
    pub view: Mutex<View>,
}

impl Membership {
    pub fn members(&self) -> Vec<Member> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adopts the leader's member list (it is the one that adds members).
    pub fn set_members(&self, list: Vec<Member>) -> Result<()> {
        let mut m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        if *m != list {
            save_members(&self.data_dir, &list)?;
            *m = list;
        }
        Ok(())
    }

    /// Adds (or updates) a member; only the leader does this.
    pub fn add_member(&self, new: Member) -> Result<Vec<Member>> {
        let mut list = self.members();
        let base = |n: &str| n.rsplit_once('-').map_or(n.to_string(), |(b, _)| b.into());
        // K3s refuses a second member for one node name; the same address is
        // that node again (its data dir wiped), which replaces its old member.
        if list.iter().any(|m| {
            m.name != new.name && base(&m.name) == base(&new.name) && m.peer_url != new.peer_url
        }) {
            bail!("duplicate node name found, please use a unique name for this node");
        }
        list.retain(|m| m.name != new.name && m.peer_url != new.peer_url);
        list.push(new);
        list.sort_by(|a, b| a.name.cmp(&b.name));
        self.set_members(list.clone())?;
        Ok(list)
    }

    pub fn is_leader(&self) -> bool {
        self.view().leader.as_deref() == Some(self.me.name.as_str())
    }

    pub fn leader_member(&self) -> Option<Member> {
        let l = self.view().leader.clone()?;
        self.members().into_iter().find(|m| m.name == l)
    }
}

/// How long a server waits for a leader before answering that etcd has no quorum.
pub const QUORUM_WAIT: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, rv: u64, leader: Option<&str>, sees: usize) -> Status {
        Status {
            name: name.into(),
            rv,
            leader: leader.map(str::to_string),
            sees,
            epoch: None,
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn datastore_follows_disk_then_cluster_init_then_join() {
        let d = std::env::temp_dir().join(format!("ha-select-{}", crate::certs::random_hex(4)));
        assert_eq!(select(&d, false, false), Datastore::Sqlite);
        assert_eq!(select(&d, true, false), Datastore::Etcd(EtcdStart::New));
        assert_eq!(select(&d, false, true), Datastore::Etcd(EtcdStart::Join));
        std::fs::create_dir_all(sqlite_file(&d).parent().unwrap()).unwrap();
        std::fs::write(sqlite_file(&d), br#"{"rv":7,"objects":{}}"#).unwrap();
        prepare_etcd(&d, EtcdStart::New).unwrap();
        // The SQLite content moved into etcd, as K3s's migrateFromSQLite does.
        assert!(!sqlite_file(&d).exists());
        assert!(d.join("server/db/state.db.migrated").exists());
        let moved = std::fs::read_to_string(Datastore::Etcd(EtcdStart::New).store_file(&d));
        assert_eq!(moved.unwrap(), r#"{"rv":7,"objects":{}}"#);
        // Once etcd is on disk it is used whatever the flags say.
        assert_eq!(
            select(&d, false, false),
            Datastore::Etcd(EtcdStart::Existing)
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn no_leader_without_a_majority() {
        let m = names(&["a", "b", "c"]);
        assert_eq!(elect(&st("a", 5, Some("a"), 1), &m, &[]), None);
        let one = [st("b", 5, None, 2)];
        assert_eq!(elect(&st("a", 5, None, 2), &m, &one), Some("a".into()));
        // A one-member cluster (cluster-init) leads itself.
        assert_eq!(
            elect(&st("a", 0, None, 1), &names(&["a"]), &[]),
            Some("a".into())
        );
        // Two of four is not a majority.
        let four = names(&["a", "b", "c", "d"]);
        assert_eq!(elect(&st("a", 5, None, 2), &four, &one), None);
    }

    #[test]
    fn a_sitting_leader_keeps_its_place() {
        let m = names(&["a", "b", "c"]);
        // c leads and sees a majority: a (lower name, more changes) follows it.
        let reached = [st("b", 9, Some("c"), 3), st("c", 9, Some("c"), 3)];
        assert_eq!(elect(&st("a", 12, None, 3), &m, &reached), Some("c".into()));
        // A claim from a leader that lost its majority does not count.
        let reached = [st("b", 9, None, 2), st("c", 9, Some("c"), 1)];
        assert_eq!(elect(&st("a", 9, None, 2), &m, &reached), Some("a".into()));
    }

    #[test]
    fn without_a_leader_the_most_changes_win_then_the_lowest_name() {
        let m = names(&["a", "b", "c"]);
        let reached = [st("b", 10, None, 3), st("c", 10, None, 3)];
        assert_eq!(elect(&st("a", 9, None, 3), &m, &reached), Some("b".into()));
        let reached = [st("b", 9, None, 3), st("c", 9, None, 3)];
        assert_eq!(elect(&st("a", 9, None, 3), &m, &reached), Some("a".into()));
        // A member just added (no changes yet) follows the one that has them,
        // even before that one's own round counted the new member.
        let reached = [st("a", 40, Some("a"), 1)];
        assert_eq!(
            elect(&st("b", 0, None, 2), &names(&["a", "b"]), &reached),
            Some("a".into())
        );
        // Members outside the list (removed, or not yet added) are not counted.
        let reached = [st("x", 99, None, 3), st("b", 9, None, 2)];
        assert_eq!(elect(&st("a", 9, None, 2), &m, &reached), Some("a".into()));
    }

    #[test]
    fn members_are_added_once_and_duplicate_node_names_refused() {
        let d = std::env::temp_dir().join(format!("ha-members-{}", crate::certs::random_hex(4)));
        let mk = |n: &str, ip: &str| Member {
            name: n.into(),
            peer_url: format!("https://{ip}:2380"),
            api_url: format!("https://{ip}:6443"),
        };
        let ms = Membership {
            me: mk("s1-aaaa", "10.0.0.1"),
            data_dir: d.clone(),
            members: Mutex::new(vec![mk("s1-aaaa", "10.0.0.1")]),
            view: Mutex::new(View::default()),
        };
        ms.add_member(mk("s2-bbbb", "10.0.0.2")).unwrap();
        ms.add_member(mk("s2-bbbb", "10.0.0.2")).unwrap();
        assert_eq!(ms.members().len(), 2);
        let e = ms.add_member(mk("s2-cccc", "10.0.0.3")).unwrap_err();
        assert!(e.to_string().contains("duplicate node name"), "{e}");
        assert_eq!(load_members(&d).unwrap(), ms.members());
        let _ = std::fs::remove_dir_all(&d);
    }
}
