//! Finishes what an interrupted upgrade left: a node pictl cordoned (its
//! record in [`crate::cluster::cordons`], where no node can write) that is
//! Ready on the run's release is uncordoned. A node someone else cordoned
//! has no such record and is never touched, whatever its annotations say.

use super::{Phase, Selected};
use crate::cluster::{cordons, drain};
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
        let Ok(client) = run.api() else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for &i in nodes {
            let name = &run.nodes[i].node.name;
            let Some(live) = list.get(name) else { continue };
            // The record is read only for a cordoned Node.
            let s = match cordons::state(client, live).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{}", error_chain(&e));
                    continue;
                }
            };
            let ours = s.unschedulable && s.cordoned_by_pictl;
            if ours && s.ready && s.kubelet_version == run.version {
                out.push(Leftover {
                    node: i,
                    name: name.clone(),
                    live: Box::new(live.clone()),
                });
            }
        }
        Ok(out)
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
