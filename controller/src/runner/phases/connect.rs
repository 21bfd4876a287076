//! Connect to every node and gather its facts in one round trip, in
//! parallel. An unreachable node is recorded and the others go on. In
//! apply the nodes also bring their hash caches up to date.

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
        Ok(())
    }
}
