//! What the :6443 listener serves, in order: `/cacerts` and `/ping`, the
//! server-token paths HA joins use (`/v1-k3s/server-bootstrap`, etcd's
//! `/db/info`), the agent protocol under `/v1-k3s/`, then the Kubernetes API
//! (client certificate required), through the etcd leader when there is HA.

use crate::api::{Api, text_resp, unauthorized};
use crate::http::Body;
use crate::nodes::Cluster;
use hyper::{Request, Response};
use std::path::PathBuf;
use std::sync::Arc;

/// Whether the request carries the server token (`server:<secret>`): what
/// `/db/info` and `/v1-k3s/server-bootstrap` require (K3s's `k3s:server` role).
fn server_token_ok(req: &Request<hyper::body::Incoming>, cluster: &Cluster) -> bool {
    use base64::Engine;
    let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let dec = h
        .strip_prefix("Basic ")
        .and_then(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok());
    match dec.as_deref().and_then(|s| s.split_once(':')) {
        Some(("server", secret)) => {
            use sha2::Digest;
            sha2::Sha256::digest(secret.as_bytes())
                == sha2::Sha256::digest(cluster.secrets[0].as_bytes())
        }
        _ => false,
    }
}

/// What the :6443 listener serves: the supervisor paths, then the API.
pub struct Routes {
    pub api: Arc<Api>,
    pub cluster: Arc<Cluster>,
    pub ha: Option<Arc<crate::replicate::Ha>>,
    pub ca_pem: String,
    pub data_dir: PathBuf,
    /// This server's `/v1-k3s/config` answer ([`crate::critical`]).
    pub config: serde_json::Value,
}

impl Routes {
    pub async fn route(&self, authed: bool, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/cacerts" {
            text_resp(200, &self.ca_pem)
        } else if path == "/ping" {
            text_resp(200, "pong")
        } else if path == "/v1-k3s/sim/requests" {
            crate::api::json_resp(200, &crate::counter::snapshot())
        } else if path == "/v1-k3s/server-bootstrap" {
            if server_token_ok(&req, &self.cluster) {
                crate::ha_api::bootstrap_data(&self.data_dir)
            } else {
                unauthorized()
            }
        } else if path == "/db/info" {
            // Only etcd registers this route (pkg/etcd/etcd.go `handler`).
            match &self.ha {
                Some(ha) => crate::ha_api::db_info(ha, server_token_ok(&req, &self.cluster)),
                None => text_resp(404, "404 page not found\n"),
            }
        } else if path == "/v1-k3s/config" {
            // This server's own settings, for the node or server token.
            match crate::supervisor::basic_auth_secret(&req) {
                Some(s) if crate::supervisor::secret_ok(&self.cluster, &s) => {
                    crate::api::json_resp(200, &self.config)
                }
                _ => unauthorized(),
            }
        } else if path.starts_with("/v1-k3s/") {
            match &self.ha {
                Some(ha) if path != "/v1-k3s/sim/auth" => {
                    crate::ha_api::supervisor(ha.clone(), self.cluster.clone(), req).await
                }
                _ => crate::supervisor::serve(self.cluster.clone(), req).await,
            }
        } else {
            let header = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let user = crate::auth::authenticate(&self.api.store.lock(), authed, header);
            match (user, &self.ha) {
                (None, _) => unauthorized(),
                (Some(user), Some(ha)) => {
                    crate::ha_api::api(ha.clone(), self.api.clone(), req, user).await
                }
                (Some(user), None) => self.api.clone().handle(req, user).await,
            }
        }
    }
}
