//! `pictl reset`: every selected node's K3s, health agent and records are
//! removed (see [`crate::steps::K3sReset`]), agents first and in parallel,
//! then servers one at a time; a plan shows what would be removed. A reset
//! of some of an HA cluster's servers is refused when it would leave etcd
//! without a quorum, and each of those servers leaves etcd
//! ([`crate::cluster::etcd_member`]) before its K3s is removed.

use tracing::Instrument;

use super::{Checking, Converging, Phase, Selected, Walk, in_parallel};
use crate::cluster::etcd_member;
use crate::inventory::Role;
use crate::report::{Status, StepReport};
use crate::runner::converge::Env;
use crate::runner::desired::{self, Inputs};
use crate::runner::error::RunError;
use crate::runner::quorum::{self, Server};
use crate::runner::run::Run;
use crate::step::Desired;
use crate::step::{Change, StepId};
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
        start: crate::render::Start::Alone,
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

/// What a reset does.
pub struct ResetPlan {
    nodes: Vec<usize>,
    /// Some servers of an HA cluster whose others stay: each leaves etcd first.
    leave_etcd: bool,
}

/// A server's etcd member, removed (or to be) before its K3s.
fn member_left(status: Status, message: Option<String>) -> StepReport {
    let changes = match status {
        Status::Changed => vec![Change::new("etcd member", "member", "removed")],
        _ => vec![],
    };
    StepReport::new(StepId::EtcdMember, status, changes, message)
}

impl Reset {
    fn place(run: &mut Run<'_>, nodes: &[usize]) -> (Vec<usize>, Vec<usize>) {
        for &i in nodes {
            let d = placeholder(run, i);
            run.desired.insert(run.nodes[i].node.name.clone(), d);
        }
        nodes
            .iter()
            .partition(|&&i| run.nodes[i].node.role == Role::Agent)
    }

    async fn agents(run: &mut Run<'_>, agents: &[usize], how: &impl Walk) {
        let (desired, store, opts) = (&run.desired, &run.store, run.opts);
        in_parallel(&mut run.nodes, agents, &run.sem, |n| {
            let env = desired.get(&n.node.name).map(|desired| Env {
                desired,
                store,
                opts,
            });
            async move {
                if let Some(env) = env {
                    how.single(n, env, &K3sReset).await;
                }
            }
        })
        .await;
    }

    async fn server(run: &mut Run<'_>, i: usize, how: &impl Walk) {
        let (desired, store, opts) = (&run.desired, &run.store, run.opts);
        let node = &mut run.nodes[i];
        let Some(desired) = desired.get(&node.node.name) else {
            return;
        };
        let env = Env {
            desired,
            store,
            opts,
        };
        let span = tracing::info_span!("node", name = %node.node.name);
        how.single(node, env, &K3sReset).instrument(span).await;
    }

    /// Asks K3s to remove server `i`'s etcd member and waits for it; false
    /// (reported) when it did not happen, and K3s must stay.
    async fn leave(
        run: &mut Run<'_>,
        i: usize,
        client: &Result<kube::Client, String>,
        w: &Writer,
    ) -> bool {
        let name = run.nodes[i].node.name.clone();
        let report = match client {
            Err(e) => member_left(
                Status::Failed,
                Some(format!(
                    "node {name}: cannot ask K3s to remove its etcd member: {e}; K3s was left installed"
                )),
            ),
            Ok(client) => match etcd_member::leave(client, &name, run.opts.wait, w).await {
                Ok(true) => member_left(Status::Changed, None),
                Ok(false) => member_left(Status::Ok, None),
                Err(e) => member_left(Status::Failed, Some(crate::error_chain(&e))),
            },
        };
        let ok = report.status != Status::Failed;
        let progress = run.opts.progress.clone();
        run.nodes[i].push(progress.as_ref(), report);
        ok
    }
}

impl Phase for Reset {
    const NAME: &'static str = "reset";
    type Plan = ResetPlan;

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::Nodes(run.alive(None))
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<ResetPlan, RunError> {
        if let Some(short) = shortfall(run) {
            return Err(RunError::QuorumLoss(short));
        }
        let leave_etcd = run.inv.cluster.ha && run.nodes.len() < run.inv.nodes.len();
        Ok(ResetPlan {
            nodes: nodes.to_vec(),
            leave_etcd,
        })
    }

    async fn show(&self, run: &mut Run<'_>, plan: ResetPlan) -> Result<(), RunError> {
        let (agents, servers) = Self::place(run, &plan.nodes);
        Self::agents(run, &agents, &Checking).await;
        for i in servers {
            if plan.leave_etcd && has_k3s(run, i) {
                let progress = run.opts.progress.clone();
                run.nodes[i].push(progress.as_ref(), member_left(Status::Changed, None));
            }
            Self::server(run, i, &Checking).await;
        }
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: ResetPlan, w: &Writer) -> Result<(), RunError> {
        let (agents, servers) = Self::place(run, &plan.nodes);
        Self::agents(run, &agents, &Converging(w)).await;
        let client = match plan.leave_etcd && !servers.is_empty() {
            true => Some(super::super::reset::admin_client(run).await),
            false => None,
        };
        for i in servers {
            if let Some(client) = &client
                && has_k3s(run, i)
                && !Self::leave(run, i, client, w).await
            {
                // One at a time: the next server waits for this one.
                break;
            }
            Self::server(run, i, &Converging(w)).await;
        }
        Ok(())
    }
}

fn has_k3s(run: &Run<'_>, i: usize) -> bool {
    run.nodes[i]
        .facts
        .as_ref()
        .is_some_and(|f| f.k3s_version.is_some())
}
