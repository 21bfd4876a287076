//! Upgrading the agents, after the servers: `--max-unavailable` at a time,
//! each cordoned, drained, upgraded, waited for and uncordoned as a server
//! is (see [`super::upgrade`]), and never past a server left behind.

use std::sync::Mutex;

use super::agents::Agents;
use super::upgrade::{
    Cx, Upgrade, UpgradePlan, candidates, client_or_fail, client_or_warn, plan, stop_after,
};
use super::{Checking, Converging, Phase, Selected, in_parallel};
use crate::inventory::Role;
use crate::runner::converge::Env;
use crate::runner::error::{NodeFailure, RunError};
use crate::runner::run::Run;
use crate::write::Writer;

pub struct UpgradeAgents;

/// A server left behind the run's release (its upgrade failed, or it is
/// unreachable on an older one): its name and version. Agents are never
/// upgraded past it, as a kubelet must not be newer than the API server.
fn server_behind(run: &Run<'_>) -> Option<(String, String)> {
    run.nodes.iter().enumerate().find_map(|(i, r)| {
        if r.node.role != Role::Server {
            return None;
        }
        let running = r.facts.as_ref().and_then(|f| f.k3s_version.clone());
        let running = match running {
            Some(v) if v != run.version => v,
            // Not installed (the servers phase installs the release) or on it.
            Some(_) => return None,
            None if r.facts.is_some() => return None,
            None => "an unknown release".to_string(),
        };
        let upgraded = run.upgraded.contains(&i) && r.alive();
        (!upgraded).then(|| (r.node.name.clone(), running))
    })
}

/// Fails every agent candidate: a server is behind the release.
fn stop_for_server(run: &mut Run<'_>, nodes: &[usize], server: &str, runs: &str) {
    let progress = run.opts.progress.clone();
    let msg = format!(
        "not upgraded: server {server} is still on {runs}, not {}, and a kubelet must not be \
         newer than its API server (Kubernetes' version skew policy)",
        run.version
    );
    for &i in nodes {
        run.nodes[i].fail(progress.as_ref(), NodeFailure::Failed(msg.clone()));
    }
}

impl UpgradeAgents {
    async fn walk(run: &mut Run<'_>, client: &kube::Client, nodes: &[usize], how: &impl Upgrade) {
        if let Some((server, runs)) = server_behind(run) {
            stop_for_server(run, nodes, &server, &runs);
            return;
        }
        Agents::join_configs(run, nodes);
        let per = run.opts.upgrade.max_unavailable.max(1);
        let batches: Vec<&[usize]> = nodes.chunks(per).collect();
        for (k, batch) in batches.iter().enumerate() {
            let order = format!(
                "agents, batch {} of {}, {per} at a time",
                k + 1,
                batches.len()
            );
            Self::batch(run, client, batch, &order, how).await;
            if let Some(&i) = batch.iter().find(|&&i| !run.nodes[i].alive()) {
                let first = run.nodes[i].node.name.clone();
                let rest: Vec<usize> = batches[k + 1..]
                    .iter()
                    .flat_map(|b| b.iter().copied())
                    .collect();
                stop_after(run, &rest, &first);
                return;
            }
        }
    }

    /// One batch, in parallel.
    async fn batch(
        run: &mut Run<'_>,
        client: &kube::Client,
        batch: &[usize],
        order: &str,
        how: &impl Upgrade,
    ) {
        let handled: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let cx = Cx {
            client,
            opts: run.opts,
            version: &run.version,
            work: super::upgrade::Work::Upgrade,
        };
        let (desired, store, opts) = (&run.desired, &run.store, run.opts);
        let (cx, handled_ref) = (&cx, &handled);
        in_parallel(&mut run.nodes, batch, &run.sem, |n| async move {
            let Some(desired) = desired.get(&n.node.name) else {
                return;
            };
            let env = Env {
                desired,
                store,
                opts,
            };
            if how.one(n, env, cx, order).await {
                handled_ref
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(n.node.name.clone());
            }
        })
        .await;
        let names = handled.into_inner().unwrap_or_else(|p| p.into_inner());
        run.upgraded.extend(
            batch
                .iter()
                .filter(|&&i| names.contains(&run.nodes[i].node.name)),
        );
    }
}

impl Phase for UpgradeAgents {
    const NAME: &'static str = "upgrade-agents";
    type Plan = UpgradePlan;

    fn select(&self, run: &Run<'_>) -> Selected {
        if run.join_token.is_none() {
            return Selected::Nothing("no join token: the agents phase reports it");
        }
        Selected::Nodes(candidates(run, Role::Agent))
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<UpgradePlan, RunError> {
        Ok(plan(run, nodes).await)
    }

    async fn show(&self, run: &mut Run<'_>, plan: UpgradePlan) -> Result<(), RunError> {
        if let Some((client, nodes)) = client_or_warn(run, plan) {
            Self::walk(run, &client, &nodes, &Checking).await;
        }
        Ok(())
    }

    async fn apply(
        &self,
        run: &mut Run<'_>,
        plan: UpgradePlan,
        w: &Writer,
    ) -> Result<(), RunError> {
        if let Some((client, nodes)) = client_or_fail(run, plan) {
            Self::walk(run, &client, &nodes, &Converging(w)).await;
        }
        Ok(())
    }
}
