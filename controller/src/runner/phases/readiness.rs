//! Readiness (apply only): every converged node must turn Ready in the
//! API within `--wait`; without an API each is reported failed, with why.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Phase, Selected};
use crate::error_chain;
use crate::runner::error::RunError;
use crate::runner::node::NodeRun;
use crate::runner::options::Options;
use crate::runner::report::{Status, StepReport};
use crate::runner::run::Run;
use crate::step::StepId;
use crate::write::Writer;

pub struct Readiness;

impl Phase for Readiness {
    const NAME: &'static str = "readiness";
    /// Nothing to plan: readiness is observed after converging.
    type Plan = Vec<usize>;

    fn select(&self, run: &Run<'_>) -> Selected {
        if run.admin.is_none() {
            return Selected::Nothing("no admin kubeconfig");
        }
        Selected::Nodes(run.alive(None))
    }

    async fn plan(&self, _run: &Run<'_>, nodes: &[usize]) -> Result<Vec<usize>, RunError> {
        Ok(nodes.to_vec())
    }

    async fn show(&self, _run: &mut Run<'_>, _nodes: Vec<usize>) -> Result<(), RunError> {
        Ok(())
    }

    async fn apply(
        &self,
        run: &mut Run<'_>,
        nodes: Vec<usize>,
        _w: &Writer,
    ) -> Result<(), RunError> {
        match run.api() {
            Ok(client) => {
                let client = client.clone();
                readiness(&client, &mut run.nodes, run.opts).await;
            }
            Err(why) => {
                let progress = run.opts.progress.clone();
                for &i in &nodes {
                    let r = StepReport::new(
                        StepId::NodeReady,
                        Status::Failed,
                        vec![],
                        Some(why.clone()),
                    );
                    run.nodes[i].push(progress.as_ref(), r);
                }
            }
        }
        Ok(())
    }
}

/// Waits for every converged node to be Ready in the API.
async fn readiness(client: &kube::Client, runs: &mut [NodeRun<'_>], opts: &Options) {
    use k8s_openapi::api::core::v1::Node as KNode;
    let client = client.clone();
    let api: kube::Api<KNode> = kube::Api::all(client);
    let deadline = Instant::now() + opts.wait;
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    let mut last_err = String::new();
    loop {
        match api.list(&Default::default()).await {
            Ok(list) => {
                ready = list
                    .items
                    .iter()
                    .map(|n| {
                        let ok = n
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        (n.metadata.name.clone().unwrap_or_default(), ok)
                    })
                    .collect();
            }
            Err(e) => last_err = error_chain(&e),
        }
        let waiting = runs
            .iter()
            .filter(|r| r.alive())
            .any(|r| !ready.get(&r.node.name).copied().unwrap_or(false));
        if !waiting || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in runs.iter_mut().filter(|r| r.alive()) {
        let ok = ready.get(&r.node.name).copied().unwrap_or(false);
        let report = StepReport {
            step: StepId::NodeReady,
            status: if ok { Status::Ok } else { Status::Failed },
            changes: vec![],
            message: (!ok).then(|| {
                if last_err.is_empty() {
                    format!(
                        "node {} not Ready in the API after {} s",
                        r.node.name,
                        opts.wait.as_secs()
                    )
                } else {
                    format!("node {} not Ready ({last_err})", r.node.name)
                }
            }),
        };
        r.push(opts.progress.as_ref(), report);
    }
}
