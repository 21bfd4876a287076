//! The last phase of a run: every playbook of the inventory, converged
//! through the API once the first server is (see [`crate::workload`]).

use super::Options;
use super::progress::{Event, Stage, Topic};
use super::report::{PlaybookReport, Status};
use crate::error_chain;
use crate::write::Writer;
use std::collections::BTreeMap;

use crate::arch::Arch;
use crate::inventory::{ImageArchCheck, Inventory};
use crate::step::Change;
use crate::workload;

/// `api`: the run's API client, or why there is none. `arches`: which
/// nodes run which CPU architecture, for the image preflight.
pub async fn converge(
    inv: &Inventory,
    api: Result<&kube::Client, &str>,
    arches: &BTreeMap<Arch, Vec<String>>,
    opts: &Options,
    w: Option<&Writer>,
) -> Vec<PlaybookReport> {
    let mut reports = Vec::new();
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
        let manifests = match workload::load(dir) {
            Ok(m) => m,
            Err(e) => {
                report.status = Status::Failed;
                report.message = Some(error_chain(&e));
                reports.push(report);
                continue;
            }
        };
        // Before anything else, and even before the cluster is up: an image
        // that cannot run on the nodes is worth knowing at the first plan.
        if let Some(problem) = preflight(inv, &name, &manifests, arches, opts).await {
            report.status = Status::Failed;
            report.message = Some(problem);
        } else {
            match api {
                Err(why) => {
                    // No API yet: in a plan that is a fresh cluster, in an apply a failure.
                    report.status = if w.is_none() {
                        Status::Changed
                    } else {
                        Status::Failed
                    };
                    report.changes.push(Change::new(
                        format!("{} objects", manifests.len()),
                        "not applied",
                        "applied once the cluster is up",
                    ));
                    report.message = Some(why.to_string());
                }
                Ok(client) => {
                    let dry_run = w.is_none();
                    match apply_with_retries(client, &name, &manifests, dry_run, opts).await {
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
        }
        // One line per object: a playbook can be long.
        let who = format!("playbook {name}");
        for c in &report.changes {
            opts.progress.event(&Event {
                subject: &who,
                topic: Topic::Workload,
                stage: Stage::Object(&c.after),
                detail: &format!("{} ({})", c.what, c.before),
            });
        }
        let summary = match &report.message {
            Some(m) => m.clone(),
            None => format!(
                "({} changed, {} unchanged)",
                report.changes.len(),
                report.unchanged
            ),
        };
        opts.progress.event(&Event {
            subject: &who,
            topic: Topic::Workload,
            stage: Stage::Finished(report.status),
            detail: &summary,
        });
        reports.push(report);
    }
    reports
}

/// The image-architecture preflight: why the playbook must not be applied,
/// if it must not.
async fn preflight(
    inv: &Inventory,
    name: &str,
    manifests: &[workload::Manifest],
    arches: &BTreeMap<Arch, Vec<String>>,
    opts: &Options,
) -> Option<String> {
    let mode = inv.workload.image_arch_check;
    if mode == ImageArchCheck::Off || arches.is_empty() {
        return None;
    }
    let findings =
        workload::images::check(&workload::images::Registry::default(), manifests, arches).await;
    let who = format!("playbook {name}");
    for u in &findings.unknown {
        opts.progress.event(&Event {
            subject: &who,
            topic: Topic::ImageArch,
            stage: Stage::Warning,
            detail: &format!("cannot verify {u}"),
        });
    }
    let mut problems = findings.incompatible;
    if mode == ImageArchCheck::Require {
        problems.extend(
            findings
                .unknown
                .iter()
                .map(|u| format!("cannot verify {u}")),
        );
    }
    (!problems.is_empty()).then(|| format!("image-architecture preflight: {}", problems.join("; ")))
}

/// Server-side apply is idempotent, so a playbook that met a transient
/// error (connection reset, 5xx, 429) is simply applied again: twice more,
/// after 1 s and 2 s.
async fn apply_with_retries(
    client: &kube::Client,
    name: &str,
    manifests: &[workload::Manifest],
    dry_run: bool,
    opts: &Options,
) -> Result<workload::Outcome, workload::ApplyError> {
    let mut delay = std::time::Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match workload::apply_playbook(client, name, manifests, dry_run, opts.wait).await {
            Err(e) if e.is_transient() && attempt < 3 => {
                opts.progress.event(&Event {
                    subject: &format!("playbook {name}"),
                    topic: Topic::Workload,
                    stage: Stage::Retrying,
                    detail: &format!("after {}", error_chain(&e)),
                });
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
