//! Fakes for the runner's fast tests: nodes simulated in memory behind the
//! real [`Transport`] and [`Connector`] seams, and an API that answers the
//! node list. A fake node answers the facts script from its state, keeps
//! what is uploaded, starts units when the service scripts run, and records
//! every call in one log shared by all nodes, so tests can assert order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::api::ApiConnector;
use super::connect::Connector;
use crate::artifacts::sha256_hex;
use crate::facts::{self, paths};
use crate::inventory::Node;
use crate::secret::Secret;
use crate::transport::{BoxFuture, Output, RemoteCommand, Transport, TransportError};

/// One thing a node was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Connect,
    Facts {
        record: bool,
    },
    Put(String),
    /// A script or command other than the facts script (first line or program).
    Exec(String),
}

/// What the fake nodes did, in order: (node, call).
pub type Log = Arc<Mutex<Vec<(String, Call)>>>;

#[derive(Debug, Default)]
pub struct NodeState {
    pub files: BTreeMap<String, Vec<u8>>,
    pub active: BTreeSet<String>,
    pub enabled: BTreeSet<String>,
    pub started_with: String,
    pub boot: u32,
    /// Connection attempts fail (unreachable) while this is set.
    pub down: bool,
    /// Every exec other than the facts script exits 1 with this stderr.
    pub refuse: Option<String>,
    pub server_token: Option<String>,
    pub agent_token: Option<String>,
    /// Uploads to these paths are acknowledged but not kept.
    pub lost_uploads: BTreeSet<String>,
    /// What `k3s --version` names while the binary is present
    /// (`v1.32.5+k3s1` when unset).
    pub k3s_version: Option<String>,
}

pub const KUBECONFIG: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

/// All fake nodes, by name.
#[derive(Clone, Default)]
pub struct Fleet {
    pub nodes: Arc<Mutex<BTreeMap<String, Arc<Mutex<NodeState>>>>>,
    pub log: Log,
}

impl Fleet {
    pub fn node(&self, name: &str) -> Arc<Mutex<NodeState>> {
        let mut nodes = self.nodes.lock().expect("fleet");
        nodes.entry(name.to_string()).or_default().clone()
    }

    pub fn calls(&self) -> Vec<(String, Call)> {
        self.log.lock().expect("log").clone()
    }
}

impl Connector for Fleet {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>> {
        Box::pin(async move {
            let state = self.node(&node.name);
            self.log
                .lock()
                .expect("log")
                .push((node.name.clone(), Call::Connect));
            if state.lock().expect("node").down {
                return Err(TransportError::Connect {
                    host: node.name.clone(),
                    address: node.address.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                });
            }
            let t = FakeTransport {
                name: node.name.clone(),
                server: node.role == crate::inventory::Role::Server,
                state,
                log: self.log.clone(),
                trips: Default::default(),
            };
            Ok(Arc::new(t) as Arc<dyn Transport>)
        })
    }
}

pub struct FakeTransport {
    name: String,
    server: bool,
    state: Arc<Mutex<NodeState>>,
    log: Log,
    trips: std::sync::atomic::AtomicU64,
}

fn line(key: &str, value: &str) -> String {
    facts::record(key, value)
}

impl FakeTransport {
    fn facts(&self, s: &NodeState) -> String {
        let mut out = String::new();
        for (k, v) in [
            ("uname", "x86_64"),
            ("os", "Debian GNU/Linux 12 (bookworm)"),
            ("machine_id", &format!("id-{}", self.name)),
            ("hostname", &self.name),
            ("boot_id", &format!("boot-{}", s.boot)),
            ("now", &super::connect::now_epoch().to_string()),
            ("cgroup2", "cpuset cpu memory pids"),
            ("started_with", &s.started_with),
        ] {
            out.push_str(&line(k, v));
        }
        if s.files.contains_key(paths::K3S_BIN) {
            let v = s.k3s_version.as_deref().unwrap_or("v1.32.5+k3s1");
            out.push_str(&line("k3s_version", &format!("k3s version {v} (fake)")));
        }
        for path in paths::MANAGED {
            if let Some(bytes) = s.files.get(path) {
                out.push_str(&line("file", &format!("{path} {}", sha256_hex(bytes))));
            }
        }
        for unit in ["k3s.service", "k3s-agent.service", "pictl-agent.service"] {
            let active = if s.active.contains(unit) {
                "active"
            } else {
                "inactive"
            };
            let enabled = if s.enabled.contains(unit) {
                "enabled"
            } else {
                "disabled"
            };
            let props = format!("ActiveState={active} UnitFileState={enabled} NeedDaemonReload=no");
            out.push_str(&line("unit", &format!("{unit} {props}")));
        }
        if self.server && s.active.contains("k3s.service") {
            let token = s
                .server_token
                .clone()
                .unwrap_or_else(|| configured_token(s));
            out.push_str(&line("token", &token));
            if let Some(agent) = &s.agent_token {
                out.push_str(&line("agent_token", agent));
            }
            out.push_str(&line("kubeconfig", KUBECONFIG));
        }
        out
    }

    /// What the service scripts do: enable and start the unit, record inputs.
    fn start(&self, s: &mut NodeState, cmd: &RemoteCommand) {
        let args = cmd.arguments();
        let Some(unit) = args.get(3).cloned() else {
            return;
        };
        s.enabled.insert(unit.clone());
        s.active.insert(unit);
        // Like K3s, the tokens are written at the first start and kept.
        if self.server && s.server_token.is_none() {
            s.server_token = Some(configured_token(s));
        }
        if self.server && s.agent_token.is_none() {
            s.agent_token = configured(s, "agent-token:").map(|a| format!("K10abc::node:{a}"));
        }
        let inputs = args.get(8..).unwrap_or_default();
        s.started_with = inputs
            .iter()
            .filter_map(|p| Some(format!("{}  {p}\n", sha256_hex(s.files.get(p)?))))
            .collect();
    }
}

/// The value of `key` (e.g. `token:`) in the node's config.yaml.
fn configured(s: &NodeState, key: &str) -> Option<String> {
    let config = s.files.get(paths::CONFIG)?;
    String::from_utf8_lossy(config)
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|t| t.trim().trim_matches('"').to_string())
}

/// The token K3s writes: `K10<ca-hash>::server:<secret>`, the secret from
/// its config.
fn configured_token(s: &NodeState) -> String {
    format!(
        "K10abc::server:{}",
        configured(s, "token:").unwrap_or_default()
    )
}

fn ok(stdout: String) -> Output {
    Output {
        stdout: stdout.into_bytes(),
        ..Output::default()
    }
}

impl Transport for FakeTransport {
    fn exec<'a>(&'a self, cmd: &'a RemoteCommand) -> BoxFuture<'a, Result<Output, TransportError>> {
        Box::pin(async move {
            self.trips
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut s = self.state.lock().expect("node");
            let script = cmd.arguments().get(1).cloned().unwrap_or_default();
            if script == facts::SCRIPT {
                let record = cmd.arguments().get(4).is_some_and(|a| a == "record");
                self.log
                    .lock()
                    .expect("log")
                    .push((self.name.clone(), Call::Facts { record }));
                return Ok(ok(self.facts(&s)));
            }
            let what = if cmd.program() == "sh" {
                script.lines().nth(1).unwrap_or_default().to_string()
            } else {
                cmd.argv().join(" ")
            };
            self.log
                .lock()
                .expect("log")
                .push((self.name.clone(), Call::Exec(what)));
            if let Some(why) = &s.refuse {
                return Ok(Output {
                    status: 1,
                    stderr: why.clone().into_bytes(),
                    ..Output::default()
                });
            }
            if script.contains(".pictl-reset-uninstall.sh") {
                s.files.clear();
                s.active.clear();
                s.enabled.clear();
                s.started_with.clear();
                s.server_token = None;
            } else if script.contains("k3s-started-with") {
                self.start(&mut s, cmd);
            } else if script.contains("pictl-agent.service") {
                s.active.insert("pictl-agent.service".into());
                s.enabled.insert("pictl-agent.service".into());
            }
            Ok(ok(String::new()))
        })
    }

    fn put_file<'a>(
        &'a self,
        contents: &'a [u8],
        path: &'a str,
        _mode: u32,
        _sudo: bool,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            self.trips
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.log
                .lock()
                .expect("log")
                .push((self.name.clone(), Call::Put(path.to_string())));
            let mut s = self.state.lock().expect("node");
            if !s.lost_uploads.contains(path) {
                s.files.insert(path.to_string(), contents.to_vec());
            }
            Ok(())
        })
    }

    fn round_trips(&self) -> u64 {
        self.trips.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// An API server that lists every node Ready and records each request.
#[derive(Clone, Default)]
pub struct FakeApi {
    pub nodes: Vec<String>,
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Node objects by name, as patched.
    pub objects: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    /// Nodes deleted, in order.
    pub deleted: Arc<Mutex<Vec<String>>>,
}

impl ApiConnector for FakeApi {
    fn client<'a>(
        &'a self,
        _kubeconfig: &'a Secret,
    ) -> BoxFuture<'a, Result<kube::Client, super::api::ApiError>> {
        let api = self.clone();
        Box::pin(async move {
            let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
                let api = api.clone();
                async move {
                    let line = format!("{} {}", req.method(), req.uri());
                    api.requests.lock().expect("requests").push(line);
                    let (parts, body) = req.into_parts();
                    let body = body.collect_bytes().await.unwrap_or_default();
                    let answer = api.answer(&parts.method, parts.uri.path(), &body);
                    let body = serde_json::to_vec(&answer).unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        kube::client::Body::from(body),
                    ))
                }
            });
            Ok(kube::Client::new(svc, "default"))
        })
    }
}

/// RFC 7386 JSON merge patch (`null` removes a key; lists are replaced).
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
        }
    }
}

impl FakeApi {
    /// Every node, Ready, as a Node object (patched ones as patched).
    pub fn node(&self, name: &str) -> serde_json::Value {
        let mut objects = self.objects.lock().expect("objects");
        objects
            .entry(name.to_string())
            .or_insert_with(|| {
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "resourceVersion": "1"},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}
                })
            })
            .clone()
    }

    fn answer(&self, method: &http::Method, path: &str, body: &[u8]) -> serde_json::Value {
        let Some(name) = path.strip_prefix("/api/v1/nodes/") else {
            let items: Vec<serde_json::Value> = self.nodes.iter().map(|n| self.node(n)).collect();
            return serde_json::json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items});
        };
        if method == http::Method::DELETE {
            self.objects.lock().expect("objects").remove(name);
            self.deleted.lock().expect("deleted").push(name.to_string());
            return serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"});
        }
        let mut node = self.node(name);
        if method == http::Method::PATCH {
            let patch: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            merge(&mut node, &patch);
            self.objects
                .lock()
                .expect("objects")
                .insert(name.to_string(), node.clone());
        }
        node
    }
}
