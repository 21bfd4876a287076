//! The phase manager: runs the phases in order, each on the nodes it
//! selects, skipping a phase when it selects none. The one place where a
//! run is a plan or an apply: a plan calls each phase's `plan`, an apply
//! makes the run's [`Writer`] and calls `apply` with it.

use tracing::Instrument;

use super::error::RunError;
use super::phases::{self, Phase, Selected};
use super::run::Run;
use crate::write::Writer;

/// Runs one phase in plan (`w` is `None`) or apply.
async fn one<P: Phase>(phase: &P, run: &mut Run<'_>, w: Option<&Writer>) -> Result<(), RunError> {
    let nodes = match phase.select(run) {
        Selected::Nodes(n) if n.is_empty() => {
            tracing::debug!(phase = P::NAME, "skipped: no node left for it");
            return Ok(());
        }
        Selected::Nothing(why) => {
            tracing::debug!(phase = P::NAME, why, "skipped");
            return Ok(());
        }
        Selected::Nodes(n) => n,
        Selected::Cluster => Vec::new(),
    };
    run.opts.progress.phase(P::NAME, nodes.len());
    let span = tracing::info_span!("phase", name = P::NAME);
    match w {
        None => phase.plan(run, &nodes).instrument(span).await,
        Some(w) => phase.apply(run, &nodes, w).instrument(span).await,
    }
}

/// Every phase, in order.
async fn all(run: &mut Run<'_>, w: Option<&Writer>) -> Result<(), RunError> {
    one(&phases::Connect, run, w).await?;
    one(&phases::Facts, run, w).await?;
    one(&phases::Relay, run, w).await?;
    let rollout = nodes(run, w).await;
    // Whatever the rollout did, the seeds stop serving.
    one(&phases::RelayEnd, run, w).await?;
    rollout?;
    one(&phases::Readiness, run, w).await?;
    one(&phases::Uncordon, run, w).await?;
    one(&phases::NodeLabels, run, w).await?;
    one(&phases::AgentAccessPhase, run, w).await?;
    one(&phases::Workload, run, w).await
}

/// The node phases, while the seeds serve.
async fn nodes(run: &mut Run<'_>, w: Option<&Writer>) -> Result<(), RunError> {
    one(&phases::UpgradeServers, run, w).await?;
    one(&phases::Servers, run, w).await?;
    one(&phases::Kubeconfig, run, w).await?;
    one(&phases::UpgradeAgents, run, w).await?;
    one(&phases::Agents, run, w).await
}

/// Checks everything; writes nothing anywhere.
pub async fn plan(run: &mut Run<'_>) -> Result<(), RunError> {
    all(run, None).await
}

/// Converges everything.
pub async fn apply(run: &mut Run<'_>) -> Result<(), RunError> {
    let w = Writer::for_apply();
    all(run, Some(&w)).await
}

/// `pictl reset` without `--yes`: what would be removed, nothing written.
pub async fn reset_plan(run: &mut Run<'_>) -> Result<(), RunError> {
    one(&phases::Connect, run, None).await?;
    one(&phases::Reset, run, None).await
}

/// `pictl reset --yes`.
pub async fn reset(run: &mut Run<'_>) -> Result<(), RunError> {
    let w = Writer::for_apply();
    // Facts read without recording: a reset leaves no record of pictl's.
    one(&phases::Connect, run, None).await?;
    one(&phases::Reset, run, Some(&w)).await
}
