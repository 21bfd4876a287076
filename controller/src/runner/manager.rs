//! The phase manager: runs the phases in order, each on the nodes it
//! selects, skipping a phase when it selects none. The one place where a
//! run is a plan or an apply: every phase plans, then a plan shows what
//! it found and an apply carries it out with the run's [`Writer`] (made by
//! the runner's entry point, never here).

use tracing::Instrument;

use super::error::RunError;
use super::phases::{self, Phase, Selected};
use super::run::Run;
use crate::write::Writer;

/// Runs one phase: its plan, then (without a Writer) its `show` or (with
/// one) its `apply`.
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
    async {
        let plan = phase.plan(run, &nodes).await?;
        match w {
            None => phase.show(run, plan).await,
            Some(w) => phase.apply(run, plan, w).await,
        }
    }
    .instrument(span)
    .await
}

/// Every phase, in order.
async fn all(run: &mut Run<'_>, w: Option<&Writer>) -> Result<(), RunError> {
    one(&phases::Connect, run, w).await?;
    one(&phases::Facts, run, w).await?;
    one(&phases::Relay, run, w).await?;
    // The node phases, while the seeds serve.
    let rollout = async {
        one(&phases::UpgradeServers, run, w).await?;
        one(&phases::Servers, run, w).await?;
        one(&phases::RenewCertificates, run, w).await?;
        one(&phases::Kubeconfig, run, w).await?;
        one(&phases::UpgradeAgents, run, w).await?;
        one(&phases::Agents, run, w).await
    }
    .await;
    // Whatever the rollout did, the seeds stop serving.
    one(&phases::RelayEnd, run, w).await?;
    rollout?;
    one(&phases::Readiness, run, w).await?;
    one(&phases::Uncordon, run, w).await?;
    one(&phases::PruneNodes, run, w).await?;
    one(&phases::NodeLabels, run, w).await?;
    one(&phases::AgentAccessPhase, run, w).await?;
    one(&phases::Workload, run, w).await
}

/// Checks everything; writes nothing anywhere.
pub async fn plan(run: &mut Run<'_>) -> Result<(), RunError> {
    all(run, None).await
}

/// Converges everything.
pub async fn apply(run: &mut Run<'_>, w: &Writer) -> Result<(), RunError> {
    all(run, Some(w)).await
}

/// Connects to the run's nodes and reads their facts (nothing recorded).
pub async fn connect(run: &mut Run<'_>) -> Result<(), RunError> {
    one(&phases::Connect, run, None).await
}

/// `pictl reset` without `--yes`: what would be removed, nothing written.
pub async fn reset_plan(run: &mut Run<'_>) -> Result<(), RunError> {
    one(&phases::Connect, run, None).await?;
    one(&phases::Reset, run, None).await
}

/// `pictl reset --yes`.
pub async fn reset(run: &mut Run<'_>, w: &Writer) -> Result<(), RunError> {
    // Facts read without recording: a reset leaves no record of pictl's.
    one(&phases::Connect, run, None).await?;
    one(&phases::Reset, run, Some(w)).await
}
