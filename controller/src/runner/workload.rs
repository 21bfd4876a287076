//! The last phase of a run: every playbook of the inventory, planned
//! through the API once the first server is up ([`plan`], read-only), then
//! either shown ([`reports`], for `pictl plan`) or written ([`apply`],
//! which needs a [`Writer`]). See [`crate::workload`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::arch::Arch;
use crate::error_chain;
use crate::inventory::{ImageArchCheck, Inventory};
use crate::report::{Event, Progress, Stage, Topic};
use crate::report::{PlaybookReport, Status};
use crate::step::Change;
use crate::workload::{self, ApplyError, PlaybookPlan};
use crate::write::Writer;

/// Every playbook's plan, in inventory order.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadPlan {
    pub playbooks: Vec<PlannedPlaybook>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedPlaybook {
    pub name: String,
    pub plan: Planned,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Planned {
    /// Never applied: the playbook could not be read, an image cannot run
    /// on the nodes, or the API could not plan it (why).
    Refused {
        why: String,
    },
    /// There is no API yet (why): in a plan a fresh cluster, where every
    /// object will be applied once it is up; an apply fails it.
    NoApi {
        objects: usize,
        why: String,
    },
    Ready {
        plan: PlaybookPlan,
    },
}

/// Plans every playbook. Read-only: registry lookups, GETs, LISTs and
/// server-side dry runs. `api`: the run's API client, or why there is
/// none. `arches`: which nodes run which CPU architecture, for the image
/// preflight.
pub async fn plan(
    inv: &Inventory,
    api: Result<&kube::Client, &str>,
    arches: &BTreeMap<Arch, Vec<String>>,
    progress: &dyn Progress,
) -> WorkloadPlan {
    let mut playbooks = Vec::new();
    for dir in &inv.workload.playbooks {
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let plan = plan_one(inv, &name, dir, api, arches, progress).await;
        playbooks.push(PlannedPlaybook { name, plan });
    }
    WorkloadPlan { playbooks }
}

async fn plan_one(
    inv: &Inventory,
    name: &str,
    dir: &std::path::Path,
    api: Result<&kube::Client, &str>,
    arches: &BTreeMap<Arch, Vec<String>>,
    progress: &dyn Progress,
) -> Planned {
    let manifests = match workload::load(dir) {
        Ok(m) => m,
        Err(e) => {
            return Planned::Refused {
                why: error_chain(&e),
            };
        }
    };
    // Before anything else, and even before the cluster is up: an image
    // that cannot run on the nodes is worth knowing at the first plan.
    if let Some(why) = preflight(inv, name, &manifests, arches, progress).await {
        return Planned::Refused { why };
    }
    let client = match api {
        Ok(c) => c,
        Err(why) => {
            return Planned::NoApi {
                objects: manifests.len(),
                why: why.to_string(),
            };
        }
    };
    let planned = with_retries(name, progress, || {
        workload::plan_playbook(client, name, &manifests)
    })
    .await;
    match planned {
        Ok(plan) => Planned::Ready { plan },
        Err(e) => Planned::Refused {
            why: error_chain(&e),
        },
    }
}

/// What `pictl plan` reports: the plan as it stands.
pub fn reports(plan: &WorkloadPlan) -> Vec<PlaybookReport> {
    plan.playbooks
        .iter()
        .map(|p| report(&p.name, &p.plan, Status::Changed))
        .collect()
}

/// `no_api`: the status of a playbook that has no API to go to.
fn report(name: &str, planned: &Planned, no_api: Status) -> PlaybookReport {
    let mut r = PlaybookReport {
        playbook: name.to_string(),
        status: Status::Ok,
        changes: vec![],
        unchanged: 0,
        message: None,
    };
    match planned {
        Planned::Refused { why } => {
            r.status = Status::Failed;
            r.message = Some(why.clone());
        }
        Planned::NoApi { objects, why } => {
            r.status = no_api;
            r.changes.push(Change::new(
                format!("{objects} objects"),
                "not applied",
                "applied once the cluster is up",
            ));
            r.message = Some(why.clone());
        }
        Planned::Ready { plan } => {
            r.unchanged = plan.unchanged();
            r.changes = plan.changes();
            if !plan.is_converged() {
                r.status = Status::Changed;
            }
        }
    }
    r
}

/// Writes every playbook's plan (each only if it was planned), then
/// reports what was written. `wait`: how long Deployments may take to roll
/// out.
pub async fn apply(
    api: Result<&kube::Client, &str>,
    plan: &WorkloadPlan,
    wait: Duration,
    progress: &dyn Progress,
    w: &Writer,
) -> Vec<PlaybookReport> {
    let mut reports = Vec::new();
    for p in &plan.playbooks {
        let mut report = report(&p.name, &p.plan, Status::Failed);
        if let Planned::Ready { plan } = &p.plan {
            let written = match api {
                Ok(client) => with_retries(&p.name, progress, || {
                    workload::apply_plan(client, plan, wait, w)
                })
                .await
                .map_err(|e| error_chain(&e)),
                Err(why) => Err(why.to_string()),
            };
            if let Err(why) = written {
                report.status = Status::Failed;
                report.changes.clear();
                report.message = Some(why);
            }
        }
        announce(&report, progress);
        reports.push(report);
    }
    reports
}

/// One line per object (a playbook can be long), then a summary.
fn announce(report: &PlaybookReport, progress: &dyn Progress) {
    let who = format!("playbook {}", report.playbook);
    for c in &report.changes {
        progress.event(&Event {
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
    progress.event(&Event {
        subject: &who,
        topic: Topic::Workload,
        stage: Stage::Finished(report.status),
        detail: &summary,
    });
}

/// The image-architecture preflight: why the playbook must not be applied,
/// if it must not.
async fn preflight(
    inv: &Inventory,
    name: &str,
    manifests: &[workload::Manifest],
    arches: &BTreeMap<Arch, Vec<String>>,
    progress: &dyn Progress,
) -> Option<String> {
    let mode = inv.workload.image_arch_check;
    if mode == ImageArchCheck::Off || arches.is_empty() {
        return None;
    }
    let findings =
        workload::images::check(&workload::images::Registry::default(), manifests, arches).await;
    let who = format!("playbook {name}");
    for u in &findings.unknown {
        progress.event(&Event {
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

/// Plans and server-side applies are idempotent, so a playbook that met a
/// transient error (connection reset, 5xx, 429) is simply planned or
/// applied again: twice more, after 1 s and 2 s.
async fn with_retries<T, F, Fut>(
    name: &str,
    progress: &dyn Progress,
    mut f: F,
) -> Result<T, ApplyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApplyError>>,
{
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if e.is_transient() && attempt < 3 => {
                progress.event(&Event {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::cluster::fake::FakeApi;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);

    impl Progress for Recorded {
        fn event(&self, e: &Event<'_>) {
            let (node, step, status, detail) =
                (e.subject, e.topic_word(), e.stage_word(), e.detail);
            let line = format!("[{node}] {step}: {status} {detail}");
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    fn one(plan: Planned) -> WorkloadPlan {
        WorkloadPlan {
            playbooks: vec![PlannedPlaybook {
                name: "playson".into(),
                plan,
            }],
        }
    }

    async fn ready(api: &kube::Client) -> WorkloadPlan {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/playson");
        let manifests = workload::load(&dir).expect("playbook");
        let plan = workload::plan_playbook(api, "playson", &manifests)
            .await
            .expect("plan");
        one(Planned::Ready { plan })
    }

    #[tokio::test]
    async fn without_an_api_a_plan_shows_changes_and_an_apply_fails() {
        let plan = one(Planned::NoApi {
            objects: 3,
            why: "the first server is not up".into(),
        });
        let shown = reports(&plan);
        assert_eq!(shown[0].status, Status::Changed);
        assert_eq!(shown[0].changes[0].after, "applied once the cluster is up");
        let w = Writer::for_apply();
        let progress = Recorded::default();
        let applied = apply(Err("no API"), &plan, Duration::ZERO, &progress, &w).await;
        assert_eq!(applied[0].status, Status::Failed);
    }

    #[tokio::test]
    async fn apply_reports_what_it_wrote_and_a_converged_rerun_is_ok() {
        let (api, _fake) = FakeApi::start();
        let w = Writer::for_apply();
        let progress = Recorded::default();
        let plan = ready(&api).await;
        assert_eq!(reports(&plan)[0].status, Status::Changed);
        let first = apply(Ok(&api), &plan, Duration::from_secs(5), &progress, &w).await;
        assert_eq!(first[0].status, Status::Changed, "{:?}", first[0].message);
        assert_eq!(
            first[0].changes[0],
            Change::new("Namespace playson", "absent", "created")
        );
        let again = ready(&api).await;
        let shown = reports(&again);
        assert_eq!((shown[0].status, shown[0].changes.len()), (Status::Ok, 0));
        let second = apply(Ok(&api), &again, Duration::from_secs(5), &progress, &w).await;
        assert_eq!(second[0].status, Status::Ok);
        let lines = progress.0.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            lines
                .iter()
                .any(|l| l.contains("(0 changed, 10 unchanged)")),
            "{lines:#?}"
        );
    }
}
