//! Servers, one at a time: never two control planes down at once, and the
//! rollout stops at the first server that fails (the rest are reported as
//! not converged because of it). With `ha = true` the first server starts
//! etcd (`cluster-init`) and each other one joins it with the first one's
//! full token (CA pinned) once the one before it is up: `k3s.service` is
//! `Type=notify`, and K3s sends READY=1 only once its etcd member joined and
//! its apiserver serves, which the k3s-service step waits for.

use tracing::Instrument;

use super::{Checking, Converging, Holding, Phase, Selected, Walk};
use crate::inventory::Role;
use crate::render;
use crate::runner::converge::Env;
use crate::runner::desired;
use crate::runner::error::{NodeFailure, RunError};
use crate::runner::run::Run;
use crate::secret::Secret;
use crate::step::DesiredConfig;
use crate::write::Writer;

pub struct Servers;

impl Servers {
    async fn walk(run: &mut Run<'_>, nodes: &[usize], how: &impl Walk) {
        let progress = run.opts.progress.clone();
        let mut broken: Option<String> = None;
        let mut first_token: Option<Secret> = None;
        for &i in nodes {
            let held = !run.selected(i);
            let node = &mut run.nodes[i];
            if let Some(first) = &broken {
                let msg = format!("not converged: server {first} failed before it");
                node.fail(progress.as_ref(), NodeFailure::Failed(msg));
                continue;
            }
            // An HA server joins with the full token of the server converged
            // first (the CA pinned); without one its config stays pending.
            if let Some(start) = run.starts.get(&node.node.name)
                && desired::joins(start)
                && let (Some(d), Some(secret)) = (run.desired.get_mut(&node.node.name), &run.secret)
                && let Some(token) = desired::join_token(first_token.as_ref(), secret)
            {
                let agent = run.agent_secret.as_ref();
                let cfg = render::server_config_as(run.inv, node.node, start, token, agent);
                d.config = DesiredConfig::Known(Secret::new(cfg));
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
            if held {
                Holding.steps(node, env).instrument(span).await;
            } else {
                how.steps(node, env).instrument(span).await;
            }
            if !node.alive() {
                broken = Some(node.node.name.clone());
            } else if first_token.is_none() {
                first_token = node.facts.as_ref().and_then(|f| f.server_token.clone());
            }
        }
    }
}

impl Phase for Servers {
    const NAME: &'static str = "servers";
    /// The servers to converge, in order.
    type Plan = Vec<usize>;

    fn select(&self, run: &Run<'_>) -> Selected {
        let mut nodes = run.alive(Some(Role::Server));
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
        Self::walk(run, &nodes, &Converging(w)).await;
        Ok(())
    }
}
