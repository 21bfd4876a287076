//! Fakes for the runner's fast tests: nodes simulated in memory behind the
//! real [`Transport`] and [`Connector`] seams, and an API that answers the
//! node list. A fake node answers the facts script from its state, keeps
//! what is uploaded, starts units when the service scripts run, and records
//! every call in one log shared by all nodes, so tests can assert order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::connect::Connector;
use crate::artifacts::sha256_hex;
use crate::facts::{self, paths};
use crate::inventory::Node;
use crate::transport::{BoxFuture, Output, RemoteCommand, Transport, TransportError};

pub use super::fake_api::FakeApi;

#[path = "fake_guard.rs"]
mod guard;
#[path = "fake_relay.rs"]
mod relay;

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
    /// A request to the fake API: `cordon N`, `uncordon N`, `evict NS/P`,
    /// or `METHOD PATH` (logged as node `api`, when the API has a fleet).
    Api(String),
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
    /// `uname -m` (`x86_64` when unset).
    pub uname: Option<String>,
    /// Relay: files this node serves, by URL path (its share server).
    pub shares: BTreeMap<String, String>,
    /// The addresses the share server answers (its unit's IP allow-list).
    pub share_peers: Vec<String>,
    /// Relay: the share server fails to start.
    pub share_fails: bool,
    /// Relay: the node has no curl.
    pub no_curl: bool,
    /// Relay: staged copies are altered on disk after they are written.
    pub tamper_staged: bool,
    /// A server's datastore on disk: `sqlite` or `etcd` (set at its first
    /// start as K3s chooses it: etcd with cluster-init or server:, and
    /// SQLite moved into etcd by a start with cluster-init).
    pub datastore: Option<&'static str>,
    /// The version the running K3s reported when it started (the Node's
    /// kubeletVersion in the fake API).
    pub running: Option<String>,
    /// A Raspberry Pi: its kernel, and whether this boot has memory on.
    pub pi: Option<FakePi>,
    /// `/run/pictl.lock`: the holding connection's id and the holder's words.
    pub lock: Option<(u64, String)>,
    /// The data dir's device (`/dev/sda2` when unset), its disk and
    /// `queue/rotational` (`sda 0` when unset), and the fsync probe's
    /// microseconds for its 20 writes (reported when set, as the script
    /// reports it on etcd servers).
    pub data_dev: Option<String>,
    pub data_disk: Option<String>,
    pub fsync_us: Option<u64>,
    /// A release K3s fails to start with here (its restart exits 1).
    pub broken_release: Option<String>,
    /// K3s's etcd snapshot fails (its etcd does not answer).
    pub snapshot_fails: bool,
    /// The binary and version an upgrade's guard kept.
    pub previous: Option<(Vec<u8>, Option<String>)>,
    /// K3s's leaf certificates: (days left when signed, the PEM body);
    /// see [`NodeState::sign_certs`].
    pub certs: Option<(i64, String)>,
    /// K3s does not renew its certificates at a start.
    pub keeps_certs: bool,
}

/// A Pi's kernel as pictl sees it: `uname -r`, and the memory controller on
/// when the kernel has it by default or the `cmdline.txt` it booted with
/// (the file at [`FakePi::CMDLINE`]) says `cgroup_enable=memory`.
#[derive(Debug, Clone, Default)]
pub struct FakePi {
    pub kernel: String,
    pub memory_by_default: bool,
    /// A kernel the flags do not reach (memory stays as by default).
    pub ignores_cmdline: bool,
    pub memory_on: bool,
}

impl FakePi {
    pub const CMDLINE: &str = "/boot/firmware/cmdline.txt";

    /// A Pi with `cmdline` in its cmdline.txt, booted with it.
    pub fn boot(s: &mut NodeState, kernel: &str, memory_by_default: bool, cmdline: &str) {
        s.files
            .insert(Self::CMDLINE.into(), cmdline.as_bytes().to_vec());
        s.pi = Some(FakePi {
            kernel: kernel.into(),
            memory_by_default,
            ignores_cmdline: false,
            memory_on: false,
        });
        Self::reboot(s);
    }

    /// A new boot: the kernel reads the command line as the file says now.
    fn reboot(s: &mut NodeState) {
        let line =
            String::from_utf8_lossy(s.files.get(Self::CMDLINE).map_or(&[][..], |b| b)).into_owned();
        s.boot += 1;
        // /run is a tmpfs: the node lock is gone with the boot.
        s.lock = None;
        if let Some(pi) = &mut s.pi {
            let line = if pi.ignores_cmdline { "" } else { &line };
            pi.memory_on = line
                .split_whitespace()
                .fold(pi.memory_by_default, |on, w| match w {
                    "cgroup_enable=memory" => true,
                    "cgroup_disable=memory" => false,
                    _ => on,
                });
        }
    }
}

pub const KUBECONFIG: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

/// All fake nodes, by name.
#[derive(Clone, Default)]
pub struct Fleet {
    pub nodes: Arc<Mutex<BTreeMap<String, Arc<Mutex<NodeState>>>>>,
    pub log: Log,
    /// Node names by address (for URLs between nodes).
    pub addresses: Arc<Mutex<BTreeMap<String, String>>>,
    /// When set, a k3s binary uploaded to a node reports this version.
    pub release: Arc<Mutex<Option<String>>>,
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
            self.addresses
                .lock()
                .expect("addresses")
                .insert(node.address.clone(), node.name.clone());
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
                address: node.address.clone(),
                fleet: self.clone(),
                name: node.name.clone(),
                server: node.role == crate::inventory::Role::Server,
                state,
                log: self.log.clone(),
                release: self.release.clone(),
                trips: Default::default(),
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            };
            Ok(Arc::new(t) as Arc<dyn Transport>)
        })
    }
}

pub struct FakeTransport {
    name: String,
    address: String,
    fleet: Fleet,
    server: bool,
    state: Arc<Mutex<NodeState>>,
    log: Log,
    release: Arc<Mutex<Option<String>>>,
    trips: std::sync::atomic::AtomicU64,
    /// Which connection this is (the node lock is held per connection).
    id: u64,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A connection's end releases the node lock it held, as on a real node.
impl Drop for FakeTransport {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.lock.as_ref().is_some_and(|(id, _)| *id == self.id) {
            s.lock = None;
        }
    }
}

fn line(key: &str, value: &str) -> String {
    facts::record(key, value)
}

impl FakeTransport {
    fn facts(&self, s: &NodeState) -> String {
        let mut out = String::new();
        for (k, v) in [
            ("uname", s.uname.as_deref().unwrap_or("x86_64")),
            ("os", "Debian GNU/Linux 12 (bookworm)"),
            ("machine_id", &format!("id-{}", self.name)),
            ("hostname", &self.name),
            ("boot_id", &format!("boot-{}", s.boot)),
            ("now", &super::connect::now_epoch().to_string()),
            ("started_with", &s.started_with),
            ("addresses", &self.address),
            ("data_dev", s.data_dev.as_deref().unwrap_or("/dev/sda2")),
            ("data_disk", s.data_disk.as_deref().unwrap_or("sda 0")),
        ] {
            out.push_str(&line(k, v));
        }
        if let Some(us) = s.fsync_us {
            out.push_str(&line("fsync", &format!("0 20 {us}")));
        }
        match &s.pi {
            Some(pi) => {
                let cgroups = if pi.memory_on {
                    "cpuset cpu io memory pids"
                } else {
                    "cpuset cpu io pids"
                };
                out.push_str(&line("kernel", &pi.kernel));
                out.push_str(&line("cgroup2", cgroups));
                let cmdline = s.files.get(FakePi::CMDLINE).map_or(&[][..], |b| b);
                out.push_str(&line("cmdline_path", FakePi::CMDLINE));
                out.push_str(&line(
                    "cmdline",
                    String::from_utf8_lossy(cmdline).trim_end(),
                ));
            }
            None => out.push_str(&line("cgroup2", "cpuset cpu memory pids")),
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
        // The image archives the facts command names beside MANAGED.
        for (path, bytes) in &s.files {
            if path.contains("/agent/images/k3s-airgap-images-") {
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
            let installed = s.files.keys().any(|p| p.ends_with(&format!("/{unit}")));
            let load = if installed { "loaded" } else { "not-found" };
            let props = format!(
                "LoadState={load} ActiveState={active} UnitFileState={enabled} NeedDaemonReload=no"
            );
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
        if let Some(d) = s.datastore {
            out.push_str(&line("datastore", d));
        }
        out.push_str(&s.cert_records(self.server));
        let managed = s
            .files
            .get(paths::CONFIG)
            .is_some_and(|c| c.starts_with(b"# Managed"));
        if let Some(url) = configured(s, "server:").filter(|_| managed) {
            out.push_str(&line("joined", &url));
        }
        // The health-agent step's unit runs as the pictl-agent user it creates.
        if s.files.contains_key(paths::HEALTH_AGENT_UNIT) {
            out.push_str(&line("agent_ids", "998 998"));
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
        if self.server && s.datastore != Some("etcd") {
            let etcd = configured(s, "cluster-init:").is_some_and(|v| v == "true")
                || configured(s, "server:").is_some();
            s.datastore = Some(if etcd { "etcd" } else { "sqlite" });
        }
        s.running = Some(
            s.k3s_version
                .clone()
                .unwrap_or_else(|| "v1.32.5+k3s1".into()),
        );
        s.renew_certs();
        // Like K3s, the tokens are written at the first start and kept.
        if self.server && s.server_token.is_none() {
            s.server_token = Some(configured_token(s));
        }
        if self.server && s.agent_token.is_none() {
            s.agent_token = configured(s, "agent-token:").map(|a| format!("K10abc::node:{a}"));
        }
        let inputs = args.get(9..).unwrap_or_default();
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

/// The token K3s writes: `K10<ca-hash>::server:<secret>`, the secret
/// parsed from its config's token (a full token or a bare secret, as
/// K3s's pkg/clientaccess/token.go parses either).
fn configured_token(s: &NodeState) -> String {
    let configured = configured(s, "token:").unwrap_or_default();
    format!(
        "K10abc::server:{}",
        crate::secret::token_password(&configured)
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
            if let Some(out) = self.relay(cmd, &script, &mut s) {
                return Ok(out);
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
            if let Some(out) = self.guard(cmd, &script, &mut s) {
                return Ok(out);
            }
            if cmd
                .argv()
                .join(" ")
                .ends_with("systemctl --no-block reboot")
            {
                FakePi::reboot(&mut s);
            } else if script.contains(".pictl-reset-uninstall.sh") {
                s.files.clear();
                s.active.clear();
                s.enabled.clear();
                s.started_with.clear();
                s.server_token = None;
            } else if script == crate::steps::REMOVE_AGENT_SCRIPT {
                for f in crate::steps::AGENT_FILES {
                    s.files.remove(f);
                }
                s.active.remove("pictl-agent.service");
                s.enabled.remove("pictl-agent.service");
            } else if script.contains("k3s-started-with") {
                if s.broken_release.is_some() && s.broken_release == s.k3s_version {
                    return Ok(Output {
                        status: 1,
                        stderr: b"Job for k3s.service failed".to_vec(),
                        ..Output::default()
                    });
                }
                self.start(&mut s, cmd);
            } else if script.contains("pictl-agent.service") {
                s.active.insert("pictl-agent.service".into());
                s.enabled.insert("pictl-agent.service".into());
            }
            Ok(ok(String::new()))
        })
    }

    /// Only the node lock's script is held: unless another connection
    /// holds the lock (exit 75 with the holder's words), it is taken and
    /// the command it wraps runs (its exec counts the one round trip).
    fn hold<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        ready: &'a str,
        _within: std::time::Duration,
    ) -> BoxFuture<'a, Result<crate::transport::Holding, TransportError>> {
        use crate::transport::Holding;
        Box::pin(async move {
            let args = cmd.arguments();
            assert_eq!(ready, "pictl-locked", "only the node lock is held");
            // `timeout -k 5 SECS program args...` or `program args...`.
            let at = if args[5] == "timeout" { 9 } else { 5 };
            let inner = RemoteCommand::new(args[at].clone()).args(args[at + 1..].iter().cloned());
            {
                let mut s = self.state.lock().expect("node");
                if let Some((_, words)) = s.lock.as_ref().filter(|(id, _)| *id != self.id) {
                    return Ok(Holding::Exited(Output {
                        status: 75,
                        stdout: format!("pictl-lock-held\n{words}\n").into_bytes(),
                        ..Output::default()
                    }));
                }
                s.lock = Some((self.id, format!("{}, pid 1 on the node", args[3])));
            }
            let out = self.exec(&inner).await?;
            if out.success() {
                Ok(Holding::Running(out))
            } else {
                self.state.lock().expect("node").lock = None;
                Ok(Holding::Exited(out))
            }
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
            // An upload is a round trip: nodes worked on together interleave.
            tokio::task::yield_now().await;
            self.trips
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.log
                .lock()
                .expect("log")
                .push((self.name.clone(), Call::Put(path.to_string())));
            let mut s = self.state.lock().expect("node");
            if !s.lost_uploads.contains(path) {
                let mut contents = contents.to_vec();
                if s.tamper_staged && path.starts_with(crate::relay::STAGE_ROOT) {
                    contents.push(b'!');
                }
                s.files.insert(path.to_string(), contents);
                if path == paths::K3S_BIN
                    && let Some(v) = self.release.lock().expect("release").clone()
                {
                    s.k3s_version = Some(v);
                }
            }
            Ok(())
        })
    }

    fn round_trips(&self) -> u64 {
        self.trips.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A loopback HTTP server (the fake fleet's release mirror): each request's
/// head goes to `body`, whose bytes are answered with 200. Returns its URL.
pub async fn serve_http(body: fn(&str) -> Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let body = body(&String::from_utf8_lossy(&buf[..n]));
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.write_all(&body).await;
        }
    });
    format!("http://{addr}")
}
