//! The shared store of an HA cluster: every server keeps a full copy; the
//! leader (see `ha.rs`) ships its changes to the members over mutual TLS with
//! the cluster CA on the etcd peer port (2380), and a write is acknowledged
//! only when a majority holds it. A member that restarted, or that followed
//! another leader, gets the leader's whole copy first (a snapshot), then the
//! changes after it. The election runs here too, twice a second.

use crate::ha::{Member, Membership, Status, View, elect, majority};
use crate::http::{Body, request_with};
use crate::store::{Entry, State, Store};
use anyhow::{Result, anyhow, bail};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PEER_PORT: u16 = 2380;
/// etcd's request timeout: a write no majority acknowledged in this time fails.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(500);
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Append {
    pub leader: String,
    pub epoch: String,
    pub members: Vec<Member>,
    pub prev_rv: u64,
    pub entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Snapshot {
    pub leader: String,
    pub epoch: String,
    pub members: Vec<Member>,
    pub rv: u64,
    pub objects: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Ack {
    pub ok: bool,
    pub rv: u64,
    /// Whether the member's copy is the current leader's (else it needs a snapshot).
    pub synced: bool,
}

/// A follower takes the leader's changes: only under the term it took its
/// snapshot from, only without a gap; changes it already holds are skipped
/// (two rounds may carry the same ones).
pub fn on_append(st: &mut State, view: &mut View, a: &Append) -> Ack {
    let synced = view.synced_epoch.as_deref() == Some(a.epoch.as_str());
    if !synced || a.prev_rv > st.rv {
        return Ack {
            ok: false,
            rv: st.rv,
            synced,
        };
    }
    for e in &a.entries {
        if e.rv <= st.rv {
            continue;
        }
        if let Err(err) = st.apply_entry(e) {
            crate::error!("etcd: applying change {}: {err:#}", e.rv);
            return Ack {
                ok: false,
                rv: st.rv,
                synced,
            };
        }
    }
    view.leader = Some(a.leader.clone());
    view.last_change = Some(Instant::now());
    Ack {
        ok: true,
        rv: st.rv,
        synced,
    }
}

pub fn on_snapshot(st: &mut State, view: &mut View, s: Snapshot) -> Result<Ack> {
    st.restore(s.rv, s.objects)?;
    view.synced_epoch = Some(s.epoch);
    view.leader = Some(s.leader);
    Ok(Ack {
        ok: true,
        rv: st.rv,
        synced: true,
    })
}

#[derive(Default, Clone, Copy, Debug)]
struct Progress {
    synced: bool,
    rv: u64,
}

pub struct Ha {
    pub ms: Membership,
    pub store: Store,
    /// Peer calls, with the peer certificate.
    client: Arc<rustls::ClientConfig>,
    /// Writes forwarded to the leader's apiserver, with the admin certificate.
    api_client: Arc<rustls::ClientConfig>,
    /// Writes of token users forwarded with their bearer token only (the
    /// leader authenticates and authorizes them itself).
    token_client: Arc<rustls::ClientConfig>,
    /// The peer listener's certificate and key (PEM).
    peer: (String, String),
    progress: tokio::sync::Mutex<HashMap<String, Progress>>,
}

fn url_of(u: &str) -> Result<crate::http::Url> {
    crate::http::parse_server_url(u)
}

impl Ha {
    pub fn new(
        ms: Membership,
        store: Store,
        tls: &crate::certs::ClusterTls,
        peer: (String, String),
    ) -> Result<Arc<Ha>> {
        let ca = &tls.ca_pem;
        Ok(Arc::new(Ha {
            ms,
            store,
            client: crate::http::mutual_client(ca, &peer.0, &peer.1)?,
            api_client: crate::http::mutual_client(ca, &tls.admin_cert_pem, &tls.admin_key_pem)?,
            token_client: crate::http::pinned_client(ca)?,
            peer,
            progress: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }

    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }

    /// The client a forwarded request goes out with: the admin certificate
    /// for the admin, no certificate for a token user.
    pub fn api_client(&self, user: &crate::auth::User) -> Arc<rustls::ClientConfig> {
        match user {
            crate::auth::User::Admin => self.api_client.clone(),
            crate::auth::User::ServiceAccount { .. } => self.token_client.clone(),
        }
    }

    pub fn status(&self) -> Status {
        let rv = self.store.lock().rv;
        let v = self.ms.view();
        Status {
            name: self.ms.me.name.clone(),
            rv,
            leader: v.leader.clone(),
            sees: v.sees,
            epoch: v.epoch.clone().or_else(|| v.synced_epoch.clone()),
        }
    }

    /// One call to a member's peer port.
    pub async fn peer<T: serde::de::DeserializeOwned>(
        &self,
        m: &Member,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        let body = serde_json::to_vec(body)?;
        let headers = [("Content-Type", "application/json".to_string())];
        let url = url_of(&m.peer_url)?;
        let call = request_with(self.client(), &url, method, path, &headers, &body);
        let r = tokio::time::timeout(PEER_TIMEOUT, call)
            .await
            .map_err(|_| anyhow!("{}{path}: timeout", m.peer_url))??;
        if r.status != 200 {
            bail!(
                "{}{path}: {} {}",
                m.peer_url,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok(serde_json::from_slice(&r.body)?)
    }

    async fn push(&self, m: &Member, epoch: &str, p: &mut Progress) -> Result<()> {
        let members = self.ms.members();
        if p.synced {
            let entries = self.store.lock().entries_since(p.rv);
            if let Some(entries) = entries {
                let a = Append {
                    leader: self.ms.me.name.clone(),
                    epoch: epoch.to_string(),
                    members: members.clone(),
                    prev_rv: p.rv,
                    entries,
                };
                let ack: Ack = self.peer(m, "POST", "/sim/raft/append", &a).await?;
                p.rv = ack.rv;
                if ack.ok || ack.synced {
                    return Ok(());
                }
            }
        }
        let (rv, objects) = self.store.lock().snapshot();
        let s = Snapshot {
            leader: self.ms.me.name.clone(),
            epoch: epoch.to_string(),
            members,
            rv,
            objects,
        };
        let ack: Ack = self.peer(m, "POST", "/sim/raft/snapshot", &s).await?;
        *p = Progress {
            synced: ack.synced,
            rv: ack.rv,
        };
        Ok(())
    }

    /// The leader sends every member what it lacks; returns how many members,
    /// itself included, hold revision `target`.
    pub async fn round(self: &Arc<Self>, target: u64) -> usize {
        let Some(epoch) = self.ms.view().epoch.clone() else {
            return 0;
        };
        let mut progress = self.progress.lock().await;
        let mut set = tokio::task::JoinSet::new();
        for m in self.ms.members() {
            if m.name == self.ms.me.name {
                continue;
            }
            let mut p = progress.get(&m.name).copied().unwrap_or_default();
            let (me, epoch) = (self.clone(), epoch.clone());
            set.spawn(async move {
                if let Err(e) = me.push(&m, &epoch, &mut p).await {
                    crate::debug!("etcd: replicating to {}: {e:#}", m.name);
                }
                (m.name, p)
            });
        }
        let mut held = 1;
        while let Some(Ok((name, p))) = set.join_next().await {
            if p.synced && p.rv >= target {
                held += 1;
            }
            progress.insert(name, p);
        }
        held
    }

    /// Waits until a majority holds `target` (etcd's commit), at most COMMIT_TIMEOUT.
    pub async fn commit(self: &Arc<Self>, target: u64) -> bool {
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        loop {
            if !self.ms.is_leader() {
                return false;
            }
            if self.round(target).await >= majority(self.ms.members().len()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn tick(self: &Arc<Self>) {
        let members = self.ms.members();
        if !members.is_empty() && !members.iter().any(|m| m.name == self.ms.me.name) {
            // Removed from the cluster (member_controller.go): no longer a voter.
            let mut v = self.ms.view();
            if v.leader.take().is_some() {
                crate::warn!("etcd: {} was removed from the cluster", self.ms.me.name);
            }
            v.epoch = None;
            return;
        }
        let mut set = tokio::task::JoinSet::new();
        for m in members
            .clone()
            .into_iter()
            .filter(|m| m.name != self.ms.me.name)
        {
            let me = self.clone();
            set.spawn(async move { me.peer::<Status>(&m, "GET", "/sim/raft/status", &()).await });
        }
        let mut reached = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(s)) = r {
                reached.push(s);
            }
        }
        let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        let leader = elect(&self.status(), &names, &reached);
        self.adopt(leader, reached.len() + 1, members.len()).await;
        if self.ms.is_leader() {
            let rv = self.store.lock().rv;
            self.round(rv).await;
        }
    }

    async fn adopt(&self, leader: Option<String>, sees: usize, total: usize) {
        let me = &self.ms.me.name;
        let leads = leader.as_deref() == Some(me.as_str());
        {
            let mut v = self.ms.view();
            v.sees = sees;
            if v.leader == leader {
                return;
            }
            if !leads {
                match &leader {
                    Some(l) => crate::info!("etcd: {me} follows leader {l}"),
                    None => crate::warn!(
                        "etcd: no leader: {sees} of {total} members reachable, a majority is {}",
                        majority(total)
                    ),
                }
                v.epoch = None;
                v.leader = leader;
                return;
            }
        }
        // A new term: every member gets this leader's copy before its changes.
        self.progress.lock().await.clear();
        let epoch = crate::certs::random_hex(8);
        crate::info!("etcd: {me} became leader ({sees} of {total} members reachable)");
        let mut v = self.ms.view();
        v.synced_epoch = Some(epoch.clone());
        v.epoch = Some(epoch);
        v.leader = leader;
    }

    pub fn spawn_election(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.tick().await;
                tokio::time::sleep(TICK).await;
            }
        });
    }

    fn handle_peer(&self, method: &str, path: &str, body: &[u8]) -> Result<Value> {
        Ok(match (method, path) {
            ("GET", "/sim/raft/status") => serde_json::to_value(self.status())?,
            ("POST", "/sim/raft/append") => {
                let a: Append = serde_json::from_slice(body)?;
                let ack = {
                    let mut st = self.store.lock();
                    on_append(&mut st, &mut self.ms.view(), &a)
                };
                if ack.ok {
                    self.ms.set_members(a.members)?;
                }
                serde_json::to_value(ack)?
            }
            ("POST", "/sim/raft/snapshot") => {
                let s: Snapshot = serde_json::from_slice(body)?;
                let members = s.members.clone();
                let ack = {
                    let mut st = self.store.lock();
                    on_snapshot(&mut st, &mut self.ms.view(), s)?
                };
                self.ms.set_members(members)?;
                crate::info!(
                    "etcd: took a snapshot from the leader at revision {}",
                    ack.rv
                );
                serde_json::to_value(ack)?
            }
            ("POST", "/sim/raft/join") => {
                if !self.ms.is_leader() {
                    bail!("etcdserver: not leader");
                }
                let m: Member = serde_json::from_slice(body)?;
                crate::info!("etcd: adding member {}={}", m.name, m.peer_url);
                serde_json::to_value(self.ms.add_member(m)?)?
            }
            _ => bail!("404 page not found"),
        })
    }

    /// The peer listener: mutual TLS, the cluster CA on both sides.
    pub async fn serve_peers(
        self: &Arc<Self>,
        bind: std::net::IpAddr,
        tls: &crate::certs::ClusterTls,
    ) -> Result<()> {
        let cfg = Arc::new(crate::http::peer_server_config(
            &tls.ca_pem,
            &self.peer.0,
            &self.peer.1,
        )?);
        let listener = tokio::net::TcpListener::bind((bind, PEER_PORT))
            .await
            .map_err(|e| anyhow!("listen tcp {bind}:{PEER_PORT}: {e}"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, me) = (acceptor.clone(), me.clone());
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(PEER_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                    if !peer.is_some_and(|c| crate::peer_tls::is_peer(c)) {
                        crate::warn!(
                            "etcd: refused a peer connection without the peer certificate"
                        );
                        return;
                    }
                    let svc = hyper::service::service_fn(move |req: Request<_>| {
                        let me = me.clone();
                        async move { Ok::<_, std::convert::Infallible>(me.peer_request(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(())
    }

    async fn peer_request(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let body = match crate::http::read_body(req.into_body(), 256 * 1024 * 1024).await {
            Ok(b) => b,
            Err(e) => return crate::api::text_resp(400, &e.to_string()),
        };
        match self.handle_peer(&method, &path, &body) {
            Ok(v) => crate::api::json_resp(200, &v),
            Err(e) => crate::api::text_resp(503, &format!("{e:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RESOURCES;
    use serde_json::json;

    fn store() -> (Store, std::path::PathBuf) {
        let p = std::env::temp_dir().join(format!("repl-{}/db", crate::certs::random_hex(4)));
        (Store::open(p.clone()).unwrap(), p)
    }

    fn cm(name: &str, v: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"k": v}})
    }

    fn append(leader: &Store, from: u64, epoch: &str) -> Append {
        Append {
            leader: "a".into(),
            epoch: epoch.into(),
            members: Vec::new(),
            prev_rv: from,
            entries: leader.lock().entries_since(from).unwrap(),
        }
    }

    #[test]
    fn a_follower_applies_the_leaders_changes_in_order_and_persists_them() {
        let (leader, _) = store();
        let (follower, fpath) = store();
        let cm_rt = &RESOURCES[3];
        let mut view = View {
            synced_epoch: Some("t1".into()),
            ..View::default()
        };
        leader.lock().put(cm_rt, cm("one", "1")).unwrap();
        leader.lock().put(cm_rt, cm("two", "2")).unwrap();
        leader.lock().delete(cm_rt, "default", "one").unwrap();
        let ack = on_append(&mut follower.lock(), &mut view, &append(&leader, 0, "t1"));
        assert_eq!(
            ack,
            Ack {
                ok: true,
                rv: 3,
                synced: true
            }
        );
        assert_eq!(follower.lock().objects, leader.lock().objects);
        // The same changes again (a second round) change nothing.
        let again = on_append(&mut follower.lock(), &mut view, &append(&leader, 0, "t1"));
        assert_eq!(
            again,
            Ack {
                ok: true,
                rv: 3,
                synced: true
            }
        );
        // What it applied survives a restart.
        let reopened = Store::open(fpath).unwrap();
        assert_eq!(reopened.lock().rv, 3);
        assert!(reopened.lock().get(cm_rt, "default", "two").is_some());
        assert!(reopened.lock().get(cm_rt, "default", "one").is_none());
    }

    #[test]
    fn a_gap_or_another_term_needs_a_snapshot() {
        let (leader, _) = store();
        let (follower, _) = store();
        let cm_rt = &RESOURCES[3];
        for i in 0..3 {
            leader.lock().put(cm_rt, cm(&format!("c{i}"), "x")).unwrap();
        }
        let mut view = View {
            synced_epoch: Some("t1".into()),
            ..View::default()
        };
        // Changes after 2 cannot go onto an empty copy.
        let gap = on_append(&mut follower.lock(), &mut view, &append(&leader, 2, "t1"));
        assert_eq!(
            gap,
            Ack {
                ok: false,
                rv: 0,
                synced: true
            }
        );
        // A new leader's term: the copy may hold changes that leader never had.
        let other = on_append(&mut follower.lock(), &mut view, &append(&leader, 0, "t2"));
        assert_eq!(
            other,
            Ack {
                ok: false,
                rv: 0,
                synced: false
            }
        );
        let (rv, objects) = leader.lock().snapshot();
        let s = Snapshot {
            leader: "a".into(),
            epoch: "t2".into(),
            members: Vec::new(),
            rv,
            objects,
        };
        let ack = on_snapshot(&mut follower.lock(), &mut view, s).unwrap();
        assert_eq!(
            ack,
            Ack {
                ok: true,
                rv: 3,
                synced: true
            }
        );
        assert_eq!(follower.lock().objects, leader.lock().objects);
        leader.lock().put(cm_rt, cm("c9", "y")).unwrap();
        let next = on_append(&mut follower.lock(), &mut view, &append(&leader, 3, "t2"));
        assert_eq!(
            next,
            Ack {
                ok: true,
                rv: 4,
                synced: true
            }
        );
    }
}
