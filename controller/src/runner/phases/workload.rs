//! The last phase: every playbook of the inventory, converged through the
//! API once the first server is (see [`crate::runner::workload`]).

use super::{Phase, Selected};
use crate::runner::error::RunError;
use crate::runner::run::Run;
use crate::runner::workload;
use crate::write::Writer;

pub struct Workload;

impl Phase for Workload {
    const NAME: &'static str = "workload";
    type Plan = workload::WorkloadPlan;

    fn select(&self, run: &Run<'_>) -> Selected {
        if run.inv.workload.playbooks.is_empty() {
            Selected::Nothing("no playbooks")
        } else if run.limit.is_some() {
            Selected::Nothing("--nodes: the workload is the whole cluster's")
        } else {
            Selected::Cluster
        }
    }

    /// Every playbook's plan (read-only: server-side dry runs).
    async fn plan(&self, run: &Run<'_>, _nodes: &[usize]) -> Result<Self::Plan, RunError> {
        let api = run.api().map_err(|e| crate::error_chain(&e));
        let api = api.as_ref().map(|c| *c).map_err(String::as_str);
        Ok(workload::plan(run.inv, api, &run.arches, run.opts.progress.as_ref()).await)
    }

    async fn show(&self, run: &mut Run<'_>, plan: Self::Plan) -> Result<(), RunError> {
        run.workload = workload::reports(&plan);
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: Self::Plan, w: &Writer) -> Result<(), RunError> {
        let api = run.api().map_err(|e| crate::error_chain(&e));
        let api = api.as_ref().map(|c| *c).map_err(String::as_str);
        let progress = run.opts.progress.as_ref();
        run.workload = workload::apply(api, &plan, run.opts.wait, progress, w).await;
        Ok(())
    }
}
