//! Finishes what an interrupted upgrade left: a node pictl cordoned (its
//! `pictl.dev/cordoned` annotation) that is Ready on the run's release is
//! uncordoned. A node someone else cordoned carries no such annotation and
//! is never touched.

use super::{Phase, Selected};
use crate::cluster::{NodeState, drain};
use crate::error_chain;
use crate::report::{Status, StepReport};
use crate::runner::error::RunError;
use crate::runner::run::Run;
use crate::step::{Change, StepId};
use crate::write::Writer;
use k8s_openapi::api::core::v1::Node as KNode;

pub struct Uncordon;

/// A node to uncordon: its index, name and Node as listed.
pub struct Leftover {
    node: usize,
    name: String,
    live: Box<KNode>,
}

impl Leftover {
    fn report(&self, status: Status, message: Option<String>) -> StepReport {
        let change = Change::new(
            format!("node {}", self.name),
            "cordoned by an interrupted upgrade",
            "schedulable",
        );
        StepReport::new(StepId::Uncordon, status, vec![change], message)
    }
}

impl Phase for Uncordon {
    const NAME: &'static str = "uncordon";
    type Plan = Vec<Leftover>;

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::with_api(run, |_| true)
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<Vec<Leftover>, RunError> {
        // The run's list: this runs on every apply, converged or not.
        let list = match run.node_list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("{}", error_chain(&e));
                return Ok(vec![]);
            }
        };
        let leftover = |i: usize| {
            let name = &run.nodes[i].node.name;
            let live = list.get(name)?;
            let s = NodeState::of(live);
            let ours = s.unschedulable && s.cordoned_by_pictl;
            (ours && s.ready && s.kubelet_version == run.version).then(|| Leftover {
                node: i,
                name: name.clone(),
                live: Box::new(live.clone()),
            })
        };
        Ok(nodes.iter().filter_map(|&i| leftover(i)).collect())
    }

    async fn show(&self, run: &mut Run<'_>, plan: Vec<Leftover>) -> Result<(), RunError> {
        let progress = run.opts.progress.clone();
        for l in plan {
            run.nodes[l.node].push(progress.as_ref(), l.report(Status::Changed, None));
        }
        Ok(())
    }

    async fn apply(
        &self,
        run: &mut Run<'_>,
        plan: Vec<Leftover>,
        w: &Writer,
    ) -> Result<(), RunError> {
        let Ok(client) = run.api().cloned() else {
            return Ok(());
        };
        let progress = run.opts.progress.clone();
        for l in plan {
            let r = match drain::uncordon(&client, &l.live, w).await {
                Ok(node) => {
                    run.saw(node);
                    l.report(Status::Changed, None)
                }
                Err(e) => l.report(Status::Failed, Some(error_chain(&e))),
            };
            run.nodes[l.node].push(progress.as_ref(), r);
        }
        Ok(())
    }
}
