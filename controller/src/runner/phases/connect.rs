//! Connect to every node and gather its facts in one round trip, in
//! parallel. An unreachable node is recorded and the others go on. In
//! apply each node is locked first (`node_lock`; a node another run holds
//! stops the run) and brings its hash cache up to date.

use super::{Phase, Selected, in_parallel};
use crate::runner::error::RunError;
use crate::runner::run::Run;
use crate::write::Writer;

pub struct Connect;

impl Phase for Connect {
    const NAME: &'static str = "connect";
    /// The nodes to connect to.
    type Plan = Vec<usize>;

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::Nodes((0..run.nodes.len()).collect())
    }

    async fn plan(&self, _run: &Run<'_>, nodes: &[usize]) -> Result<Vec<usize>, RunError> {
        Ok(nodes.to_vec())
    }

    async fn show(&self, run: &mut Run<'_>, nodes: Vec<usize>) -> Result<(), RunError> {
        let opts = run.opts;
        in_parallel(&mut run.nodes, &nodes, &run.sem, |n| n.start(opts)).await;
        Ok(())
    }

    async fn apply(
        &self,
        run: &mut Run<'_>,
        nodes: Vec<usize>,
        w: &Writer,
    ) -> Result<(), RunError> {
        let opts = run.opts;
        in_parallel(&mut run.nodes, &nodes, &run.sem, |n| {
            n.start_recording(opts, w)
        })
        .await;
        locked_elsewhere(run)
    }
}

/// A node another run holds stops the whole run before anything changes:
/// two controllers must not converge one cluster at once.
fn locked_elsewhere(run: &Run<'_>) -> Result<(), RunError> {
    match run
        .nodes
        .iter()
        .find_map(|n| Some((n, n.locked_by.as_ref()?)))
    {
        Some((n, holder)) => Err(RunError::NodeLocked {
            node: n.node.name.clone(),
            holder: holder.clone(),
        }),
        None => Ok(()),
    }
}
