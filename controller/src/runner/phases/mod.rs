//! The phases of a run, one file each, in the order the manager runs them:
//! connect → facts → relay → upgrade-servers → servers → kubeconfig →
//! upgrade-agents → agents → relay-end → readiness → uncordon → node-labels
//! → agent-access → workload.
//! Each selects the nodes it concerns (or the cluster) from what earlier
//! phases found, and has a read-only `plan` and an `apply` that needs the
//! run's [`Writer`]. New phases (HA, drain, reset) are new files here.

mod agent_access;
mod agents;
mod connect;
mod facts;
mod kubeconfig;
mod labels;
mod readiness;
mod relay;
mod reset;
mod servers;
mod uncordon;
mod upgrade;
mod workload;

pub use agent_access::AgentAccessPhase;
pub use agents::Agents;
pub use connect::Connect;
pub use facts::Facts;
pub use kubeconfig::Kubeconfig;
pub use labels::NodeLabels;
pub use readiness::Readiness;
pub use relay::{Relay, RelayEnd};
pub use reset::Reset;
pub use servers::Servers;
pub use uncordon::Uncordon;
pub use upgrade::{UpgradeAgents, UpgradeServers};
pub use workload::Workload;

use std::future::Future;

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
                Selected::Nodes(run.alive(None).into_iter().filter(|&i| keep(i)).collect())
            }
            _ => Selected::Nothing("no API"),
        }
    }
}

pub trait Phase {
    const NAME: &'static str;

    fn select(&self, run: &Run<'_>) -> Selected;

    /// Finds out what would change; must write nothing anywhere.
    fn plan(
        &self,
        run: &mut Run<'_>,
        nodes: &[usize],
    ) -> impl Future<Output = Result<(), RunError>>;

    /// Converges.
    fn apply(
        &self,
        run: &mut Run<'_>,
        nodes: &[usize],
        w: &Writer,
    ) -> impl Future<Output = Result<(), RunError>>;
}

/// A phase whose plan and apply run the same code, told apart only by
/// whether they hold the run's Writer (what writes needs `Some(w)`).
pub trait Symmetric {
    const NAME: &'static str;

    fn select(&self, run: &Run<'_>) -> Selected;

    fn work(
        &self,
        run: &mut Run<'_>,
        nodes: &[usize],
        w: Option<&Writer>,
    ) -> impl Future<Output = Result<(), RunError>>;
}

impl<T: Symmetric> Phase for T {
    const NAME: &'static str = <T as Symmetric>::NAME;

    fn select(&self, run: &Run<'_>) -> Selected {
        Symmetric::select(self, run)
    }

    async fn plan(&self, run: &mut Run<'_>, nodes: &[usize]) -> Result<(), RunError> {
        self.work(run, nodes, None).await
    }

    async fn apply(&self, run: &mut Run<'_>, nodes: &[usize], w: &Writer) -> Result<(), RunError> {
        self.work(run, nodes, Some(w)).await
    }
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
