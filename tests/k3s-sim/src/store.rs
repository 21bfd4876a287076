//! The cluster state: a registry of the resource kinds served, the objects (JSON,
//! as the apiserver would return them), a global resourceVersion counter bumped
//! only on real change, a watch event history, and persistence to
//! the datastore file (`<data-dir>/server/db/state.db` for K3s's SQLite, or
//! under `server/db/etcd/` for embedded etcd, see `ha.rs`) with atomic writes so
//! a restart (or a kill) loses nothing that was acknowledged. With HA the leader's
//! changes are shipped to the other servers as [`Entry`]s (`replicate.rs`).

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Whether metadata.generation is maintained (kinds with a spec the apiserver tracks).
    pub has_generation: bool,
    pub has_status: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// `deployments.apps`, as error messages name resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

macro_rules! rt {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, $sn:expr, $gen:expr, $st:expr) => {
        ResourceType {
            group: $g,
            version: $v,
            plural: $p,
            singular: $s,
            kind: $k,
            namespaced: $ns,
            short_names: $sn,
            has_generation: $gen,
            has_status: $st,
        }
    };
}

pub static RESOURCES: &[ResourceType] = &[
    rt!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        false,
        true
    ),
    rt!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        false,
        true
    ),
    rt!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        false,
        true
    ),
    rt!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
        false
    ),
    rt!(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        &[],
        false,
        false
    ),
    rt!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
        false
    ),
    rt!(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        &["limits"],
        false,
        false
    ),
    rt!(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        &["quota"],
        false,
        true
    ),
    rt!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
        true
    ),
    rt!(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        true,
        false
    ),
    rt!(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        false,
        true
    ),
    rt!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
        true
    ),
    rt!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        false,
        false
    ),
    // Appended: other code names kinds by their index above.
    rt!("", "v1", "pods", "pod", "Pod", true, &["po"], false, true),
    rt!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        true,
        true
    ),
    // Node health (the agent's conditions): Events on Nodes and the RBAC kinds
    // that confine the agent's token.
    rt!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        false,
        false
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
        false
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
        false
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
        false
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
        false
    ),
    // ValidatingAdmissionPolicy (`admission/`): what confines the agents' tokens to conditions.
    rt! { "admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
    "validatingadmissionpolicy", "ValidatingAdmissionPolicy", false, &[], true, true },
    rt! { "admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
    "validatingadmissionpolicybinding", "ValidatingAdmissionPolicyBinding", false, &[], true, false },
];

pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub rtype: &'static ResourceType,
    pub old: Option<Value>,
    pub new: Value,
}

const HISTORY: usize = 4096;

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Persisted {
    rv: u64,
    objects: BTreeMap<String, Value>,
}

pub struct State {
    pub rv: u64,
    /// key: `<group>/<plural>/<namespace>/<name>` (namespace empty for cluster scope).
    pub objects: BTreeMap<String, Value>,
    history: VecDeque<Arc<Event>>,
    /// Oldest resourceVersion a watch can resume from.
    pub history_floor: u64,
    tx: broadcast::Sender<Arc<Event>>,
    path: PathBuf,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<State>>,
}

pub fn obj_key(rt: &ResourceType, ns: &str, name: &str) -> String {
    format!(
        "{}/{}/{}/{}",
        rt.group,
        rt.plural,
        if rt.namespaced { ns } else { "" },
        name
    )
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// One committed change as replicated between servers: the object stored at
/// `rv`, or the deleted object when `deleted`.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Entry {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub deleted: bool,
    pub obj: Value,
}

impl Store {
    pub fn open(path: PathBuf) -> Result<Store> {
        let persisted: Persisted = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("corrupt state file {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let (tx, _) = broadcast::channel(1024);
        Ok(Store {
            inner: Arc::new(Mutex::new(State {
                rv: persisted.rv,
                history_floor: persisted.rv,
                objects: persisted.objects,
                history: VecDeque::new(),
                tx,
                path,
            })),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock must not wedge the whole server.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&obj_key(rt, ns, name))
    }

    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<&Value> {
        let prefix = match (rt.namespaced, ns) {
            (true, Some(ns)) => format!("{}/{}/{}/", rt.group, rt.plural, ns),
            _ => format!("{}/{}/", rt.group, rt.plural),
        };
        self.objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Events after `rv`, or None if that is older than the history kept.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.history_floor {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Stores `obj` if it differs from what is stored (ignoring resourceVersion);
    /// returns the stored object and whether it changed.
    pub fn put(&mut self, rt: &'static ResourceType, mut obj: Value) -> Result<(Value, bool)> {
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let key = obj_key(rt, &ns, &name);
        let old = self.objects.get(&key).cloned();
        if let Some(old) = &old {
            let mut cmp = obj.clone();
            if let Some(m) = cmp.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert(
                    "resourceVersion".into(),
                    old["metadata"]["resourceVersion"].clone(),
                );
            }
            if &cmp == old {
                return Ok((old.clone(), false));
            }
        }
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, obj.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv: self.rv,
            kind,
            rtype: rt,
            old,
            new: obj.clone(),
        });
        self.persist()?;
        Ok((obj, true))
    }

    pub fn delete(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>> {
        let key = obj_key(rt, ns, name);
        let Some(old) = self.objects.remove(&key) else {
            return Ok(None);
        };
        self.rv += 1;
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Event {
            rv: self.rv,
            kind: EventType::Deleted,
            rtype: rt,
            old: Some(old),
            new: gone.clone(),
        });
        self.persist()?;
        Ok(Some(gone))
    }

    /// The changes after `rv`, or None when they are older than the history kept
    /// (the follower then needs a snapshot).
    pub fn entries_since(&self, rv: u64) -> Option<Vec<Entry>> {
        let evs = self.events_since(rv)?;
        Some(
            evs.iter()
                .map(|e| Entry {
                    rv: e.rv,
                    group: e.rtype.group.to_string(),
                    plural: e.rtype.plural.to_string(),
                    deleted: e.kind == EventType::Deleted,
                    obj: e.new.clone(),
                })
                .collect(),
        )
    }

    /// A follower applies the leader's next change; it must be the next rv.
    pub fn apply_entry(&mut self, e: &Entry) -> Result<()> {
        anyhow::ensure!(
            e.rv == self.rv + 1,
            "entry {} does not follow local revision {}",
            e.rv,
            self.rv
        );
        let rt = RESOURCES
            .iter()
            .find(|r| r.group == e.group && r.plural == e.plural)
            .ok_or_else(|| anyhow::anyhow!("unknown resource {}/{}", e.group, e.plural))?;
        let key = obj_key(rt, meta_str(&e.obj, "namespace"), meta_str(&e.obj, "name"));
        let old = if e.deleted {
            self.objects.remove(&key)
        } else {
            self.objects.insert(key, e.obj.clone())
        };
        self.rv = e.rv;
        let kind = match (e.deleted, old.is_some()) {
            (true, _) => EventType::Deleted,
            (false, true) => EventType::Modified,
            (false, false) => EventType::Added,
        };
        self.record(Event {
            rv: e.rv,
            kind,
            rtype: rt,
            old,
            new: e.obj.clone(),
        });
        self.persist()
    }

    /// Every object and the revision: what a catching-up server is sent.
    pub fn snapshot(&self) -> (u64, BTreeMap<String, Value>) {
        (self.rv, self.objects.clone())
    }

    /// Replaces the local copy with the leader's. Watches cannot resume from
    /// before it (410 Expired, as after an etcd compaction).
    pub fn restore(&mut self, rv: u64, objects: BTreeMap<String, Value>) -> Result<()> {
        self.rv = rv;
        self.objects = objects;
        self.history.clear();
        self.history_floor = rv;
        self.persist()
    }

    fn record(&mut self, ev: Event) {
        let ev = Arc::new(ev);
        self.history.push_back(ev.clone());
        while self.history.len() > HISTORY {
            if let Some(e) = self.history.pop_front() {
                self.history_floor = e.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    fn persist(&self) -> Result<()> {
        let p = Persisted {
            rv: self.rv,
            objects: self.objects.clone(),
        };
        let bytes = serde_json::to_vec(&p)?;
        crate::certs::write_private(&self.path, &bytes, 0o600)
    }
}
