//! `k3s agent`: joins a server with `server:` and `token:` the way K3s does it —
//! fetch `/cacerts`, check it against the token's CA hash (CA pinning), then talk
//! to the supervisor over TLS verified against that CA with `node:<secret>` basic
//! auth: register the Node, heartbeat every 2 s, re-register if the Node was
//! deleted. A wrong token or CA hash is fatal (exit 1); an unreachable server is
//! retried, as K3s waits for its server.

use crate::config::Settings;
use crate::http::{ClientResponse, parse_server_url, pinned_client, request};
use crate::nodes::NodeInfo;
use anyhow::{Result, anyhow, bail};
use std::time::Duration;

pub async fn run(settings: Settings) -> Result<()> {
    let raw_token = match settings.str("token") {
        Some(t) => t,
        None => match crate::server::token_file(&settings)? {
            Some(t) if !t.is_empty() => t,
            _ => bail!("--token is required"),
        },
    };
    let server = settings
        .str("server")
        .ok_or_else(|| anyhow!("--server is required"))?;
    let url = parse_server_url(&server)?;
    let token = crate::certs::parse_token(&raw_token)?;
    crate::info!(
        "Starting k3s agent {} ({})",
        crate::version::version(),
        crate::version::commit()
    );
    if let Some(f) = &settings.config_file {
        crate::info!("Using config file {}", f.display());
    }
    let name = crate::server::node_name(&settings);
    let labels = crate::server::node_labels(&settings)?;
    let taints = settings.list("node-taint");
    crate::nodes::validate_taints(&taints)?;
    let password = crate::server::node_password(&settings)?;

    // CA: fetched without verification, trusted only if it matches the token's hash.
    let ca_pem = loop {
        match request(
            crate::http::insecure_client()?,
            &url,
            "GET",
            "/cacerts",
            None,
            b"",
        )
        .await
        {
            Ok(r) if r.status == 200 => break String::from_utf8_lossy(&r.body).to_string(),
            Ok(r) => crate::info!(
                "Waiting to retrieve agent configuration; server is not ready: {server}/cacerts: {}",
                r.status
            ),
            Err(e) => {
                crate::info!("Waiting to retrieve agent configuration; server is not ready: {e}")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let hash = crate::certs::ca_hash(&ca_pem);
    if let Some(want) = &token.ca_hash
        && want != &hash
    {
        bail!("token CA hash does not match the Cluster CA certificate hash: {want} != {hash}");
    }
    let client = pinned_client(&ca_pem)?;
    let auth = format!("node:{}", token.secret);

    let register = |local_ip: String| {
        let info = NodeInfo {
            name: name.clone(),
            internal_ip: settings
                .list("node-ip")
                .first()
                .cloned()
                .unwrap_or(local_ip),
            hostname: crate::nodes::hostname(),
            labels: labels.clone(),
            taints: taints.clone(),
            os_image: crate::nodes::os_image(),
            kernel_version: crate::nodes::kernel_version(),
            kubelet_version: crate::version::version().to_string(),
            arch: crate::nodes::arch().to_string(),
            server: false,
            password: password.clone(),
        };
        serde_json::to_vec(&info)
    };
    // Learn the local address used towards the server (K3s's default node IP).
    let local_ip = loop {
        match request(client.clone(), &url, "GET", "/ping", None, b"").await {
            Ok(r) => break r.local_ip.to_string(),
            Err(e) => {
                crate::info!("Waiting to retrieve agent configuration; server is not ready: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let body = register(local_ip.clone())?;
    loop {
        match request(
            client.clone(),
            &url,
            "POST",
            "/v1-k3s/sim/register",
            Some(&auth),
            &body,
        )
        .await
        {
            Ok(r) if r.status == 200 => break,
            Ok(r) => fatal_or_retry(&server, r)?,
            Err(e) => {
                crate::info!("Waiting to retrieve agent configuration; server is not ready: {e}")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    crate::healthz::serve(&settings).await?;
    crate::info!("k3s agent is up and running: node {name} registered with {server}");
    crate::notify::ready();

    let hb_body = serde_json::to_vec(&serde_json::json!({"name": name}))?;
    let heartbeat = async {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match request(
                client.clone(),
                &url,
                "POST",
                "/v1-k3s/sim/heartbeat",
                Some(&auth),
                &hb_body,
            )
            .await
            {
                Ok(r) if r.status == 200 => {}
                Ok(r) if r.status == 404 => {
                    crate::info!("Node {name} not found on server; registering again");
                    match request(
                        client.clone(),
                        &url,
                        "POST",
                        "/v1-k3s/sim/register",
                        Some(&auth),
                        &body,
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
                Ok(r) => crate::error!(
                    "heartbeat refused: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body).trim()
                ),
                Err(e) => crate::warn!("Failed to post node heartbeat to {server}: {e}"),
            }
        }
    };
    tokio::select! {
        _ = heartbeat => {}
        _ = crate::wait_for_signal() => {}
    }
    crate::info!("Shutting down k3s agent");
    Ok(())
}

fn fatal_or_retry(server: &str, r: ClientResponse) -> Result<()> {
    let body = String::from_utf8_lossy(&r.body).trim().to_string();
    match r.status {
        401 => bail!(
            "failed to validate token: token is not valid for server {server}: 401 Unauthorized"
        ),
        403 => bail!("{body}"),
        _ => {
            crate::info!(
                "Waiting to retrieve agent configuration; server is not ready: {} {body}",
                r.status
            );
            Ok(())
        }
    }
}
