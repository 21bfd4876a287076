//! Labels and taints on the registered Nodes (see [`crate::runner::node_meta`]):
//! after readiness in an apply, and in a plan whenever the API answers.

use k8s_openapi::api::core::v1::Node as KNode;
use kube::api::{Patch, PatchParams};

use super::{Selected, Symmetric};
use crate::error_chain;
use crate::runner::error::RunError;
use crate::runner::node_meta::{self, NodeMetaPlan};
use crate::runner::report::{Status, StepReport};
use crate::runner::run::Run;
use crate::step::StepId;
use crate::write::Writer;

pub struct NodeLabels;

impl NodeLabels {
    async fn run(run: &mut Run<'_>, nodes: &[usize], w: Option<&Writer>) {
        let Ok(client) = run.api().cloned() else {
            return;
        };
        let api: kube::Api<KNode> = kube::Api::all(client.clone());
        let progress = run.opts.progress.clone();
        let live = crate::runner::api::list_nodes(&client).await;
        for &i in nodes {
            let node = run.nodes[i].node;
            // A node not registered yet (a plan of a new node) gets its labels
            // and taints from the next run, once K3s has registered it.
            let planned = live.as_ref().map(|all| {
                let live = all.get(&node.name)?;
                node_meta::plan(live, node).map(|p| (live.clone(), p))
            });
            let report = match planned {
                Ok(None) => StepReport::new(StepId::NodeLabels, Status::Ok, vec![], None),
                Ok(Some((live, plan))) => {
                    let changes = plan.changes(&live);
                    let failed = match w {
                        Some(_) => write(&api, &run.nodes[i].node.name, &plan, &live)
                            .await
                            .err(),
                        None => None,
                    };
                    let status = if failed.is_some() {
                        Status::Failed
                    } else {
                        Status::Changed
                    };
                    StepReport::new(StepId::NodeLabels, status, changes, failed)
                }
                Err(why) => StepReport::new(
                    StepId::NodeLabels,
                    Status::Failed,
                    vec![],
                    Some(why.clone()),
                ),
            };
            run.nodes[i].push(progress.as_ref(), report);
        }
    }
}

/// The one write of this phase: a merge patch guarded by resourceVersion.
async fn write(
    api: &kube::Api<KNode>,
    name: &str,
    plan: &NodeMetaPlan,
    live: &KNode,
) -> Result<(), String> {
    let patch = plan.patch(live);
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("patching Node {name}: {}", error_chain(&e)))
}

impl Symmetric for NodeLabels {
    const NAME: &'static str = "node-labels";

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::with_api(run, |_| true)
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
