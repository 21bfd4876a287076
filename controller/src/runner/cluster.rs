//! Cluster-level parts of a run: the cluster secret (adopted from a running
//! server rather than replaced), the admin kubeconfig, and readiness of the
//! nodes in the Kubernetes API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::node::NodeRun;
use super::report::{Status, StepReport};
use super::{Mode, Options, RunError};
use crate::error_chain;
use crate::facts::Facts;
use crate::inventory::{Inventory, SecretSource};
use crate::kubeconfig;
use crate::render;
use crate::secret::Secret;
use crate::state;
use crate::step::Change;

/// The `<secret>` of a `K10<ca-hash>::server:<secret>` token.
fn secret_of(token: &Secret) -> &str {
    let t = token.expose();
    t.split_once("::server:").map_or(t, |(_, s)| s)
}

/// The cluster secret to configure servers with. A running server's
/// secret wins over generating a new one (a lost state directory must not
/// break the cluster), and a configured secret that differs from the
/// running one is an error: K3s cannot change it by a restart.
pub fn cluster_secret(
    inv: &Inventory,
    mode: Mode,
    server: Option<(&str, &Facts)>,
) -> Result<Option<Secret>, RunError> {
    let running = server.and_then(|(name, f)| {
        f.server_token
            .as_ref()
            .map(|t| (name, Secret::new(secret_of(t))))
    });
    let generated_path = inv.cluster.state_dir.join("token");
    let configured = match &inv.cluster.token {
        SecretSource::Generated if !generated_path.exists() => {
            return match (running, mode) {
                (Some((_, s)), Mode::Apply) => {
                    state::ensure_dir(&inv.cluster.state_dir)?;
                    state::write_private(&generated_path, format!("{}\n", s.expose()).as_bytes())?;
                    Ok(Some(s))
                }
                (Some((_, s)), Mode::Plan) => Ok(Some(s)),
                (None, Mode::Apply) => Ok(Some(state::cluster_secret(inv)?)),
                (None, Mode::Plan) => Ok(None),
            };
        }
        _ => state::cluster_secret(inv)?,
    };
    if let Some((name, s)) = running
        && s != configured
    {
        let source = match &inv.cluster.token {
            SecretSource::Env(v) => format!("${v}"),
            SecretSource::File(p) => p.display().to_string(),
            SecretSource::Generated => generated_path.display().to_string(),
        };
        return Err(RunError::TokenMismatch {
            server: name.to_string(),
            from: source,
        });
    }
    Ok(Some(configured))
}

/// Writes the rewritten admin kubeconfig into the state directory.
/// `missing` says why there is no admin kubeconfig when `admin` is `None`.
/// Also returns the rewritten kubeconfig (it holds the admin client key),
/// from which the rest of the run talks to the API.
pub fn kubeconfig_step(
    inv: &Inventory,
    admin: Option<&Secret>,
    missing: &str,
    mode: Mode,
) -> (StepReport, Option<Secret>) {
    let mut report = StepReport {
        step: "kubeconfig",
        status: Status::Ok,
        changes: vec![],
        message: None,
    };
    let path = state::kubeconfig_path(inv);
    let Some(admin) = admin else {
        report.status = Status::Changed;
        report.changes.push(Change::new(
            path.display().to_string(),
            "absent",
            "fetched from the first server",
        ));
        if mode == Mode::Apply {
            report.status = Status::Failed;
            report.message = Some(missing.to_string());
        }
        return (report, None);
    };
    let wanted = match kubeconfig::rewrite(admin.expose(), &inv.cluster.name, &render::api_url(inv))
    {
        Ok(k) => k,
        Err(e) => {
            report.status = Status::Failed;
            report.message = Some(format!("server's k3s.yaml: {}", error_chain(&e)));
            return (report, None);
        }
    };
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref() == Some(wanted.as_str()) {
        return (report, Some(Secret::new(wanted)));
    }
    report.status = Status::Changed;
    report.changes.push(Change::new(
        path.display().to_string(),
        if current.is_some() {
            "outdated"
        } else {
            "absent"
        },
        format!("context {} → {}", inv.cluster.name, render::api_url(inv)),
    ));
    if mode == Mode::Apply
        && let Err(e) = state::write_private(&path, wanted.as_bytes())
    {
        report.status = Status::Failed;
        report.message = Some(error_chain(&e));
    }
    (report, Some(Secret::new(wanted)))
}

/// Waits for every converged node to be Ready in the API.
pub async fn readiness(client: &kube::Client, runs: &mut [NodeRun<'_>], opts: &Options) {
    use k8s_openapi::api::core::v1::Node as KNode;
    let client = client.clone();
    let api: kube::Api<KNode> = kube::Api::all(client);
    let deadline = Instant::now() + opts.wait;
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    let mut last_err = String::new();
    loop {
        match api.list(&Default::default()).await {
            Ok(list) => {
                ready = list
                    .items
                    .iter()
                    .map(|n| {
                        let ok = n
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        (n.metadata.name.clone().unwrap_or_default(), ok)
                    })
                    .collect();
            }
            Err(e) => last_err = error_chain(&e),
        }
        let waiting = runs
            .iter()
            .filter(|r| r.alive())
            .any(|r| !ready.get(&r.node.name).copied().unwrap_or(false));
        if !waiting || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in runs.iter_mut().filter(|r| r.alive()) {
        let ok = ready.get(&r.node.name).copied().unwrap_or(false);
        let report = StepReport {
            step: "node-ready",
            status: if ok { Status::Ok } else { Status::Failed },
            changes: vec![],
            message: (!ok).then(|| {
                if last_err.is_empty() {
                    format!(
                        "node {} not Ready in the API after {} s",
                        r.node.name,
                        opts.wait.as_secs()
                    )
                } else {
                    format!("node {} not Ready ({last_err})", r.node.name)
                }
            }),
        };
        r.push(opts.progress.as_ref(), report);
    }
}

/// A client from a kubeconfig file (`pictl status`).
pub async fn kube_client(path: &std::path::Path) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| error_chain(&e))?;
    client_of(kc).await
}

/// A client from kubeconfig text held in memory (a run's rewritten admin
/// kubeconfig: `plan` needs no file on disk for it).
pub async fn kube_client_from_yaml(yaml: &Secret) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml.expose()).map_err(|e| error_chain(&e))?;
    client_of(kc).await
}

async fn client_of(kc: kube::config::Kubeconfig) -> Result<kube::Client, String> {
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| error_chain(&e))?;
    kube::Client::try_from(cfg).map_err(|e| error_chain(&e))
}
