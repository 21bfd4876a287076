//! Readiness: every converged node must turn Ready in the API within
//! `--wait` (apply); without an API each is reported failed, with why. Its
//! Node LIST is the run's: the phases after it read that list (a plan lists
//! once here too, and waits for nothing).

use std::time::{Duration, Instant};

use super::{Phase, Selected};
use crate::cluster::{ClusterError, NodeList, nodes};
use crate::error_chain;
use crate::report::{Status, StepReport};
use crate::runner::error::RunError;
use crate::runner::node::NodeRun;
use crate::runner::options::Options;
use crate::runner::run::Run;
use crate::step::StepId;
use crate::write::Writer;

pub struct Readiness;

/// The nodes to wait for, and the first LIST (or why there is none).
pub struct Listed {
    nodes: Vec<usize>,
    list: Result<NodeList, ClusterError>,
}

impl Phase for Readiness {
    const NAME: &'static str = "readiness";
    type Plan = Listed;

    fn select(&self, run: &Run<'_>) -> Selected {
        if run.admin.is_none() {
            return Selected::Nothing("no admin kubeconfig");
        }
        Selected::Nodes(run.alive(None))
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<Listed, RunError> {
        let list = match run.api() {
            Ok(client) => NodeList::read(client).await,
            Err(why) => Err(why),
        };
        Ok(Listed {
            nodes: nodes.to_vec(),
            list,
        })
    }

    /// A plan waits for nothing: readiness is observed after converging.
    async fn show(&self, run: &mut Run<'_>, listed: Listed) -> Result<(), RunError> {
        run.seen = listed.list.ok();
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, listed: Listed, _w: &Writer) -> Result<(), RunError> {
        let client = match run.api() {
            Ok(c) => c.clone(),
            Err(why) => {
                let progress = run.opts.progress.clone();
                let why = error_chain(&why);
                for &i in &listed.nodes {
                    let r = StepReport::new(
                        StepId::NodeReady,
                        Status::Failed,
                        vec![],
                        Some(why.clone()),
                    );
                    run.nodes[i].push(progress.as_ref(), r);
                }
                return Ok(());
            }
        };
        run.seen = readiness(&client, listed.list, &mut run.nodes, run.opts).await;
        Ok(())
    }
}

/// Whether an alive node is not Ready in `list` yet.
fn waiting(runs: &[NodeRun<'_>], list: &Result<NodeList, ClusterError>) -> bool {
    let ready = |name: &str| {
        let list = list.as_ref().ok();
        list.and_then(|l| l.get(name)).is_some_and(nodes::ready)
    };
    runs.iter()
        .filter(|r| r.alive())
        .any(|r| !ready(&r.node.name))
}

/// Waits for every converged node to be Ready in the API, listing the Nodes
/// again while one is not; the last list.
async fn readiness(
    client: &kube::Client,
    first: Result<NodeList, ClusterError>,
    runs: &mut [NodeRun<'_>],
    opts: &Options,
) -> Option<NodeList> {
    let deadline = Instant::now() + opts.wait;
    let mut list = first;
    let mut last: Option<NodeList> = None;
    while waiting(runs, &list) && Instant::now() <= deadline {
        if let Ok(l) = list {
            last = Some(l);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        list = NodeList::read(client).await;
    }
    let last_err = list.as_ref().err().map(|e| error_chain(e));
    let list = list.ok().or(last);
    for r in runs.iter_mut().filter(|r| r.alive()) {
        let node = list.as_ref().and_then(|l| l.get(&r.node.name));
        let ok = node.is_some_and(nodes::ready);
        let message = (!ok).then(|| match &last_err {
            None => format!(
                "node {} not Ready in the API after {} s",
                r.node.name,
                opts.wait.as_secs()
            ),
            Some(e) => format!("node {} not Ready ({e})", r.node.name),
        });
        let status = if ok { Status::Ok } else { Status::Failed };
        let report = StepReport::new(StepId::NodeReady, status, vec![], message);
        r.push(opts.progress.as_ref(), report);
    }
    list
}
