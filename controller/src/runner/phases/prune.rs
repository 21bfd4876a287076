//! Scale-down: a Node in the cluster whose name the inventory no longer
//! has (a board taken out, its entry deleted). `plan` and `apply` warn about
//! it, naming the flag, and leave it; with `--prune-nodes` plan lists it and
//! apply removes it, one node at a time: cordoned and drained as in an
//! upgrade, an etcd member asked to leave etcd first (K3s's remove
//! annotation, see [`crate::cluster::etcd_member`]; refused when that
//! would leave etcd fewer than a majority of its members), then the Node
//! deleted with its node-password Secret, so that a board re-flashed under
//! that name can join again (K3s's docs: "Node password" in the
//! architecture page; pkg/nodepassword). pictl cannot reach the machine
//! (it has no entry): K3s left running on it registers its Node again.

use super::{Phase, Selected};
use crate::cluster::etcd_member::{self, Membership};
use crate::cluster::{NodeState, drain, nodes};
use crate::error_chain;
use crate::report::{Status, StepReport};
use crate::runner::error::RunError;
use crate::runner::quorum::majority;
use crate::runner::run::Run;
use crate::step::{Change, StepId};
use crate::write::Writer;

pub struct PruneNodes;

/// A Node the inventory does not name, and whether it is an etcd member.
pub struct Gone {
    name: String,
    member: bool,
}

/// The Nodes to prune and how many etcd members the cluster has.
pub struct PrunePlan {
    gone: Vec<Gone>,
    members: usize,
}

const BEFORE: &str = "in the cluster, not in the inventory";

/// Each Node left in the cluster, warned about with the flag that removes it.
fn warn_unpruned(run: &Run<'_>, gone: &[Gone]) {
    for g in gone {
        run.opts.progress.event(&crate::report::Event {
            subject: &g.name,
            topic: crate::report::Topic::Node,
            stage: crate::report::Stage::Warning,
            detail: "in the cluster but not in the inventory: left as it is; \
                     `pictl apply --prune-nodes` drains it and removes it from the cluster",
        });
    }
}

fn report(name: &str, status: Status, after: &str, why: Option<String>) -> StepReport {
    let change = Change::new(format!("node {name}"), BEFORE, after);
    StepReport::new(StepId::NodeDeleted, status, vec![change], why)
}

impl Phase for PruneNodes {
    const NAME: &'static str = "prune-nodes";
    type Plan = PrunePlan;

    fn select(&self, run: &Run<'_>) -> Selected {
        if run.limit.is_some() {
            return Selected::Nothing("--nodes: a run of some nodes removes none");
        }
        match (&run.api, &run.seen) {
            (Some(Ok(_)), Some(_)) => Selected::Cluster,
            _ => Selected::Nothing("no API"),
        }
    }

    async fn plan(&self, run: &Run<'_>, _: &[usize]) -> Result<PrunePlan, RunError> {
        let Some(seen) = &run.seen else {
            return Ok(PrunePlan {
                gone: vec![],
                members: 0,
            });
        };
        let member = |n| matches!(etcd_member::membership(Some(n)), Membership::Member);
        let known = |name: &String| run.inv.nodes.iter().any(|n| &n.name == name);
        let gone = (seen.nodes.iter())
            .filter(|(name, _)| !known(name))
            .map(|(name, n)| Gone {
                name: name.clone(),
                member: member(n),
            })
            .collect();
        let members = seen.nodes.values().filter(|n| member(n)).count();
        Ok(PrunePlan { gone, members })
    }

    async fn show(&self, run: &mut Run<'_>, plan: PrunePlan) -> Result<(), RunError> {
        if !run.opts.upgrade.prune_nodes {
            warn_unpruned(run, &plan.gone);
            return Ok(());
        }
        for g in &plan.gone {
            let after = if g.member {
                "cordoned, drained, out of etcd, deleted (one at a time)"
            } else {
                "cordoned, drained, deleted (one at a time)"
            };
            run.report_dropped(&g.name, report(&g.name, Status::Changed, after, None));
        }
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: PrunePlan, w: &Writer) -> Result<(), RunError> {
        if !run.opts.upgrade.prune_nodes {
            warn_unpruned(run, &plan.gone);
            return Ok(());
        }
        let Ok(client) = run.api().cloned() else {
            return Ok(());
        };
        let mut members = plan.members;
        for g in &plan.gone {
            let done = prune_one(run, &client, g, members, w).await;
            let (status, after, why) = match done {
                Ok(after) => (Status::Changed, after, None),
                Err(why) => (Status::Failed, "left in the cluster", Some(why)),
            };
            let failed = status == Status::Failed;
            run.report_dropped(&g.name, report(&g.name, status, after, why.clone()));
            if failed {
                // One at a time: the next waits for this one.
                return Ok(());
            }
            members -= usize::from(g.member);
        }
        Ok(())
    }
}

/// Drains, takes out of etcd and deletes one Node; what was done, or why not.
async fn prune_one(
    run: &Run<'_>,
    client: &kube::Client,
    g: &Gone,
    members: usize,
    w: &Writer,
) -> Result<&'static str, String> {
    let name = g.name.as_str();
    if g.member && members - 1 < majority(members) {
        return Err(format!(
            "removing node {name} would leave etcd {} of its {members} members, fewer than \
             the {} a quorum needs: add a server first",
            members - 1,
            majority(members)
        ));
    }
    let Some(live) = nodes::get(client, name)
        .await
        .map_err(|e| error_chain(&e))?
    else {
        return Ok("already gone");
    };
    if !NodeState::of(&live).unschedulable {
        drain::cordon(client, &live, w)
            .await
            .map_err(|e| error_chain(&e))?;
    }
    let up = &run.opts.upgrade;
    if up.drain {
        drain::drain(client, name, up.drain_timeout, up.drain_force, w)
            .await
            .map_err(|e| format!("{}; left cordoned", error_chain(&e)))?;
    }
    if g.member {
        etcd_member::leave(client, name, run.opts.wait, w)
            .await
            .map_err(|e| format!("{}; left cordoned", error_chain(&e)))?;
    }
    nodes::delete(client, name, w)
        .await
        .map_err(|e| error_chain(&e))?;
    nodes::delete_password(client, name, w)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(if g.member {
        "drained, out of etcd, deleted"
    } else {
        "drained, deleted"
    })
}
