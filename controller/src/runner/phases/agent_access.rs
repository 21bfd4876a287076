//! `agent-access`: once the API answers, each health agent gets its own
//! least-privilege ServiceAccount and RBAC (`agent-rbac`, through the kube
//! client in [`crate::runner::agent_access`]), then its token, the cluster CA
//! and its publishing configuration on the node (the `agent-access` step,
//! run with [`converge::single`]). A plan shows both without writing; a
//! converged cluster reports nothing changed.

use super::{Selected, Symmetric};
use crate::runner::agent_access;
use crate::runner::converge::{self, Env};
use crate::runner::error::RunError;
use crate::runner::report::{Status, StepReport};
use crate::runner::run::Run;
use crate::step::{Desired, StepId};
use crate::steps::{AccessFiles, AgentAccess, dropin, publish_conf};
use crate::write::Writer;

/// How long the token controller may take to fill a new token Secret.
const TOKEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct AgentAccessPhase;

/// The API server URL agents use (the one the run's kubeconfig is rewritten
/// to: the inventory's API address) and the addresses the agent's firewall
/// must allow (that address if it is an IP, and the first server's own).
fn api_endpoint(run: &Run<'_>) -> (String, Vec<String>) {
    let server = crate::render::api_url(run.inv);
    let mut addresses = vec![run.inv.api_address().to_string()];
    if let Some(facts) = run.first_server().and_then(|s| s.facts.as_ref()) {
        addresses.extend(facts.addresses.iter().cloned());
    }
    addresses.retain(|a| a.parse::<std::net::IpAddr>().is_ok());
    let mut seen = std::collections::BTreeSet::new();
    addresses.retain(|a| seen.insert(a.clone()));
    (server, addresses)
}

impl AgentAccessPhase {
    /// The API side for one node: its report, and its token once there.
    async fn rbac(
        client: &kube::Client,
        node: &str,
        w: Option<&Writer>,
    ) -> (StepReport, Option<agent_access::Token>) {
        let report =
            |status, changes, why| StepReport::new(StepId::AgentRbac, status, changes, why);
        let (changes, token) = match agent_access::plan(client, node).await {
            Ok(c) => c,
            Err(why) => return (report(Status::Failed, vec![], Some(why)), None),
        };
        if changes.is_empty() {
            return (report(Status::Ok, vec![], None), token);
        }
        let Some(_) = w else {
            return (report(Status::Changed, changes, None), None);
        };
        let applied = match agent_access::apply(client, node).await {
            Ok(()) => agent_access::wait_token(client, node, TOKEN_WAIT).await,
            Err(e) => Err(e),
        };
        match applied {
            Ok(token) => (report(Status::Changed, changes, None), Some(token)),
            Err(why) => (report(Status::Failed, changes, Some(why)), None),
        }
    }

    async fn run(run: &mut Run<'_>, nodes: &[usize], w: Option<&Writer>) {
        let Ok(client) = run.api().cloned() else {
            return;
        };
        let (server, addresses) = api_endpoint(run);
        let progress = run.opts.progress.clone();
        for &i in nodes {
            let name = run.nodes[i].node.name.clone();
            let (report, token) = Self::rbac(&client, &name, w).await;
            run.nodes[i].push(progress.as_ref(), report);
            let (Some((token, ca_pem)), Some(mut desired)) =
                (token, run.desired.get(&name).cloned())
            else {
                continue;
            };
            desired.agent_access = Some(AccessFiles {
                token,
                ca_pem,
                publish_conf: publish_conf(&server, &name),
                dropin: dropin(&addresses),
            });
            Self::converge(run, i, &desired, w).await;
        }
    }

    async fn converge(run: &mut Run<'_>, i: usize, desired: &Desired, w: Option<&Writer>) {
        let env = Env {
            desired,
            store: &run.store,
            opts: run.opts,
        };
        converge::single(&mut run.nodes[i], env, &AgentAccess, w).await;
    }
}

impl Symmetric for AgentAccessPhase {
    const NAME: &'static str = "agent-access";

    fn select(&self, run: &Run<'_>) -> Selected {
        if !matches!(&run.api, Some(Ok(_))) {
            return Selected::Nothing("no API");
        }
        let with_agent: Vec<usize> = run
            .alive(None)
            .into_iter()
            .filter(|&i| {
                let d = run.desired.get(&run.nodes[i].node.name);
                d.is_some_and(|d| matches!(d.agent, Some(Ok(_))))
            })
            .collect();
        Selected::Nodes(with_agent)
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
