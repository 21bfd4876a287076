//! The admin kubeconfig: fetched from the first server (with its facts;
//! with HA, the first server that converged),
//! pointed at the API address, written 0600 to the state directory (only in
//! apply), and the run's API client made from it.

use super::{Phase, Selected};
use crate::cluster::ClusterError;
use crate::error_chain;
use crate::inventory::Role;
use crate::kubeconfig;
use crate::render;
use crate::report::{Status, StepReport};
use crate::runner::error::RunError;
use crate::runner::run::Run;
use crate::secret::Secret;
use crate::state;
use crate::step::{Change, StepId};
use crate::write::Writer;

pub struct Kubeconfig;

/// What the kubeconfig file needs.
pub enum KubeconfigPlan {
    /// The server has no admin kubeconfig (why).
    Missing(String),
    /// The server's k3s.yaml could not be used (why).
    Invalid(String),
    Current(Secret),
    Write {
        wanted: Secret,
        change: Change,
    },
}

fn plan_of(run: &Run<'_>, server: usize) -> KubeconfigPlan {
    let inv = run.inv;
    let admin = run.nodes[server]
        .facts
        .as_ref()
        .and_then(|f| f.admin_kubeconfig.as_ref());
    let Some(admin) = admin else {
        let state = run.first_server_state();
        return KubeconfigPlan::Missing(format!(
            "no admin kubeconfig: {state} but has no /etc/rancher/k3s/k3s.yaml"
        ));
    };
    let wanted = match kubeconfig::rewrite(admin.expose(), &inv.cluster.name, &render::api_url(inv))
    {
        Ok(k) => k,
        Err(e) => {
            return KubeconfigPlan::Invalid(format!("server's k3s.yaml: {}", error_chain(&e)));
        }
    };
    let path = state::kubeconfig_path(inv);
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref() == Some(wanted.as_str()) {
        return KubeconfigPlan::Current(Secret::new(wanted));
    }
    let before = if current.is_some() {
        "outdated"
    } else {
        "absent"
    };
    let after = format!("context {} → {}", inv.cluster.name, render::api_url(inv));
    KubeconfigPlan::Write {
        wanted: Secret::new(wanted),
        change: Change::new(path.display().to_string(), before, after),
    }
}

impl KubeconfigPlan {
    /// The phase's report, with `failed` when carrying it out failed.
    fn report(&self, run: &Run<'_>, missing: Status, failed: Option<String>) -> StepReport {
        let path = state::kubeconfig_path(run.inv).display().to_string();
        let report = |status, changes, message| {
            StepReport::new(StepId::Kubeconfig, status, changes, message)
        };
        match self {
            KubeconfigPlan::Missing(why) => {
                let change = Change::new(path, "absent", "fetched from the first server");
                report(missing, vec![change], Some(why.clone()))
            }
            KubeconfigPlan::Invalid(why) => report(Status::Failed, vec![], Some(why.clone())),
            KubeconfigPlan::Current(_) => report(Status::Ok, vec![], None),
            KubeconfigPlan::Write { change, .. } => match failed {
                Some(why) => report(Status::Failed, vec![change.clone()], Some(why)),
                None => report(Status::Changed, vec![change.clone()], None),
            },
        }
    }

    /// The kubeconfig the run's API client is made from.
    fn usable(self) -> Option<Secret> {
        match self {
            KubeconfigPlan::Current(k) | KubeconfigPlan::Write { wanted: k, .. } => Some(k),
            KubeconfigPlan::Missing(_) | KubeconfigPlan::Invalid(_) => None,
        }
    }
}

impl Kubeconfig {
    /// Records the report, the API client and the join token.
    async fn settle(run: &mut Run<'_>, server: usize, report: StepReport, plan: KubeconfigPlan) {
        run.nodes[server].push(run.opts.progress.as_ref(), report);
        // Built once a run: an upgrade phase may have made it already.
        let built = matches!(run.api, Some(Ok(_)));
        if let Some(k) = plan.usable().filter(|_| !built) {
            let k = api_through(run, server).unwrap_or(k);
            let client = run.opts.api.client(&k).await;
            run.api = Some(client.map_err(|e| {
                ClusterError::NoApi(format!("cannot reach the API: {}", error_chain(&e)))
            }));
        }
        let facts = run.nodes[server].facts.as_ref();
        run.admin = facts.and_then(|f| f.admin_kubeconfig.clone());
        // Agents join with the server's agent token when it has one.
        run.join_token =
            facts.and_then(|f| f.agent_token.clone().or_else(|| f.server_token.clone()));
    }
}

/// With HA and the first server down, the run's API goes through the server
/// the kubeconfig came from, unless the user's `api_address` (a VIP or DNS
/// name for every server) is set. The file keeps the API address either way.
fn api_through(run: &Run<'_>, server: usize) -> Option<Secret> {
    let first = run.nodes.iter().position(|r| r.node.role == Role::Server);
    if first == Some(server) || run.inv.cluster.api_address.is_some() {
        return None;
    }
    let node = run.nodes[server].node;
    let admin = run.nodes[server]
        .facts
        .as_ref()?
        .admin_kubeconfig
        .as_ref()?;
    let url = render::server_url(&node.address);
    kubeconfig::rewrite(admin.expose(), &run.inv.cluster.name, &url)
        .ok()
        .map(Secret::new)
}

impl Phase for Kubeconfig {
    const NAME: &'static str = "kubeconfig";
    /// The server it comes from, and what the file needs.
    type Plan = (usize, KubeconfigPlan);

    /// The first server; with HA, the first one that converged (every server
    /// of an HA cluster has the admin kubeconfig and the tokens).
    fn select(&self, run: &Run<'_>) -> Selected {
        let first = run.nodes.iter().position(|r| r.node.role == Role::Server);
        match run.alive(Some(Role::Server)).first() {
            Some(&i) if first == Some(i) || run.inv.cluster.ha => Selected::Nodes(vec![i]),
            _ => Selected::Nothing("the first server did not converge"),
        }
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<Self::Plan, RunError> {
        Ok((nodes[0], plan_of(run, nodes[0])))
    }

    async fn show(&self, run: &mut Run<'_>, (server, plan): Self::Plan) -> Result<(), RunError> {
        let report = plan.report(run, Status::Changed, None);
        Self::settle(run, server, report, plan).await;
        Ok(())
    }

    async fn apply(
        &self,
        run: &mut Run<'_>,
        (server, plan): Self::Plan,
        w: &Writer,
    ) -> Result<(), RunError> {
        let failed = match &plan {
            KubeconfigPlan::Write { wanted, .. } => {
                let path = state::kubeconfig_path(run.inv);
                state::write_private(&path, wanted.expose().as_bytes(), w)
                    .map_err(|e| error_chain(&e))
                    .err()
            }
            _ => None,
        };
        let report = plan.report(run, Status::Failed, failed);
        Self::settle(run, server, report, plan).await;
        Ok(())
    }
}
