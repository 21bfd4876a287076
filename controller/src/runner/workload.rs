//! The last phase of a run: every playbook of the inventory, converged
//! through the API once the first server is (see [`crate::workload`]).

use super::report::{PlaybookReport, Status};
use super::{Mode, Options, error_chain};
use crate::inventory::Inventory;
use crate::state;
use crate::step::Change;
use crate::workload;

/// `api_up`: the first server converged and handed over its kubeconfig;
/// `server_state` says how it is otherwise.
pub async fn converge(
    inv: &Inventory,
    api_up: bool,
    server_state: &str,
    opts: &Options,
) -> Vec<PlaybookReport> {
    let mut reports = Vec::new();
    if inv.workload.playbooks.is_empty() {
        return reports;
    }
    let client = if api_up {
        super::kube_client(&state::kubeconfig_path(inv))
            .await
            .map_err(Some)
    } else {
        Err(None)
    };
    for dir in &inv.workload.playbooks {
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut report = PlaybookReport {
            playbook: name.clone(),
            status: Status::Ok,
            changes: vec![],
            unchanged: 0,
            message: None,
        };
        match (workload::load(dir), &client) {
            (Err(e), _) => {
                report.status = Status::Failed;
                report.message = Some(error_chain(&e));
            }
            (Ok(manifests), Err(why)) => {
                // No API yet: in a plan that is a fresh cluster, in an apply a failure.
                report.status = if opts.mode == Mode::Plan {
                    Status::Changed
                } else {
                    Status::Failed
                };
                report.changes.push(Change::new(
                    format!("{} objects", manifests.len()),
                    "not applied",
                    "applied once the cluster is up",
                ));
                report.message = Some(match why {
                    Some(e) => format!("cannot reach the API: {e}"),
                    None => format!("no API: {server_state}"),
                });
            }
            (Ok(manifests), Ok(client)) => {
                match workload::apply_playbook(
                    client,
                    &name,
                    &manifests,
                    opts.mode == Mode::Plan,
                    opts.wait,
                )
                .await
                {
                    Ok(outcome) => {
                        report.unchanged = outcome.unchanged;
                        report.status = if outcome.changes.is_empty() {
                            Status::Ok
                        } else {
                            Status::Changed
                        };
                        report.changes = outcome.changes;
                    }
                    Err(e) => {
                        report.status = Status::Failed;
                        report.message = Some(error_chain(&e));
                    }
                }
            }
        }
        let detail = super::StepReport::new(
            "workload",
            report.status,
            report.changes.clone(),
            report.message.clone(),
        );
        opts.progress.event(
            &format!("playbook {name}"),
            "workload",
            report.status.word(),
            &detail.describe(),
        );
        reports.push(report);
    }
    reports
}
