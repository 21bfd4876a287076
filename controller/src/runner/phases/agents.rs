//! Agents, in parallel (bounded by `--concurrency`), joined with the first
//! server's token. Without a token an agent cannot be converged: in apply
//! that fails it; in plan its config is shown as pending.

use super::{Checking, Converging, Phase, Selected, Walk, in_parallel};
use crate::inventory::Role;
use crate::render;
use crate::runner::converge::Env;
use crate::runner::error::{NodeFailure, RunError};
use crate::runner::run::Run;
use crate::secret::Secret;
use crate::step::DesiredConfig;
use crate::write::Writer;

pub struct Agents;

impl Agents {
    /// Gives each agent its join config, when the token is known.
    pub(super) fn join_configs(run: &mut Run<'_>, nodes: &[usize]) {
        let Some(token) = run.join_token.clone() else {
            return;
        };
        for &i in nodes {
            let node = run.nodes[i].node;
            if let Some(d) = run.desired.get_mut(&node.name) {
                let cfg = render::agent_config(run.inv, node, &token);
                d.config = DesiredConfig::Known(Secret::new(cfg));
            }
        }
    }

    async fn walk(run: &mut Run<'_>, nodes: &[usize], how: &impl Walk) {
        Self::join_configs(run, nodes);
        let (desired, store, opts) = (&run.desired, &run.store, run.opts);
        in_parallel(&mut run.nodes, nodes, &run.sem, |n| async move {
            let Some(desired) = desired.get(&n.node.name) else {
                return;
            };
            let env = Env {
                desired,
                store,
                opts,
            };
            how.steps(n, env).await;
        })
        .await;
    }
}

impl Phase for Agents {
    const NAME: &'static str = "agents";
    /// The agents to converge.
    type Plan = Vec<usize>;

    fn select(&self, run: &Run<'_>) -> Selected {
        let mut nodes = run.alive(Some(Role::Agent));
        nodes.retain(|i| !run.upgraded.contains(i));
        Selected::Nodes(nodes)
    }

    async fn plan(&self, _run: &Run<'_>, nodes: &[usize]) -> Result<Vec<usize>, RunError> {
        Ok(nodes.to_vec())
    }

    async fn show(&self, run: &mut Run<'_>, nodes: Vec<usize>) -> Result<(), RunError> {
        Self::walk(run, &nodes, &Checking).await;
        Ok(())
    }

    async fn apply(
        &self,
        run: &mut Run<'_>,
        nodes: Vec<usize>,
        w: &Writer,
    ) -> Result<(), RunError> {
        if run.join_token.is_none() {
            let why = format!("join token unavailable: {}", run.first_server_state());
            let progress = run.opts.progress.clone();
            for &i in &nodes {
                run.nodes[i].fail(progress.as_ref(), NodeFailure::Failed(why.clone()));
            }
            return Ok(());
        }
        Self::walk(run, &nodes, &Converging(w)).await;
        Ok(())
    }
}
