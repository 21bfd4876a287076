//! `k3s server`: certificates, token, kubeconfig, the API listener on :6443 (with
//! the supervisor paths `/cacerts`, `/ping` and the agent protocol under
//! `/v1-k3s/`), its own node's registration and heartbeats, the controllers, and
//! READY=1 for systemd once all of that is serving.

use crate::api::Api;
use crate::config::Settings;
use crate::ha::{Datastore, EtcdStart};
use crate::nodes::{Cluster, NodeInfo, RegisterError};
use crate::store::{RESOURCES, Store};
use anyhow::{Context, Result, anyhow, bail};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default NotReady grace. Real Kubernetes uses 40s (50s since 1.32); the
/// simulator defaults shorter so fault tests stay fast, and honours
/// `kube-controller-manager-arg: [node-monitor-grace-period=NNs]`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(20);

/// Every local IPv4 address, from the kernel's FIB (no libc needed).
pub fn local_ipv4s() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut last = "";
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+', '`']).trim();
        if t.contains("/32 host LOCAL") {
            if !last.is_empty() && !out.iter().any(|o| o == last) {
                out.push(last.to_string());
            }
        } else if t.split('.').count() == 4 && t.parse::<std::net::Ipv4Addr>().is_ok() {
            last = t;
        }
    }
    out.retain(|ip| !ip.starts_with("127."));
    out
}

/// The address of the interface holding the default route (what K3s picks when
/// `node-ip` is not set). A UDP connect to the gateway sends nothing.
pub fn default_ip() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let gw_hex = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[2].to_string())
    })?;
    let gw = u32::from_str_radix(&gw_hex, 16).ok()?;
    let gw = std::net::Ipv4Addr::from(gw.to_le_bytes());
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect((gw, 9)).ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

pub fn node_name(settings: &Settings) -> String {
    let base = settings
        .str("node-name")
        .unwrap_or_else(crate::nodes::hostname)
        .to_lowercase();
    if settings.bool("with-node-id") {
        let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        let id = id.trim();
        let suffix = if id.len() >= 8 {
            id[..8].to_string()
        } else {
            crate::certs::random_hex(4)
        };
        format!("{base}-{suffix}")
    } else {
        base
    }
}

/// K3s's node password (pkg/agent/config/config.go `ensureNodePassword`): read from
/// `/etc/rancher/node/password`, or created there once (16 random bytes, hex, 0600).
pub fn node_password() -> Result<String> {
    let path = crate::host::node_password_file();
    if let Ok(p) = std::fs::read_to_string(&path) {
        return Ok(p.trim().to_string());
    }
    let p = crate::certs::random_hex(16);
    crate::certs::write_private(&path, format!("{p}\n").as_bytes(), 0o600)?;
    Ok(p)
}

pub fn node_labels(settings: &Settings) -> Result<std::collections::BTreeMap<String, String>> {
    settings
        .list("node-label")
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("invalid node-label {l:?}: expected key=value"))
        })
        .collect()
}

pub fn grace(settings: &Settings) -> Result<Duration> {
    match settings.component_arg("kube-controller-manager-arg", "node-monitor-grace-period") {
        Some(v) => crate::config::parse_duration(&v).ok_or_else(|| {
            anyhow!("invalid kube-controller-manager-arg node-monitor-grace-period={v}")
        }),
        None => Ok(DEFAULT_GRACE),
    }
}

fn kubeconfig(server: &str, tls: &crate::certs::ClusterTls) -> String {
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(&tls.ca_pem),
        b(&tls.admin_cert_pem),
        b(&tls.admin_key_pem)
    )
}

fn bootstrap(store: &Store) -> Result<()> {
    let mut st = store.lock();
    let ns_rt = &RESOURCES[0];
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if st.get(ns_rt, "", ns).is_none() {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": ns, "uid": crate::validate::uuid(), "creationTimestamp": crate::log::k8s_now(),
                "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            st.put(ns_rt, obj)?;
            crate::validate::namespace_created(&mut st, ns);
        }
    }
    let svc_rt = &RESOURCES[2];
    if st.get(svc_rt, "default", "kubernetes").is_none() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "kubernetes", "namespace": "default", "uid": crate::validate::uuid(),
            "creationTimestamp": crate::log::k8s_now(),
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}});
        st.put(svc_rt, svc)?;
    }
    Ok(())
}

pub async fn run(settings: Settings) -> Result<()> {
    crate::info!(
        "Starting k3s {} ({})",
        crate::version::version(),
        crate::version::commit()
    );
    if let Some(f) = &settings.config_file {
        crate::info!("Using config file {}", f.display());
    }
    if settings.str("datastore-endpoint").is_some() {
        bail!("k3s-sim runs SQLite or embedded etcd: --datastore-endpoint is not supported");
    }
    let data_dir = settings.data_dir();
    let listen = Listen::from(&settings)?;
    let own = OwnNode::from(&settings)?;
    let mode_bits = kubeconfig_mode(&settings)?;
    let sans = sans(&settings, &listen, &own);
    let (ds, tls, secrets) = credentials(&settings, &data_dir, &sans).await?;
    if settings.bool("cluster-reset") {
        let restore = settings.str("cluster-reset-restore-path");
        let ip = &own.internal_ip;
        crate::cluster_reset::run(&data_dir, restore.as_deref(), &own.name, ip, listen.port)?;
        return Ok(());
    }
    let store = open_store(ds, &data_dir)?;
    write_kubeconfig(&settings, &listen, &tls, mode_bits)?;
    // The embedded agent's kubelet certificates, signed afresh at each start.
    let kubelet = crate::leaf::sign_kubelet(&data_dir, &own.name, &own.internal_ip)?;
    crate::leaf::write_kubelet(&data_dir, &kubelet)?;

    let server_cfg = Arc::new(crate::http::server_config(&tls)?);
    let (bind, port) = (&listen.bind, listen.port);
    let listener = tokio::net::TcpListener::bind((listen.bind_ip, port))
        .await
        .map_err(|e| anyhow!("listen tcp {bind}:{port}: {e}"))?;
    crate::healthz::serve(&settings).await?;

    let cluster = Arc::new(Cluster {
        store: store.clone(),
        heartbeats: Mutex::new(HashMap::new()),
        grace: own.grace,
        secrets,
        data_dir: data_dir.clone(),
    });
    let api = Arc::new(Api {
        store: store.clone(),
        server_addr: format!("{}:{port}", own.internal_ip),
    });
    let ha = match ds {
        Datastore::Etcd(start) => Some(
            crate::ha_api::start_ha(
                start,
                &settings,
                &data_dir,
                (&own.name, &own.internal_ip, port, listen.bind_ip),
                &tls,
                &store,
                &cluster.secrets[0],
            )
            .await?,
        ),
        Datastore::Sqlite => None,
    };
    let routes = Arc::new(crate::routes::Routes {
        api,
        cluster: cluster.clone(),
        ha: ha.clone(),
        ca_pem: tls.ca_pem.clone(),
        data_dir: data_dir.clone(),
        config: crate::critical::config_json(&settings),
    });
    tokio::spawn(accept(
        listener,
        tokio_rustls::TlsAcceptor::from(server_cfg),
        routes,
    ));

    crate::info!("Kube API server is now running");
    let (name, grace) = (own.name.clone(), own.grace);
    let member = ha.as_ref().map(|h| h.ms.me.name.clone());
    // The embedded agent sets up containerd (its registries) before its kubelet.
    crate::registries::setup(&settings)?;
    crate::images::start(&settings.data_dir());
    register_own_node(own, &cluster, &listen, &tls, member).await?;
    spawn_controllers(cluster, tls.ca_pem.clone(), ha);
    crate::info!(
        "k3s is up and running (API on {bind}:{port}, node {name}, node-monitor-grace-period {grace:?})"
    );
    crate::notify::ready();
    crate::wait_for_signal().await;
    crate::info!("Shutting down k3s server");
    Ok(())
}

/// Where the API listens (`https-listen-port`, `bind-address`) and the host
/// its kubeconfig names.
struct Listen {
    port: u16,
    bind: String,
    bind_ip: IpAddr,
    /// The kubeconfig's host: loopback when bound to every address,
    /// bracketed when IPv6.
    kube_host: String,
}

impl Listen {
    fn from(settings: &Settings) -> Result<Listen> {
        let port: u16 = settings
            .str("https-listen-port")
            .map(|p| {
                p.parse()
                    .with_context(|| format!("invalid https-listen-port {p}"))
            })
            .transpose()?
            .unwrap_or(6443);
        let bind = settings
            .str("bind-address")
            .unwrap_or_else(|| "0.0.0.0".into());
        let bind_ip: IpAddr = bind
            .parse()
            .with_context(|| format!("invalid bind-address {bind}"))?;
        let kube_host = if bind_ip.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            bind.clone()
        };
        let kube_host = if kube_host.contains(':') {
            format!("[{kube_host}]")
        } else {
            kube_host
        };
        Ok(Listen {
            port,
            bind,
            bind_ip,
            kube_host,
        })
    }
}

/// The server's own node as its settings describe it.
struct OwnNode {
    name: String,
    node_ips: Vec<String>,
    internal_ip: String,
    hostname: String,
    grace: Duration,
    taints: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
}

impl OwnNode {
    fn from(settings: &Settings) -> Result<OwnNode> {
        let name = node_name(settings);
        let node_ips = settings.list("node-ip");
        let internal_ip = node_ips
            .first()
            .cloned()
            .or_else(|| settings.str("advertise-address"))
            .or_else(default_ip)
            .or_else(|| local_ipv4s().into_iter().next())
            .unwrap_or_else(|| "127.0.0.1".into());
        let hostname = crate::nodes::hostname();
        let grace = grace(settings)?;
        let taints = settings.list("node-taint");
        crate::nodes::validate_taints(&taints)?;
        let labels = node_labels(settings)?;
        Ok(OwnNode {
            name,
            node_ips,
            internal_ip,
            hostname,
            grace,
            taints,
            labels,
        })
    }
}

/// `write-kubeconfig-mode` as bits (0600 when unset).
fn kubeconfig_mode(settings: &Settings) -> Result<u32> {
    match settings.str("write-kubeconfig-mode") {
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|b| *b <= 0o777)
            .ok_or_else(|| {
                anyhow!("invalid write-kubeconfig-mode {m:?}: expected an octal mode such as 0600")
            }),
        None => Ok(0o600),
    }
}

/// The names and addresses the serving certificate covers.
fn sans(settings: &Settings, listen: &Listen, own: &OwnNode) -> Vec<String> {
    let mut sans: Vec<String> = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "10.43.0.1".into(),
        own.hostname.clone(),
        own.name.clone(),
        own.internal_ip.clone(),
    ];
    sans.extend(own.node_ips.iter().cloned());
    sans.extend(settings.str("advertise-address"));
    sans.extend(local_ipv4s());
    if !listen.bind_ip.is_unspecified() {
        sans.push(listen.bind.clone());
    }
    sans.extend(settings.list("tls-san"));
    sans.sort();
    sans.dedup();
    sans
}

/// Picks the datastore (fetching a joining server's bootstrap data), then
/// the certificates and the tokens: the server token first, then the agent
/// token when set.
async fn credentials(
    settings: &Settings,
    data_dir: &Path,
    sans: &[String],
) -> Result<(Datastore, crate::certs::ClusterTls, Vec<String>)> {
    let raw_token = settings.str("token").or(token_file(settings)?);
    let join_url = settings.str("server");
    let ds = crate::ha::select(
        data_dir,
        settings.bool("cluster-init"),
        join_url.is_some() && raw_token.is_some(),
    );
    if let (Datastore::Etcd(EtcdStart::Join), Some(url), Some(t)) = (ds, &join_url, &raw_token) {
        let token = settings.str("agent-token").unwrap_or_else(|| t.clone());
        crate::ha_api::compare_config(url, &token, settings).await?;
        crate::ha_api::fetch_bootstrap(url, t, data_dir).await?;
    }
    let tls = crate::certs::ensure(data_dir, sans)?;
    let secret = crate::certs::ensure_token(data_dir, raw_token.as_deref(), &tls.ca_pem)?;
    let mut secrets = vec![secret];
    if let Some(agent_token) = settings.str("agent-token") {
        let t = crate::certs::parse_token(&agent_token)?;
        let full = format!(
            "K10{}::node:{}\n",
            crate::certs::ca_hash(&tls.ca_pem),
            t.secret
        );
        crate::certs::write_agent_token(data_dir, &full)?;
        secrets.push(t.secret);
    } else {
        crate::certs::link_to_token(data_dir, "agent-token")?;
    }
    Ok((ds, tls, secrets))
}

/// The datastore's store, seeded with the default namespaces and Service
/// unless a joining server takes everything from the leader.
fn open_store(ds: Datastore, data_dir: &Path) -> Result<Store> {
    if let Datastore::Etcd(start) = ds {
        crate::ha::prepare_etcd(data_dir, start)?;
    }
    let store = Store::open(ds.store_file(data_dir))?;
    if ds != Datastore::Etcd(EtcdStart::Join) {
        bootstrap(&store)?;
    }
    Ok(store)
}

fn write_kubeconfig(
    settings: &Settings,
    listen: &Listen,
    tls: &crate::certs::ClusterTls,
    mode_bits: u32,
) -> Result<()> {
    let kc_path = PathBuf::from(
        settings
            .str("write-kubeconfig")
            .unwrap_or_else(|| "/etc/rancher/k3s/k3s.yaml".into()),
    );
    let url = format!("https://{}:{}", listen.kube_host, listen.port);
    crate::certs::write_private(&kc_path, kubeconfig(&url, tls).as_bytes(), mode_bits)?;
    crate::info!("Wrote kubeconfig {}", kc_path.display());
    Ok(())
}

/// Accepts TLS connections on the API port for ever, each served on its own.
async fn accept(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    routes: Arc<crate::routes::Routes>,
) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(tcp, acceptor.clone(), routes.clone()));
    }
}

/// One API connection: the TLS handshake (10 s at most), then HTTP/1.1;
/// a client certificate makes its requests authenticated.
async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    routes: Arc<crate::routes::Routes>,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            crate::debug!("TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let authed = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let routes = routes.clone();
        async move { Ok::<_, std::convert::Infallible>(routes.route(authed, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

/// The server's embedded agent: it checks cgroups first (pkg/agent/run.go
/// Run), then its kubelet validates its flags (pkg/daemons/executor/embed.go);
/// then the node registers, through the etcd leader when there is HA.
async fn register_own_node(
    own: OwnNode,
    cluster: &Arc<Cluster>,
    listen: &Listen,
    tls: &crate::certs::ClusterTls,
    member: Option<String>,
) -> Result<()> {
    let ha = member.is_some();
    crate::cgroups::validate()?;
    if let Err(e) = crate::nodes::validate_kubelet_labels(&own.labels) {
        crate::kubelet_exited(&e);
    }
    let info = NodeInfo {
        name: own.name,
        internal_ip: own.internal_ip,
        hostname: own.hostname,
        labels: own.labels,
        taints: own.taints,
        os_image: crate::nodes::os_image(),
        kernel_version: crate::nodes::kernel_version(),
        kubelet_version: crate::version::version().to_string(),
        arch: crate::nodes::arch().to_string(),
        server: true,
        etcd: ha,
        etcd_name: member.unwrap_or_default(),
        password: node_password()?,
    };
    if ha {
        let auth = format!("server:{}", cluster.secrets[0]);
        let url = crate::http::Url {
            host: listen.kube_host.trim_matches(['[', ']']).to_string(),
            port: listen.port,
        };
        crate::ha_api::run_node(url, &tls.ca_pem, auth, info).await
    } else {
        own_node(cluster, info)
    }
}

/// kube-controller-manager's loops, every 500 ms where etcd's leader is.
fn spawn_controllers(cluster: Arc<Cluster>, ca: String, ha: Option<Arc<crate::replicate::Ha>>) {
    tokio::spawn(async move {
        loop {
            if ha.as_ref().is_none_or(|h| h.ms.is_leader()) {
                cluster.reconcile();
                crate::tokens::reconcile(&cluster.store, &ca);
                if let Some(ha) = &ha {
                    crate::members::reconcile(ha).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Registers the server's own node in its SQLite store and keeps it alive.
fn own_node(cluster: &Arc<Cluster>, info: NodeInfo) -> Result<()> {
    let name = info.name.clone();
    match cluster.register(&info) {
        Ok(()) => {}
        Err(RegisterError::PasswordRejected) => {
            bail!("Node password rejected for the server's own node {name}")
        }
        Err(RegisterError::Invalid(m)) => bail!("{m}"),
        Err(RegisterError::Store(e)) => return Err(e),
    }
    {
        let cluster = cluster.clone();
        let name = name.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match cluster.heartbeat(&name) {
                    Ok(true) => {}
                    Ok(false) => {
                        if let Err(RegisterError::Store(e)) = cluster.register(&info) {
                            crate::error!("re-registering node {name}: {e}");
                        }
                    }
                    Err(e) => crate::error!("node heartbeat: {e}"),
                }
            }
        });
    }
    Ok(())
}

pub fn token_file(settings: &Settings) -> Result<Option<String>> {
    match settings.str("token-file") {
        Some(f) => std::fs::read_to_string(&f)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| anyhow!("reading token-file {f}: {e}")),
        None => Ok(None),
    }
}
