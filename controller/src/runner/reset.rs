//! What a reset leaves to forget besides the nodes: the Node objects of a
//! subset that was reset (the rest of the cluster lives on), or the
//! cluster's kubeconfig in the state directory when the whole cluster went.

use super::run::Run;
use crate::cluster::{agent_access, nodes};
use crate::error_chain;
use crate::report::{Status, StepReport};
use crate::secret::Secret;
use crate::state;
use crate::step::StepId;
use crate::write::Writer;

/// After the nodes of `run` were reset: a `subset` deletes their Nodes.
pub async fn forget(run: &mut Run<'_>, subset: bool, w: &Writer) {
    let path = state::kubeconfig_path(run.inv);
    if !subset {
        // The cluster is gone: its admin kubeconfig would point nowhere.
        let _ = std::fs::remove_file(&path);
        return;
    }
    let client = admin_client(run).await;
    let progress = run.opts.progress.clone();
    for r in run.nodes.iter_mut().filter(|r| r.alive()) {
        let name = r.node.name.clone();
        let report = match &client {
            Err(e) => StepReport::new(
                StepId::NodeDeleted,
                Status::Failed,
                vec![],
                Some(format!("cannot delete Node {name}: {e}")),
            ),
            Ok(client) => {
                let mut report = delete(client, &name, w).await;
                forget_agent(client, &name, &mut report, w).await;
                report
            }
        };
        r.push(progress.as_ref(), report);
    }
}

/// The cluster's API client, from the admin kubeconfig in the state
/// directory, or why there is none.
pub async fn admin_client(run: &Run<'_>) -> Result<kube::Client, String> {
    let path = state::kubeconfig_path(run.inv);
    match std::fs::read_to_string(&path) {
        Ok(text) => run
            .opts
            .api
            .client(&Secret::new(text))
            .await
            .map_err(|e| error_chain(&e)),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// The node's health-agent ServiceAccount, token and role go with its Node.
async fn forget_agent(client: &kube::Client, name: &str, report: &mut StepReport, w: &Writer) {
    match agent_access::remove(client, name, w).await {
        Ok(changes) if !changes.is_empty() => {
            report.changes.extend(changes);
            if report.status == Status::Ok {
                report.status = Status::Changed;
            }
        }
        Ok(_) => {}
        Err(why) => {
            report.status = Status::Failed;
            report.message = Some(error_chain(&why));
        }
    }
}

async fn delete(client: &kube::Client, name: &str, w: &Writer) -> StepReport {
    match nodes::delete(client, name, w).await {
        Ok(true) => StepReport::new(
            StepId::NodeDeleted,
            Status::Changed,
            vec![crate::step::Change::new(
                format!("Node {name}"),
                "registered",
                "deleted",
            )],
            None,
        ),
        Ok(false) => StepReport::new(StepId::NodeDeleted, Status::Ok, vec![], None),
        Err(e) => StepReport::new(
            StepId::NodeDeleted,
            Status::Failed,
            vec![],
            Some(error_chain(&e)),
        ),
    }
}
