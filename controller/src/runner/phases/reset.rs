//! `pictl reset`: every selected node's K3s, health agent and records are
//! removed (see [`crate::steps::K3sReset`]), agents first and in parallel,
//! then servers one at a time; a plan shows what would be removed.

use tracing::Instrument;

use super::{Checking, Converging, Phase, Selected, Walk, in_parallel};
use crate::inventory::Role;
use crate::runner::converge::Env;
use crate::runner::desired::{self, Inputs};
use crate::runner::error::RunError;
use crate::runner::quorum::{self, Server};
use crate::runner::run::Run;
use crate::step::Desired;
use crate::steps::K3sReset;
use crate::write::Writer;

pub struct Reset;

/// A desired state for the step context: reset reads facts, not it.
fn placeholder(run: &Run<'_>, i: usize) -> Desired {
    let inputs = Inputs {
        version: &run.version,
        binary_sha256: String::new(),
        secret: None,
        agent_secret: None,
        server_token: None,
        agent: None,
        agent_dropin: String::new(),
    };
    desired::desired(run.inv, run.nodes[i].node, inputs)
}

/// A reset of some of an HA cluster's servers that would leave etcd
/// without a quorum (a reset of every node takes the whole cluster).
fn shortfall(run: &Run<'_>) -> Option<quorum::Shortfall> {
    if !run.inv.cluster.ha || run.nodes.len() == run.inv.nodes.len() {
        return None;
    }
    let servers: Vec<(&str, Server)> = run
        .inv
        .nodes
        .iter()
        .filter(|n| n.role == Role::Server)
        .map(|n| {
            let asked = run.nodes.iter().find(|r| r.node.name == n.name);
            let state = match asked.filter(|r| r.alive()).and_then(|r| r.facts.as_ref()) {
                None => Server::Kept,
                Some(f) if f.k3s_version.is_some() => Server::Reset,
                Some(_) => Server::Absent,
            };
            (n.name.as_str(), state)
        })
        .collect();
    quorum::check(&servers)
}

impl Reset {
    async fn walk(run: &mut Run<'_>, nodes: &[usize], how: &impl Walk) {
        for &i in nodes {
            let d = placeholder(run, i);
            run.desired.insert(run.nodes[i].node.name.clone(), d);
        }
        let (agents, servers): (Vec<usize>, Vec<usize>) = nodes
            .iter()
            .partition(|&&i| run.nodes[i].node.role == Role::Agent);
        let (desired, store, opts) = (&run.desired, &run.store, run.opts);
        let env = |name: &str| {
            desired.get(name).map(|desired| Env {
                desired,
                store,
                opts,
            })
        };
        in_parallel(&mut run.nodes, &agents, &run.sem, |n| {
            let env = env(&n.node.name);
            async move {
                if let Some(env) = env {
                    how.single(n, env, &K3sReset).await;
                }
            }
        })
        .await;
        for i in servers {
            let node = &mut run.nodes[i];
            let Some(env) = env(&node.node.name) else {
                continue;
            };
            let span = tracing::info_span!("node", name = %node.node.name);
            how.single(node, env, &K3sReset).instrument(span).await;
        }
    }
}

impl Phase for Reset {
    const NAME: &'static str = "reset";
    /// The nodes to reset.
    type Plan = Vec<usize>;

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::Nodes(run.alive(None))
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<Vec<usize>, RunError> {
        if let Some(short) = shortfall(run) {
            return Err(RunError::QuorumLoss(short));
        }
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
