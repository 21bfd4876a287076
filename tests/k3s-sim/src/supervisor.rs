//! The agent protocol under `/v1-k3s/` (what K3s's supervisor serves agents
//! with the node or server token): registration with the node password,
//! token validation and heartbeats. Split from `server` so the listener's
//! start-up and this protocol each stay one concern.

use crate::api::{json_resp, status_err, text_resp, unauthorized};
use crate::http::Body;
use crate::nodes::{Cluster, NodeInfo, RegisterError};
use hyper::{Request, Response};
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) fn basic_auth_secret(req: &Request<hyper::body::Incoming>) -> Option<String> {
    use base64::Engine;
    let h = req.headers().get("authorization")?.to_str().ok()?;
    let enc = h.strip_prefix("Basic ")?;
    let dec = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .ok()?;
    let s = String::from_utf8(dec).ok()?;
    let (user, secret) = s.split_once(':')?;
    matches!(user, "node" | "server").then(|| secret.to_string())
}

pub(crate) fn secret_ok(cluster: &Cluster, given: &str) -> bool {
    use sha2::Digest;
    let g = sha2::Sha256::digest(given.as_bytes());
    cluster
        .secrets
        .iter()
        .any(|s| sha2::Sha256::digest(s.as_bytes()) == g)
}

/// Answers a request under `/v1-k3s/` carrying the node or server token.
pub(crate) async fn serve(
    cluster: Arc<Cluster>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let Some(secret) = basic_auth_secret(&req) else {
        return unauthorized();
    };
    if !secret_ok(&cluster, &secret) {
        crate::warn!("Refused /v1-k3s request: invalid token");
        return unauthorized();
    }
    let path = req.uri().path().to_string();
    let body = match crate::http::read_body(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(e) => return status_err(400, "BadRequest", &e.to_string(), Value::Null),
    };
    match path.as_str() {
        "/v1-k3s/sim/register" => register(&cluster, &body),
        // What the agent's token validation reaches with its credentials.
        "/v1-k3s/sim/auth" => json_resp(200, &json!({"ok": true})),
        "/v1-k3s/sim/heartbeat" => {
            let name = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string))
                .unwrap_or_default();
            match cluster.heartbeat(&name) {
                Ok(true) => json_resp(200, &json!({"ok": true})),
                Ok(false) => status_err(
                    404,
                    "NotFound",
                    &format!("nodes \"{name}\" not found"),
                    Value::Null,
                ),
                Err(e) => status_err(500, "InternalError", &e.to_string(), Value::Null),
            }
        }
        _ => status_err(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Value::Null,
        ),
    }
}

/// `/v1-k3s/sim/register`: the agent's node, registered when its node
/// password matches the one on record (or there is none yet).
fn register(cluster: &Cluster, body: &[u8]) -> Response<Body> {
    let info: NodeInfo = match serde_json::from_slice(body) {
        Ok(i) => i,
        Err(e) => {
            return status_err(
                400,
                "BadRequest",
                &format!("invalid registration: {e}"),
                Value::Null,
            );
        }
    };
    match cluster.register(&info) {
        Ok(()) => {
            crate::info!(
                "Node {} registered (internal IP {})",
                info.name,
                info.internal_ip
            );
            // K3s's agent fetches both kubelet certificates at each start,
            // signed then (handlers.go `ServingKubeletCert`, `ClientKubeletCert`).
            match crate::leaf::sign_kubelet(&cluster.data_dir, &info.name, &info.internal_ip) {
                Ok(k) => json_resp(200, &json!({"registered": info.name, "kubelet": k})),
                Err(e) => status_err(500, "InternalError", &format!("{e:#}"), Value::Null),
            }
        }
        Err(RegisterError::PasswordRejected) => {
            crate::error!("Node password validation failed for '{}'", info.name);
            text_resp(
                403,
                &format!(
                    "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag (node {})",
                    info.name
                ),
            )
        }
        Err(RegisterError::Invalid(m)) => status_err(400, "BadRequest", &m, Value::Null),
        Err(RegisterError::Store(e)) => {
            status_err(500, "InternalError", &e.to_string(), Value::Null)
        }
    }
}
