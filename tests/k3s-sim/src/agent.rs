//! `k3s agent`: joins a server with `server:` and `token:` the way K3s does it.
//! After the cgroup checks (pkg/agent/run.go `Run`), it validates the token against
//! the server (pkg/clientaccess/token.go: fetch `/cacerts`, check it against the
//! token's CA hash, then use the credentials) and retries every 2 s, logging
//! "Failed to validate connection to cluster at ..." (pkg/agent/run.go
//! `createProxyAndValidateToken`): a wrong token, a CA-hash mismatch or an unreachable
//! server never makes it exit. It then retrieves its configuration (here: registers
//! its Node with its node password) every 5 s until the server accepts, logging
//! "Waiting to retrieve agent configuration; server is not ready: ..."
//! (pkg/agent/config/config.go `Get`), which is how a rejected node password loops.
//! Once registered it heartbeats every 2 s and re-registers if its Node was deleted,
//! and tells systemd READY=1 only then.

use crate::config::Settings;
use crate::http::{parse_server_url, pinned_client, request};
use crate::nodes::NodeInfo;
use anyhow::{Result, anyhow, bail};
use std::time::Duration;

pub async fn run(settings: Settings) -> Result<()> {
    let (raw_token, server) = required(&settings)?;
    crate::info!(
        "Starting k3s agent {} ({})",
        crate::version::version(),
        crate::version::commit()
    );
    if let Some(f) = &settings.config_file {
        crate::info!("Using config file {}", f.display());
    }
    crate::cgroups::validate()?;
    crate::registries::setup(&settings)?;
    crate::images::start(&settings.data_dir());
    let name = crate::server::node_name(&settings);
    let labels = crate::server::node_labels(&settings)?;
    let taints = settings.list("node-taint");
    crate::nodes::validate_taints(&taints)?;

    let (url, ca_pem, secret) = loop {
        match validate_token(&server, &raw_token).await {
            Ok(v) => break v,
            Err(e) => crate::error!("Failed to validate connection to cluster at {server}: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let client = pinned_client(&ca_pem)?;
    // pkg/agent/run.go: the agent always authenticates as "node".
    let joined = Joined {
        client,
        url,
        auth: format!("node:{secret}"),
    };

    let password = crate::server::node_password()?;
    let local_ip = local_ip(&joined).await;
    // The kubelet starts with the configuration and refuses reserved labels.
    if let Err(e) = crate::nodes::validate_kubelet_labels(&labels) {
        crate::kubelet_exited(&e);
    }
    let info = NodeInfo {
        name: name.clone(),
        internal_ip: settings
            .list("node-ip")
            .first()
            .cloned()
            .unwrap_or(local_ip),
        hostname: crate::nodes::hostname(),
        labels,
        taints,
        os_image: crate::nodes::os_image(),
        kernel_version: crate::nodes::kernel_version(),
        kubelet_version: crate::version::version().to_string(),
        arch: crate::nodes::arch().to_string(),
        server: false,
        etcd: false,
        etcd_name: String::new(),
        password,
    };
    let body = serde_json::to_vec(&info)?;
    let registered = register(&joined, &settings, &server, &body).await;
    let answer: serde_json::Value = serde_json::from_slice(&registered).unwrap_or_default();
    let kubelet: crate::leaf::KubeletCerts = serde_json::from_value(answer["kubelet"].clone())
        .map_err(|e| anyhow!("the server sent no kubelet certificates: {e}"))?;
    crate::leaf::write_kubelet(&settings.data_dir(), &kubelet)?;
    crate::healthz::serve(&settings).await?;
    crate::info!("Annotations and labels have been set successfully on node: {name}");
    crate::info!("k3s agent is up and running: node {name} registered with {server}");
    crate::notify::ready();

    tokio::select! {
        r = heartbeat(&joined, &name, &registered, &body) => r?,
        _ = crate::wait_for_signal() => {}
    }
    crate::info!("Shutting down k3s agent");
    Ok(())
}

/// The token and the server: pkg/cli/agent/agent.go checks these two
/// before anything runs.
fn required(settings: &Settings) -> Result<(String, String)> {
    let raw_token = match settings.str("token") {
        Some(t) => t,
        None => match crate::server::token_file(settings)? {
            Some(t) if !t.is_empty() => t,
            _ => bail!("--token is required"),
        },
    };
    let server = settings
        .str("server")
        .ok_or_else(|| anyhow!("--server is required"))?;
    Ok((raw_token, server))
}

/// A server whose token checked out: how to reach it as this node.
struct Joined {
    client: std::sync::Arc<rustls::ClientConfig>,
    url: crate::http::Url,
    auth: String,
}

/// The local address used towards the server (K3s's default node IP),
/// asked for every 5 s until the server answers.
async fn local_ip(joined: &Joined) -> String {
    loop {
        match request(
            joined.client.clone(),
            &joined.url,
            "GET",
            "/ping",
            None,
            b"",
        )
        .await
        {
            Ok(r) => return r.local_ip.to_string(),
            Err(e) => {
                crate::info!("Waiting to retrieve agent configuration; server is not ready: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Registers the node every 5 s until the server accepts it; the answer.
async fn register(joined: &Joined, settings: &Settings, server: &str, body: &[u8]) -> Vec<u8> {
    let password_file = crate::host::node_password_file();
    let serving_crt = settings.data_dir().join("agent/serving-kubelet.crt");
    loop {
        let why = match request(
            joined.client.clone(),
            &joined.url,
            "POST",
            "/v1-k3s/sim/register",
            Some(&joined.auth),
            body,
        )
        .await
        {
            Ok(r) if r.status == 200 => return r.body,
            Ok(r) if r.status == 403 => format!(
                "{}: Node password rejected, duplicate hostname or contents of '{}' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag",
                serving_crt.display(),
                password_file.display()
            ),
            Ok(r) => format!(
                "{server}/v1-k3s/sim/register: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body).trim()
            ),
            Err(e) => format!("{e:#}"),
        };
        crate::info!("Waiting to retrieve agent configuration; server is not ready: {why}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Heartbeats every 2 s for ever, re-registering when the Node is gone.
/// K3s's agent load balancer (pkg/agent/loadbalancer): the configured
/// server first, then every server it learned; a dead one is skipped.
async fn heartbeat(joined: &Joined, name: &str, registered: &[u8], body: &[u8]) -> Result<()> {
    let hb_body = serde_json::to_vec(&serde_json::json!({"name": name}))?;
    let url = &joined.url;
    let mut servers = learned(url, registered).unwrap_or_else(|| vec![url.clone()]);
    let mut at = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let target = servers[at % servers.len()].clone();
        let r = request(
            joined.client.clone(),
            &target,
            "POST",
            "/v1-k3s/sim/heartbeat",
            Some(&joined.auth),
            &hb_body,
        )
        .await;
        match r {
            Ok(r) if r.status == 200 => {
                servers = learned(url, &r.body).unwrap_or(servers);
                at = servers
                    .iter()
                    .position(|s| s.host == target.host && s.port == target.port)
                    .unwrap_or(0);
            }
            Ok(r) if r.status == 404 => {
                crate::info!("Node {name} not found on server; registering again");
                reregister(joined.client.clone(), &target, &joined.auth, body).await;
            }
            Ok(r) => crate::error!(
                "heartbeat refused: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body).trim()
            ),
            Err(e) => {
                crate::warn!(
                    "Failed to post node heartbeat to https://{}:{}: {e}",
                    target.host,
                    target.port
                );
                at = (at + 1) % servers.len();
            }
        }
    }
}

/// The servers a heartbeat answer lists (an HA cluster's), the configured one first.
fn learned(configured: &crate::http::Url, body: &[u8]) -> Option<Vec<crate::http::Url>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut out = vec![configured.clone()];
    for s in v["servers"].as_array()? {
        let u = parse_server_url(s.as_str()?).ok()?;
        if !out.iter().any(|o| o.host == u.host && o.port == u.port) {
            out.push(u);
        }
    }
    Some(out)
}

async fn reregister(
    client: std::sync::Arc<rustls::ClientConfig>,
    url: &crate::http::Url,
    auth: &str,
    body: &[u8],
) {
    match request(
        client,
        url,
        "POST",
        "/v1-k3s/sim/register",
        Some(auth),
        body,
    )
    .await
    {
        Ok(r) if r.status == 200 => {}
        Ok(r) => crate::error!(
            "re-registration refused: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        ),
        Err(e) => crate::error!("re-registration: {e}"),
    }
}

/// pkg/clientaccess/token.go `ParseAndValidateToken`: parse, fetch the CA without
/// verification, pin it against the token's hash (when there is one), and check the
/// credentials with it. Returns the server URL, the CA and the password.
pub(crate) async fn validate_token(
    server: &str,
    raw_token: &str,
) -> Result<(crate::http::Url, String, String)> {
    let token = crate::certs::parse_token(raw_token)?;
    let url = parse_server_url(server)?;
    let cacerts = format!("{}/cacerts", server.trim_end_matches('/'));
    let r = request(
        crate::http::insecure_client()?,
        &url,
        "GET",
        "/cacerts",
        None,
        b"",
    )
    .await
    .map_err(|e| anyhow!("failed to get CA certs: Get \"{cacerts}\": {e:#}"))?;
    if r.status != 200 {
        bail!("failed to get CA certs: {cacerts}: {}", r.status);
    }
    let ca_pem = String::from_utf8_lossy(&r.body).to_string();
    let hash = crate::certs::ca_hash(&ca_pem);
    match &token.ca_hash {
        Some(want) if want != &hash => {
            bail!("token CA hash does not match the Cluster CA certificate hash: {want} != {hash}")
        }
        Some(_) => {}
        None => crate::warn!(
            "Cluster CA certificate is not trusted by the host CA bundle, but the token does not include a CA hash. Use the full token from the server's node-token file to enable Cluster CA validation."
        ),
    }
    let auth = format!("node:{}", token.secret);
    let check = format!("{}/v1-k3s/sim/auth", server.trim_end_matches('/'));
    let r = request(
        pinned_client(&ca_pem)?,
        &url,
        "GET",
        "/v1-k3s/sim/auth",
        Some(&auth),
        b"",
    )
    .await
    .map_err(|e| anyhow!("Get \"{check}\": {e:#}"))?;
    match r.status {
        200 => Ok((url, ca_pem, token.secret)),
        401 => bail!("token is not valid: {check}: 401 Unauthorized"),
        s => bail!("{check}: {s}"),
    }
}
