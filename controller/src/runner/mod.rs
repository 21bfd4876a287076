//! The runner: fan-out over nodes, ordering (servers one at a time, then
//! agents in parallel), and the report.
//!
//! Steps never decide ordering, retries or what "unreachable" means; the
//! runner does, so every step stays a small pure `check` plus an `apply`.
//! Files: [`connect`] (reaching nodes, facts), [`node`] (one node's
//! check → apply → re-check), [`cluster`] (secret, kubeconfig, readiness),
//! [`report`] and [`progress`].

mod cluster;
mod connect;
mod node;
mod progress;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub use cluster::kube_client;
pub use connect::{Connector, GatherError, SshConnector, gather};
use node::NodeRun;
pub use progress::{Progress, StderrProgress, WarningsOnly};
pub use report::{NodeReport, PlaybookReport, RunReport, Status, StepReport};

use crate::artifacts::ArtifactStore;
use crate::error_chain;
use crate::facts;
use crate::inventory::{Inventory, K3sRelease, Role};
use crate::render;
use crate::secret::Secret;
use crate::state;
use crate::step::Desired;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Check only: nothing changes, on the nodes or on the controller.
    Plan,
    Apply,
}

pub struct Options {
    pub mode: Mode,
    pub concurrency: usize,
    pub connector: Arc<dyn Connector>,
    pub progress: Arc<dyn Progress>,
    pub cache_dir: std::path::PathBuf,
    /// How long to wait for a rebooting node and for nodes to turn Ready.
    pub wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Channel(#[from] crate::channel::ChannelError),
    #[error("node {node}: the sudo password is not available: {why}")]
    SudoPasswordMissing { node: String, why: String },
    #[error(
        "the cluster token from {from} is not the one server {server} runs with; a restart cannot change it \
         (rotate it on the server with `k3s token rotate`, or point the inventory at the current token)"
    )]
    TokenMismatch { server: String, from: String },
}

/// Runs plan or apply over the whole inventory.
pub async fn run(inv: &Inventory, opts: &Options) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let progress = opts.progress.as_ref();
    let version = match &inv.cluster.k3s {
        K3sRelease::Version(v) => v.clone(),
        K3sRelease::Channel(c) => {
            let v = crate::channel::resolve(&inv.cluster.channel_url, c).await?;
            progress.event(
                &inv.cluster.name,
                "channel",
                "resolved",
                &format!("({c} → {v})"),
            );
            v
        }
    };
    connect::sudo_passwords_available(&inv.nodes)
        .map_err(|(node, why)| RunError::SudoPasswordMissing { node, why })?;
    let _lock = match opts.mode {
        Mode::Apply => Some(state::lock_cluster(inv)?),
        Mode::Plan => None,
    };
    let store = ArtifactStore::new(
        &inv.cluster.mirror,
        &version,
        &opts.cache_dir,
        opts.mode == Mode::Apply,
    );
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));

    // Connect and gather facts everywhere, in parallel.
    let mut runs: Vec<NodeRun<'_>> = join_all(inv.nodes.iter().map(|node| {
        let sem = sem.clone();
        async move {
            let _permit = sem.acquire().await;
            let mut run = NodeRun::new(node);
            run.start(opts).await;
            run
        }
        .instrument(tracing::info_span!("node", name = %node.name))
    }))
    .await;
    node::cross_node_checks(&mut runs, progress);

    let first_server = runs
        .iter()
        .find(|r| r.node.role == Role::Server && r.alive());
    let secret = cluster::cluster_secret(
        inv,
        opts.mode,
        first_server.and_then(|r| Some((r.node.name.as_str(), r.facts.as_ref()?))),
    )?;

    // Which nodes run which arch: for the agent binaries and the image preflight.
    let mut arches: BTreeMap<crate::arch::Arch, Vec<String>> = BTreeMap::new();
    for r in &runs {
        if let Some(Ok(a)) = r.facts.as_ref().map(|f| f.arch.clone()) {
            arches.entry(a).or_default().push(r.node.name.clone());
        }
    }
    let agent_bins = if inv.agent.enabled {
        crate::agent_binary::load(&inv.agent, arches.keys().copied())
    } else {
        BTreeMap::new()
    };
    // What every node should run (the checksum file is small and cached).
    let mut desired: BTreeMap<String, Desired> = BTreeMap::new();
    for run in runs.iter_mut().filter(|r| r.alive()) {
        let Some(Ok(arch)) = run.facts.as_ref().map(|f| f.arch.clone()) else {
            continue;
        };
        match store.expected_sha256(arch).await {
            Ok(sha) => {
                let role = run.node.role;
                let config = match role {
                    Role::Server => secret
                        .as_ref()
                        .map(|s| Secret::new(render::server_config(inv, run.node, s))),
                    Role::Agent => None,
                };
                desired.insert(
                    run.node.name.clone(),
                    Desired {
                        version: version.clone(),
                        binary_sha256: sha,
                        config,
                        config_pending: match role {
                            Role::Server => "config with a newly generated cluster secret",
                            Role::Agent => {
                                "join config (token read from the server once it is installed)"
                            }
                        },
                        unit_name: render::unit_name(role),
                        unit_path: match role {
                            Role::Server => facts::paths::SERVER_UNIT,
                            Role::Agent => facts::paths::AGENT_UNIT,
                        },
                        unit: render::unit_file(role),
                        agent: inv.agent.enabled.then(|| {
                            agent_bins
                                .get(&arch)
                                .cloned()
                                .unwrap_or_else(|| Err("no agent binary".into()))
                        }),
                    },
                );
            }
            Err(e) => run.fail(
                progress,
                format!("K3s {version} for {arch}: {}", error_chain(&e)),
            ),
        }
    }

    // Servers, one at a time: never two control planes down, and stop at the first failure.
    let mut broken: Option<String> = None;
    for run in runs.iter_mut().filter(|r| r.node.role == Role::Server) {
        if let Some(first) = &broken {
            if run.alive() {
                run.fail(
                    progress,
                    format!("not converged: server {first} failed before it"),
                );
            }
            continue;
        }
        if let Some(d) = desired.get(&run.node.name).filter(|_| run.alive()) {
            let span = tracing::info_span!("node", name = %run.node.name);
            run.converge(inv, d, &store, opts).instrument(span).await;
        }
        if !run.alive() {
            broken = Some(run.node.name.clone());
        }
    }

    // The join token and the kubeconfig come from the first server, converged.
    let first = runs.iter().find(|r| r.node.role == Role::Server);
    let first_facts = first.filter(|r| r.alive()).and_then(|r| r.facts.as_ref());
    let join_token = first_facts.and_then(|f| f.server_token.clone());
    let admin = first_facts.and_then(|f| f.admin_kubeconfig.clone());
    let first_state = first.map_or_else(
        || "there is no server".to_string(),
        |r| {
            format!(
                "server {} is {}",
                r.node.name,
                if r.alive() {
                    "converged"
                } else {
                    r.state_word()
                }
            )
        },
    );
    let mut api: Result<kube::Client, String> = Err(format!("no API: {first_state}"));
    if let Some(idx) = runs
        .iter()
        .position(|r| r.node.role == Role::Server && r.alive())
    {
        let why =
            format!("no admin kubeconfig: {first_state} but has no /etc/rancher/k3s/k3s.yaml");
        let (report, rewritten) = cluster::kubeconfig_step(inv, admin.as_ref(), &why, opts.mode);
        runs[idx].push(progress, report);
        if let Some(k) = rewritten {
            api = cluster::kube_client_from_yaml(&k)
                .await
                .map_err(|e| format!("cannot reach the API: {e}"));
        }
    }

    // Agents, in parallel; without a join token they cannot be converged.
    for run in runs
        .iter_mut()
        .filter(|r| r.node.role == Role::Agent && r.alive())
    {
        match (&join_token, opts.mode) {
            (Some(tok), _) => {
                if let Some(d) = desired.get_mut(&run.node.name) {
                    d.config = Some(Secret::new(render::agent_config(inv, run.node, tok)));
                }
            }
            (None, Mode::Apply) => {
                run.fail(progress, format!("join token unavailable: {first_state}"))
            }
            (None, Mode::Plan) => {}
        }
    }
    join_all(
        runs.iter_mut()
            .filter(|r| r.node.role == Role::Agent && r.alive())
            .map(|run| {
                let sem = sem.clone();
                let d = desired.get(&run.node.name).cloned();
                let store = &store;
                let span = tracing::info_span!("node", name = %run.node.name);
                async move {
                    let _permit = sem.acquire().await;
                    if let Some(d) = d {
                        run.converge(inv, &d, store, opts).await;
                    }
                }
                .instrument(span)
            }),
    )
    .await;

    if opts.mode == Mode::Apply && admin.is_some() {
        match &api {
            Ok(client) => cluster::readiness(client, &mut runs, opts).await,
            Err(why) => {
                for r in runs.iter_mut().filter(|r| r.alive()) {
                    r.push(
                        progress,
                        StepReport::new("node-ready", Status::Failed, vec![], Some(why.clone())),
                    );
                }
            }
        }
    }
    let api = api.as_ref().map_err(String::as_str);
    let workload_plan = workload::plan(inv, api, &arches, progress).await;
    let workload = match opts.mode {
        Mode::Plan => workload::reports(&workload_plan),
        Mode::Apply => {
            let w = crate::write::Writer::for_apply();
            workload::apply(api, &workload_plan, opts.wait, progress, &w).await
        }
    };

    Ok(RunReport {
        cluster: inv.cluster.name.clone(),
        mode: opts.mode,
        k3s_version: version,
        nodes: runs.into_iter().map(NodeRun::finish).collect(),
        workload,
        seconds: started.elapsed().as_secs_f64(),
    })
}
