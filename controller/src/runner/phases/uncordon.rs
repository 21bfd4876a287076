//! Finishes what an interrupted upgrade left: a node pictl cordoned (its
//! `pictl.dev/cordoned` annotation) that is Ready on the run's release is
//! uncordoned. A node someone else cordoned carries no such annotation and
//! is never touched.

use super::{Selected, Symmetric};
use crate::error_chain;
use crate::runner::drain;
use crate::runner::error::RunError;
use crate::runner::report::{Status, StepReport};
use crate::runner::run::Run;
use crate::step::{Change, StepId};
use crate::write::Writer;

pub struct Uncordon;

impl Symmetric for Uncordon {
    const NAME: &'static str = "uncordon";

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::with_api(run, |_| true)
    }

    async fn work(
        &self,
        run: &mut Run<'_>,
        nodes: &[usize],
        w: Option<&Writer>,
    ) -> Result<(), RunError> {
        let Ok(client) = run.api().cloned() else {
            return Ok(());
        };
        let progress = run.opts.progress.clone();
        // One list for all: this runs on every apply, converged or not.
        let states = match drain::nodes(&client).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("listing the Nodes: {}", error_chain(&e));
                return Ok(());
            }
        };
        for &i in nodes {
            let name = run.nodes[i].node.name.clone();
            let Some(state) = states.get(&name) else {
                continue;
            };
            let leftover = state.unschedulable && state.cordoned_by_pictl;
            if !leftover || !state.ready || state.kubelet_version != run.version {
                continue;
            }
            let change = Change::new(
                format!("node {name}"),
                "cordoned by an interrupted upgrade",
                "schedulable",
            );
            let (status, message) = match w {
                None => (Status::Changed, None),
                Some(w) => match drain::uncordon(&client, &name, w).await {
                    Ok(()) => (Status::Changed, None),
                    Err(e) => (
                        Status::Failed,
                        Some(format!("uncordoning {name}: {}", error_chain(&e))),
                    ),
                },
            };
            let r = StepReport::new(StepId::Uncordon, status, vec![change], message);
            run.nodes[i].push(progress.as_ref(), r);
        }
        Ok(())
    }
}
