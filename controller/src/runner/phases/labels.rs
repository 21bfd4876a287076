//! Labels and taints on the registered Nodes (see [`crate::runner::node_meta`]):
//! after readiness in an apply, and in a plan whenever the API answers.

use k8s_openapi::api::core::v1::Node as KNode;
use serde_json::json;

use super::{Phase, Selected};
use crate::cluster::nodes;
use crate::error_chain;
use crate::report::{Status, StepReport};
use crate::runner::error::RunError;
use crate::runner::node_meta::{self, NodeMetaPlan};
use crate::runner::run::Run;
use crate::step::StepId;
use crate::write::Writer;

pub struct NodeLabels;

/// What one registered Node's labels and taints need.
pub enum Labels {
    Converged,
    Change {
        live: Box<KNode>,
        plan: NodeMetaPlan,
    },
    Unknown(String),
}

impl Labels {
    fn report(&self, failed: Option<String>) -> StepReport {
        let (status, changes) = match self {
            Labels::Converged => (Status::Ok, vec![]),
            Labels::Change { live, plan } => (Status::Changed, plan.changes(live)),
            Labels::Unknown(why) => {
                return StepReport::new(
                    StepId::NodeLabels,
                    Status::Failed,
                    vec![],
                    Some(why.clone()),
                );
            }
        };
        let status = if failed.is_some() {
            Status::Failed
        } else {
            status
        };
        StepReport::new(StepId::NodeLabels, status, changes, failed)
    }
}

impl Phase for NodeLabels {
    const NAME: &'static str = "node-labels";
    type Plan = Vec<(usize, Labels)>;

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::with_api(run, |_| true)
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<Self::Plan, RunError> {
        let live = run.node_list().await.map_err(|e| error_chain(&e));
        // A node not registered yet (a plan of a new node) gets its labels
        // and taints from the next run, once K3s has registered it.
        let labels = |i: usize| {
            let node = run.nodes[i].node;
            let all = match &live {
                Ok(all) => all,
                Err(why) => return Some((i, Labels::Unknown(why.clone()))),
            };
            let live = all.get(&node.name)?;
            let found = match node_meta::plan(live, node) {
                None => Labels::Converged,
                Some(plan) => Labels::Change {
                    live: Box::new(live.clone()),
                    plan,
                },
            };
            Some((i, found))
        };
        Ok(nodes.iter().filter_map(|&i| labels(i)).collect())
    }

    async fn show(&self, run: &mut Run<'_>, plan: Self::Plan) -> Result<(), RunError> {
        let progress = run.opts.progress.clone();
        for (i, labels) in plan {
            run.nodes[i].push(progress.as_ref(), labels.report(None));
        }
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: Self::Plan, w: &Writer) -> Result<(), RunError> {
        let Ok(client) = run.api().cloned() else {
            return Ok(());
        };
        let progress = run.opts.progress.clone();
        for (i, labels) in plan {
            let failed = match &labels {
                Labels::Change { live, .. } => {
                    let node = run.nodes[i].node;
                    // Against a Node changed meanwhile, planned again.
                    let patch =
                        |n: &KNode| node_meta::plan(n, node).map_or(json!({}), |p| p.patch());
                    match nodes::patch(&client, live, "labelling", patch, w).await {
                        Ok(written) => {
                            run.saw(written);
                            None
                        }
                        Err(e) => Some(error_chain(&e)),
                    }
                }
                _ => None,
            };
            run.nodes[i].push(progress.as_ref(), labels.report(failed));
        }
        Ok(())
    }
}
