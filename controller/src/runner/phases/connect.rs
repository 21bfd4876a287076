//! Connect to every node and gather its facts in one round trip, in
//! parallel. An unreachable node is recorded and the others go on.

use super::{Selected, Symmetric, in_parallel};
use crate::runner::error::RunError;
use crate::runner::run::Run;
use crate::write::Writer;

pub struct Connect;

impl Connect {
    async fn run(run: &mut Run<'_>, nodes: &[usize], record: Option<&Writer>) {
        let opts = run.opts;
        in_parallel(&mut run.nodes, nodes, &run.sem, |n| n.start(opts, record)).await;
    }
}

impl Symmetric for Connect {
    const NAME: &'static str = "connect";

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::Nodes((0..run.nodes.len()).collect())
    }

    async fn work(
        &self,
        run: &mut Run<'_>,
        nodes: &[usize],
        w: Option<&Writer>,
    ) -> Result<(), RunError> {
        Self::run(run, nodes, w).await;
        Ok(())
    }
}
