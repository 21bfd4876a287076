//! Servers, one at a time: never two control planes down at once, and the
//! rollout stops at the first server that fails (the rest are reported as
//! not converged because of it).

use tracing::Instrument;

use super::{Selected, Symmetric};
use crate::inventory::Role;
use crate::runner::converge::{self, Env};
use crate::runner::error::{NodeFailure, RunError};
use crate::runner::run::Run;
use crate::write::Writer;

pub struct Servers;

impl Servers {
    async fn run(run: &mut Run<'_>, nodes: &[usize], w: Option<&Writer>) {
        let progress = run.opts.progress.clone();
        let mut broken: Option<String> = None;
        for &i in nodes {
            let node = &mut run.nodes[i];
            if let Some(first) = &broken {
                let msg = format!("not converged: server {first} failed before it");
                node.fail(progress.as_ref(), NodeFailure::Failed(msg));
                continue;
            }
            let Some(desired) = run.desired.get(&node.node.name) else {
                continue;
            };
            let env = Env {
                desired,
                store: &run.store,
                opts: run.opts,
            };
            let span = tracing::info_span!("node", name = %node.node.name);
            match w {
                None => converge::plan(node, env).instrument(span).await,
                Some(w) => converge::apply(node, env, w).instrument(span).await,
            }
            if !node.alive() {
                broken = Some(node.node.name.clone());
            }
        }
    }
}

impl Symmetric for Servers {
    const NAME: &'static str = "servers";

    fn select(&self, run: &Run<'_>) -> Selected {
        let mut nodes = run.alive(Some(Role::Server));
        nodes.retain(|i| !run.upgraded.contains(i));
        Selected::Nodes(nodes)
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
