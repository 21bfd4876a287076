//! The phases of a run, one file each, in the order the manager runs them:
//! connect → facts → relay → upgrade-servers → servers →
//! renew-certificates → kubeconfig → upgrade-agents → agents → relay-end →
//! readiness → uncordon → prune-nodes → node-labels
//! → agent-access → workload.
//! Each selects the nodes it concerns (or the cluster) from what earlier
//! phases found, and has a read-only `plan` returning a typed plan, a
//! `show` of it for `pictl plan`, and an `apply` of it that needs the run's
//! [`Writer`]. New phases are new files here.

mod agent_access;
mod agents;
mod connect;
mod facts;
mod kubeconfig;
mod labels;
mod prune;
mod readiness;
mod relay;
mod renew_certs;
mod reset;
mod servers;
mod storage;
mod uncordon;
mod upgrade;
mod upgrade_agents;
pub(crate) mod upgrade_guard;
mod upgrade_rollback;
mod workload;

pub use agent_access::AgentAccessPhase;
pub use agents::Agents;
pub use connect::Connect;
pub use facts::Facts;
pub use kubeconfig::Kubeconfig;
pub use labels::NodeLabels;
pub use prune::PruneNodes;
pub use readiness::Readiness;
pub use relay::{Relay, RelayEnd};
#[cfg(test)]
pub(crate) use renew_certs::RENEW;
pub use renew_certs::RenewCertificates;
pub use reset::Reset;
pub use servers::Servers;
pub use uncordon::Uncordon;
pub use upgrade::UpgradeServers;
pub use upgrade_agents::UpgradeAgents;
pub use workload::Workload;

use std::future::Future;

pub use super::converge::{Checking, Converging, Holding, Walk};
use super::error::RunError;
use super::run::Run;
use crate::write::Writer;

/// What a phase works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// These nodes (indices into `Run::nodes`); none means skip the phase.
    Nodes(Vec<usize>),
    /// The cluster as a whole.
    Cluster,
    /// Nothing now, and why.
    Nothing(&'static str),
}

impl Selected {
    /// The alive nodes `keep` accepts, when the API answers (the phases
    /// that work through it).
    pub fn with_api(run: &Run<'_>, keep: impl Fn(usize) -> bool) -> Selected {
        match &run.api {
            Some(Ok(_)) => {
                let nodes = run.alive(None).into_iter();
                Selected::Nodes(nodes.filter(|&i| run.selected(i) && keep(i)).collect())
            }
            _ => Selected::Nothing("no API"),
        }
    }
}

/// A phase: `plan` finds out what it would do (it holds no [`Writer`], so
/// it cannot reach code that writes), then `pictl plan` calls `show` (still
/// no Writer) and `pictl apply` calls `apply` with the run's Writer. Node
/// phases walk their nodes' steps in both, through a [`Walk`]: checking
/// them in `show`, converging them in `apply`.
pub trait Phase {
    const NAME: &'static str;
    /// What `plan` found, typed.
    type Plan;

    fn select(&self, run: &Run<'_>) -> Selected;

    /// Finds out what would change; reads only.
    fn plan(
        &self,
        run: &Run<'_>,
        nodes: &[usize],
    ) -> impl Future<Output = Result<Self::Plan, RunError>>;

    /// Reports the plan without carrying it out (`pictl plan`).
    fn show(
        &self,
        run: &mut Run<'_>,
        plan: Self::Plan,
    ) -> impl Future<Output = Result<(), RunError>>;

    /// Carries the plan out.
    fn apply(
        &self,
        run: &mut Run<'_>,
        plan: Self::Plan,
        w: &Writer,
    ) -> impl Future<Output = Result<(), RunError>>;
}

/// Runs `f` on the `selected` nodes in parallel, at most `sem`'s permits
/// at a time, each in its node's tracing span.
async fn in_parallel<'a, 'i: 'a, Fut>(
    nodes: &'a mut [super::node::NodeRun<'i>],
    selected: &[usize],
    sem: &tokio::sync::Semaphore,
    f: impl Fn(&'a mut super::node::NodeRun<'i>) -> Fut,
) where
    Fut: Future<Output = ()> + 'a,
{
    use tracing::Instrument;
    let work = nodes
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| selected.contains(i))
        .map(|(_, run)| {
            let span = tracing::info_span!("node", name = %run.node.name);
            let fut = f(run);
            async move {
                let _permit = sem.acquire().await;
                fut.await
            }
            .instrument(span)
        });
    futures::future::join_all(work).await;
}
