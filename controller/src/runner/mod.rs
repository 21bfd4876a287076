//! The runner: a list of phases (connect → facts → servers → kubeconfig →
//! agents → readiness → workload), each selecting its nodes, run by a small
//! [`manager`]. Steps never decide ordering, retries or what "unreachable"
//! means; phases do, so every step stays a pure `check` plus an `apply`.
//!
//! [`plan`] and [`apply`] are the entry points. Only `apply` makes a
//! [`crate::write::Writer`], which every writing function requires: a plan
//! cannot reach code that writes.

mod agent_metrics;
mod backup;
mod connect;
mod converge;
mod desired;
mod error;
mod holder;
mod manager;
mod node;
pub mod node_lock;
pub mod node_meta;
mod options;
pub(crate) mod phases;
mod quorum;
mod reset;
mod resolve;
mod restore;
mod run;
mod secret;
mod workload;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod fake_api;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_agent_metrics;
#[cfg(test)]
mod tests_agent_policy;
#[cfg(test)]
mod tests_agent_retire;
#[cfg(test)]
mod tests_pi;
#[cfg(test)]
mod tests_relay;

use std::time::Instant;

pub use crate::cluster::{ApiConnector, ApiError, KubeconfigApi, kube_client};
pub use crate::report::Mode;
pub use crate::report::{
    Event, NodeReport, PlaybookReport, Progress, RunReport, Stage, Status, StderrProgress,
    StepReport, Topic, WarningsOnly,
};
pub use connect::{Connector, GatherError, SshConnector, gather, terminal_prompt};
pub use error::{NodeFailure, RunError};
pub use options::{Options, Upgrade};

use crate::artifacts::ArtifactStore;
use crate::inventory::{Inventory, K3sRelease};
use crate::state;
use crate::write::Writer;

/// The exact release the run converges to (a channel is resolved now).
async fn version(inv: &Inventory, opts: &Options) -> Result<String, RunError> {
    match &inv.cluster.k3s {
        K3sRelease::Version(v) => Ok(v.clone()),
        K3sRelease::Channel(c) => {
            let v = crate::channel::resolve(&inv.cluster.channel_url, c).await?;
            opts.progress.event(&Event {
                subject: &inv.cluster.name,
                topic: Topic::Channel,
                stage: Stage::Resolved,
                detail: &format!("({c} → {v})"),
            });
            Ok(v)
        }
    }
}

/// Checks every node and playbook; changes nothing anywhere.
pub async fn plan(inv: &Inventory, opts: &Options) -> Result<RunReport, RunError> {
    let started = Instant::now();
    known_nodes(inv, opts)?;
    let version = version(inv, opts).await?;
    preconditions(inv)?;
    let inv = &resolve::resolved(inv)?;
    let store = ArtifactStore::new(&inv.cluster.mirror, &version, &opts.cache_dir, false);
    let mut run = run::Run::new(inv, opts, version, store).limit(&opts.only);
    manager::plan(&mut run).await?;
    Ok(report(run, Mode::Plan, started))
}

/// Converges every node and playbook, holding the cluster's lock.
pub async fn apply(inv: &Inventory, opts: &Options) -> Result<RunReport, RunError> {
    let started = Instant::now();
    known_nodes(inv, opts)?;
    let version = version(inv, opts).await?;
    preconditions(inv)?;
    let inv = &resolve::resolved(inv)?;
    // The run's one Writer: everything that writes asks for it.
    let w = Writer::for_apply();
    let _lock = state::lock_cluster(inv, &w)?;
    let store = ArtifactStore::new(&inv.cluster.mirror, &version, &opts.cache_dir, true);
    let mut run = run::Run::new(inv, opts, version, store).limit(&opts.only);
    manager::apply(&mut run, &w).await?;
    Ok(report(run, Mode::Apply, started))
}

/// What `pictl reset` removes, on `only` the named nodes (all when empty):
/// with `confirmed`, removes it; without, only shows it. A reset of some
/// nodes also deletes their Node objects through the API; a reset of all
/// of them forgets the cluster's kubeconfig in the state directory.
pub async fn reset(
    inv: &Inventory,
    opts: &Options,
    only: &[String],
    confirmed: bool,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    preconditions(inv)?;
    let store = ArtifactStore::new(&inv.cluster.mirror, "reset", &opts.cache_dir, false);
    let mut run = run::Run::new(inv, opts, String::from("(reset)"), store).only(only);
    if confirmed {
        let w = Writer::for_apply();
        let _lock = state::lock_cluster(inv, &w)?;
        manager::reset(&mut run, &w).await?;
        reset::forget(&mut run, !only.is_empty(), &w).await;
    } else {
        manager::reset_plan(&mut run).await?;
    }
    let mode = if confirmed { Mode::Apply } else { Mode::Plan };
    Ok(report(run, mode, started))
}

/// `pictl backup`: the cluster's datastore into the state directory,
/// holding the cluster's lock; the backup file's path.
pub async fn backup(inv: &Inventory, opts: &Options) -> Result<std::path::PathBuf, RunError> {
    preconditions(inv)?;
    let w = Writer::for_apply();
    let _lock = state::lock_cluster(inv, &w)?;
    backup::take(inv, opts, &w).await
}

/// `pictl restore FILE`: every check, then (`confirmed`) the restore,
/// holding the cluster's lock; what it does, in words. Without
/// `confirmed` nothing is written anywhere.
pub async fn restore(
    inv: &Inventory,
    opts: &Options,
    file: &std::path::Path,
    confirmed: bool,
) -> Result<String, RunError> {
    preconditions(inv)?;
    if !confirmed {
        return Ok(restore::check(inv, opts, file).await?.plan);
    }
    let w = Writer::for_apply();
    let _lock = state::lock_cluster(inv, &w)?;
    let checked = restore::check(inv, opts, file).await?;
    restore::carry_out(checked, opts, &w).await
}

/// `--nodes` names only nodes of the inventory.
fn known_nodes(inv: &Inventory, opts: &Options) -> Result<(), RunError> {
    match opts
        .only
        .iter()
        .find(|n| !inv.nodes.iter().any(|m| &m.name == *n))
    {
        Some(name) => Err(RunError::NoSuchNode(name.clone())),
        None => Ok(()),
    }
}

/// What must hold before anything connects.
fn preconditions(inv: &Inventory) -> Result<(), RunError> {
    connect::sudo_passwords_available(&inv.nodes)
        .map_err(|(node, why)| RunError::SudoPasswordMissing { node, why })
}

fn report(run: run::Run<'_>, mode: Mode, started: Instant) -> RunReport {
    RunReport {
        cluster: run.inv.cluster.name.clone(),
        mode,
        k3s_version: run.version,
        nodes: (run.nodes.into_iter().map(node::NodeRun::finish))
            .chain(run.dropped)
            .collect(),
        workload: run.workload,
        seconds: started.elapsed().as_secs_f64(),
    }
}
