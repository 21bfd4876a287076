//! What HA changes on a server's :6443: joining (the CA from
//! `/v1-k3s/server-bootstrap`, the members from `/db/info`, as
//! pkg/cluster/bootstrap.go and pkg/etcd/etcd.go `join` do), API requests
//! served against the shared store (reads once this copy caught up with the
//! leader, writes forwarded to the leader's apiserver and acknowledged on a
//! majority), and the answers an apiserver gives when etcd has no quorum.

use crate::api::{Api, Resp, json_resp, status_err, text_resp, unauthorized};
use crate::auth::User;
use crate::config::Settings;
use crate::ha::{EtcdStart, Member, QUORUM_WAIT};
use crate::http::{Url, pinned_client, request, request_with};
use crate::nodes::Cluster;
use crate::replicate::Ha;
use crate::store::Store;
use anyhow::{Result, anyhow, bail};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A write etcd could not commit: the apiserver passes etcd's error on as a
/// Status with no reason (k8s.io/apiserver responsewriters `ErrorToAPIStatus`).
pub fn etcd_timeout() -> Resp {
    status_err(500, "", "etcdserver: request timed out", Value::Null)
}

/// A read that waited for etcd in vain: the apiserver's timeout filter
/// (k8s.io/apiserver pkg/server/filters/timeout.go).
pub fn read_timeout() -> Resp {
    status_err(
        504,
        "Timeout",
        "Timeout: request did not complete within requested timeout - context deadline exceeded",
        json!({"retryAfterSeconds": 0}),
    )
}

fn http_status(code: u16) -> String {
    let text = match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    format!("{code} {text}").trim_end().to_string()
}

/// The CA a joining server fetches with the server token (K3s's bootstrap data;
/// the simulator's cluster has one CA), and the serving key's Secret. Real K3s
/// does not ship `k3s-serving` in the bootstrap data: each server's dynamiclistener
/// loads it from the datastore once synced (pkg/cluster/https.go `tlsStorage`,
/// dynamiclistener storage/kubernetes), so every server serves the same key; the
/// simulator hands it over at the join to reach that state without a reloadable
/// listener.
pub fn bootstrap_data(data_dir: &std::path::Path) -> Resp {
    let tls = data_dir.join("server/tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap_or_default();
    json_resp(
        200,
        &json!({
            "server-ca.crt": read("server-ca.crt"),
            "server-ca.key": read("server-ca.key"),
            "k3s-serving": read(crate::certs::DYNAMIC_CERT),
        }),
    )
}

/// pkg/cluster/bootstrap.go `compareConfig`: the critical args of the
/// server joined (`/v1-k3s/config`, as user `node` with the agent token
/// when set, else the token) against this one's; a config that cannot be
/// fetched is skipped with K3s's warning.
pub async fn compare_config(
    server: &str,
    raw_token: &str,
    settings: &crate::config::Settings,
) -> Result<()> {
    let (url, ca_pem, secret) = crate::agent::validate_token(server, raw_token)
        .await
        .map_err(|e| anyhow!("failed to validate server configuration: {e:#}"))?;
    let client = pinned_client(&ca_pem)?;
    let auth = format!("node:{secret}");
    let got = request(client, &url, "GET", "/v1-k3s/config", Some(&auth), b"").await;
    if let Ok(r) = &got {
        crate::debug!(
            "cluster configuration from {server}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let config = match got {
        Ok(r) if r.status == 200 => serde_json::from_slice::<Value>(&r.body)?,
        Ok(r) => {
            let status = http_status(r.status);
            crate::warn!("Skipping cluster configuration validation: {status}");
            return Ok(());
        }
        Err(e) => {
            crate::warn!("Skipping cluster configuration validation: {e:#}");
            return Ok(());
        }
    };
    crate::critical::compare(settings, &config)
}

/// pkg/cluster/bootstrap.go: validate the token against `server` (CA pinned as
/// for agents), then take the cluster's CA. Any failure is fatal for a server.
pub async fn fetch_bootstrap(
    server: &str,
    raw_token: &str,
    data_dir: &std::path::Path,
) -> Result<String> {
    let (url, ca_pem, secret) = crate::agent::validate_token(server, raw_token)
        .await
        .map_err(|e| anyhow!("failed to validate token: {e:#}"))?;
    let r = request(
        pinned_client(&ca_pem)?,
        &url,
        "GET",
        "/v1-k3s/server-bootstrap",
        Some(&format!("server:{secret}")),
        b"",
    )
    .await?;
    if r.status != 200 {
        bail!(
            "failed to get bootstrap data: {}/v1-k3s/server-bootstrap: {}",
            server.trim_end_matches('/'),
            http_status(r.status)
        );
    }
    let v: Value = serde_json::from_slice(&r.body)?;
    let tls = data_dir.join("server/tls");
    // Certificates from another cluster's CA (this data dir ran on its own)
    // are issued again under the cluster's.
    let local = std::fs::read_to_string(tls.join("server-ca.crt")).ok();
    if local.is_some_and(|l| Some(l.as_str()) != v["server-ca.crt"].as_str()) {
        for f in [
            crate::certs::DYNAMIC_CERT,
            "client-admin.crt",
            "client-admin.key",
        ] {
            let _ = std::fs::remove_file(tls.join(f));
        }
    }
    for (f, mode) in [("server-ca.crt", 0o644), ("server-ca.key", 0o600)] {
        let text = v[f].as_str().unwrap_or_default();
        if text.is_empty() {
            bail!("bootstrap data from {server} has no {f}");
        }
        crate::certs::write_private(&tls.join(f), text.as_bytes(), mode)?;
    }
    crate::certs::write_private(
        &tls.join("client-ca.crt"),
        v["server-ca.crt"].as_str().unwrap_or_default().as_bytes(),
        0o644,
    )?;
    // The cluster's serving key (the shared `k3s-serving` Secret).
    if let Some(shared) = v["k3s-serving"].as_str().filter(|s| !s.is_empty()) {
        crate::certs::write_private(
            &tls.join(crate::certs::DYNAMIC_CERT),
            shared.as_bytes(),
            0o600,
        )?;
    }
    Ok(secret)
}

/// pkg/etcd/etcd.go `join`: the member list from `/db/info` (retried every
/// second while the server cannot give one, as K3s does), then the member added.
pub async fn join(ha: &Arc<Ha>, server: &str, secret: &str, ca_pem: &str) -> Result<()> {
    let url = crate::http::parse_server_url(server)?;
    let info = format!("{}/db/info", server.trim_end_matches('/'));
    let members: Vec<Member> = loop {
        match request(
            pinned_client(ca_pem)?,
            &url,
            "GET",
            "/db/info",
            Some(&format!("server:{secret}")),
            b"",
        )
        .await
        {
            Ok(r) if r.status == 200 => break serde_json::from_slice(&r.body)?,
            Ok(r) => crate::info!(
                "Waiting to retrieve etcd cluster member list: failed to get MemberList from server: {info}: {}",
                http_status(r.status)
            ),
            Err(e) => crate::info!(
                "Waiting to retrieve etcd cluster member list: failed to get MemberList from server: {e:#}"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let list: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect();
    let me = ha.ms.me.clone();
    crate::info!(
        "Adding member {}={} to etcd cluster {list:?}",
        me.name,
        me.peer_url
    );
    loop {
        for m in &members {
            if let Ok(now) = ha
                .peer::<Vec<Member>>(m, "POST", "/sim/raft/join", &me)
                .await
            {
                let names: Vec<String> = now
                    .iter()
                    .map(|m| format!("{}={}", m.name, m.peer_url))
                    .collect();
                ha.ms.set_members(now)?;
                crate::info!("Starting etcd to join cluster with members {names:?}");
                return Ok(());
            }
        }
        crate::info!(
            "Waiting for other members to finish joining etcd cluster: etcdserver: unhealthy cluster"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whom to ask, or None after QUORUM_WAIT without a leader.
async fn leader(ha: &Ha) -> Option<Member> {
    let until = Instant::now() + QUORUM_WAIT;
    loop {
        if let Some(m) = ha.ms.leader_member() {
            return Some(m);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A quorum read on a follower: wait until this copy holds what the leader had
/// when asked (etcd's ReadIndex).
async fn caught_up(ha: &Ha, leader: &Member) -> bool {
    let Ok(s) = ha
        .peer::<crate::ha::Status>(leader, "GET", "/sim/raft/status", &())
        .await
    else {
        return false;
    };
    let until = Instant::now() + QUORUM_WAIT;
    while ha.store.lock().rv < s.rv {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Sends the request to the leader's apiserver (mutual TLS) and relays the answer.
async fn forward(ha: &Ha, leader: &Member, req: Request<Incoming>, user: &User) -> Result<Resp> {
    let method = req.method().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let mut headers = Vec::new();
    for h in ["content-type", "accept", "authorization"] {
        if let Some(v) = req.headers().get(h).and_then(|v| v.to_str().ok()) {
            headers.push((h, v.to_string()));
        }
    }
    let body = crate::http::read_body(req.into_body(), 3 * 1024 * 1024).await?;
    let url: Url = crate::http::parse_server_url(&leader.api_url)?;
    let r = request_with(ha.api_client(user), &url, &method, &pq, &headers, &body).await?;
    Ok(Response::builder()
        .status(r.status)
        .header("Content-Type", r.content_type)
        .body(crate::http::Body::full(r.body))?)
}

fn local_only(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    matches!(first, "version" | "healthz" | "livez" | "openapi")
        || path == "/api"
        || path == "/api/v1"
        || (first == "apis" && path.split('/').filter(|s| !s.is_empty()).count() <= 3)
}

/// An authenticated API request on an etcd server.
pub async fn api(ha: Arc<Ha>, api: Arc<Api>, req: Request<Incoming>, user: User) -> Resp {
    let path = req.uri().path().to_string();
    if path == "/readyz" && ha.ms.leader_member().is_none() {
        return text_resp(500, "[-]etcd failed: reason withheld\nreadyz check failed");
    }
    if local_only(&path) || path == "/readyz" {
        return api.handle(req, user).await;
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let Some(leader) = leader(&ha).await else {
        return if write {
            etcd_timeout()
        } else {
            read_timeout()
        };
    };
    if leader.name == ha.ms.me.name {
        let resp = api.handle(req, user).await;
        let target = ha.store.lock().rv;
        if write && !ha.commit(target).await {
            return etcd_timeout();
        }
        return resp;
    }
    if write {
        return forward(&ha, &leader, req, &user).await.unwrap_or_else(|e| {
            crate::warn!("forwarding to the etcd leader {}: {e:#}", leader.name);
            etcd_timeout()
        });
    }
    if !caught_up(&ha, &leader).await {
        return read_timeout();
    }
    api.handle(req, user).await
}

/// The agent protocol's writes (register, heartbeat) go to the leader too.
pub async fn supervisor(ha: Arc<Ha>, cluster: Arc<Cluster>, req: Request<Incoming>) -> Resp {
    let Some(leader) = leader(&ha).await else {
        return etcd_timeout();
    };
    if leader.name != ha.ms.me.name {
        return forward(&ha, &leader, req, &User::Admin)
            .await
            .unwrap_or_else(|_| etcd_timeout());
    }
    let path = req.uri().path();
    let node_call = path == "/v1-k3s/sim/heartbeat" || path == "/v1-k3s/sim/register";
    let resp = crate::supervisor::serve(cluster, req).await;
    let target = ha.store.lock().rv;
    if !ha.commit(target).await {
        return etcd_timeout();
    }
    if node_call && resp.status() == 200 {
        // What K3s agents learn from the apiserver endpoints for their load
        // balancer (pkg/agent/loadbalancer): every server's address.
        let servers: Vec<String> = ha.ms.members().into_iter().map(|m| m.api_url).collect();
        // The answer keeps what the supervisor said (a registration's
        // kubelet certificates) with the servers added.
        let mut answer = match resp.into_body() {
            crate::http::Body::Full(Some(b)) => {
                serde_json::from_slice::<Value>(&b).unwrap_or_else(|_| json!({}))
            }
            _ => json!({}),
        };
        answer["ok"] = json!(true);
        answer["servers"] = json!(servers);
        return json_resp(200, &answer);
    }
    resp
}

/// `/db/info` (pkg/etcd/etcd.go `infoHandler`), for the server token only.
pub fn db_info(ha: &Ha, authorized: bool) -> Resp {
    if !authorized {
        return unauthorized();
    }
    json_resp(
        200,
        &serde_json::to_value(ha.ms.members()).unwrap_or_default(),
    )
}

/// The server's own node in an HA cluster registers and heartbeats through its
/// own apiserver like an agent, so the leader records it. Returns once the
/// node is registered (READY=1 comes after that, as without HA).
pub async fn run_node(
    url: Url,
    ca_pem: &str,
    auth: String,
    info: crate::nodes::NodeInfo,
) -> Result<()> {
    let client = pinned_client(ca_pem)?;
    let body = serde_json::to_vec(&info)?;
    let post = move |path: &'static str, b: Vec<u8>| {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        async move { request(client, &url, "POST", path, Some(&auth), &b).await }
    };
    loop {
        match post("/v1-k3s/sim/register", body.clone()).await {
            Ok(r) if r.status == 200 => break,
            Ok(r) if r.status == 403 => {
                bail!(
                    "Node password rejected for the server's own node {}",
                    info.name
                )
            }
            Ok(r) => crate::warn!("registering node {}: {}", info.name, http_status(r.status)),
            Err(e) => crate::warn!("registering node {}: {e:#}", info.name),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let hb = serde_json::to_vec(&json!({"name": info.name}))?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match post("/v1-k3s/sim/heartbeat", hb.clone()).await {
                Ok(r) if r.status == 404 => {
                    let _ = post("/v1-k3s/sim/register", body.clone()).await;
                }
                Ok(_) => {}
                Err(e) => crate::warn!("node heartbeat: {e:#}"),
            }
        }
    });
    Ok(())
}

/// Starts this server's etcd member: the peer listener, the join (a new
/// member), the election.
pub async fn start_ha(
    start: EtcdStart,
    settings: &Settings,
    data_dir: &std::path::Path,
    (node, ip, port, bind): (&str, &str, u16, IpAddr),
    tls: &crate::certs::ClusterTls,
    store: &Store,
    secret: &str,
) -> Result<Arc<crate::replicate::Ha>> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let me = Member {
        name: crate::ha::member_name(data_dir, node)?,
        peer_url: format!("https://{host}:{}", crate::replicate::PEER_PORT),
        api_url: format!("https://{host}:{port}"),
    };
    let mut members = crate::ha::load_members(data_dir)?;
    if members.is_empty() && start == EtcdStart::New {
        members = vec![me.clone()];
        crate::ha::save_members(data_dir, &members)?;
    }
    let ms = crate::ha::Membership {
        me,
        data_dir: data_dir.to_path_buf(),
        members: Mutex::new(members),
        view: Mutex::new(crate::ha::View::default()),
    };
    let peer = crate::peer_tls::ensure(data_dir, &[ip.to_string(), node.to_string()])?;
    let ha = crate::replicate::Ha::new(ms, store.clone(), tls, peer)?;
    ha.serve_peers(bind, tls).await?;
    match start {
        EtcdStart::New => crate::info!("Starting etcd for new cluster"),
        EtcdStart::Existing => crate::info!("Starting etcd for existing cluster member"),
        EtcdStart::Join => {
            let server = settings.str("server").unwrap_or_default();
            crate::ha_api::join(&ha, &server, secret, &tls.ca_pem).await?;
        }
    }
    ha.spawn_election();
    Ok(ha)
}
