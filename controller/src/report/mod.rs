//! What a run reports: per node and step `ok / changed / skipped / failed`,
//! plus `unreachable`, like Ansible's play recap. Plain data, serialized
//! as-is by `--output json`.

use serde::Serialize;

mod progress;
mod step_id;

pub use progress::{Event, Progress, Stage, StderrProgress, Topic, WarningsOnly};
pub use step_id::{Change, StepId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Changed,
    Skipped,
    Failed,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipped",
            Status::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: StepId,
    pub status: Status,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepReport {
    pub fn new(
        step: StepId,
        status: Status,
        changes: Vec<Change>,
        message: Option<String>,
    ) -> Self {
        Self {
            step,
            status,
            changes,
            message,
        }
    }

    /// `(what: before → after; …)` for progress lines.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.changes.iter().map(Change::to_string).collect();
        if let Some(m) = &self.message {
            parts.push(m.clone());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("({})", parts.join("; "))
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub role: &'static str,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub steps: Vec<StepReport>,
    pub ssh_round_trips: u64,
    pub seconds: f64,
}

impl NodeReport {
    pub fn count(&self, s: Status) -> usize {
        self.steps.iter().filter(|r| r.status == s).count()
    }
}

/// One playbook (manifest directory) converged through the API.
#[derive(Debug, Clone, Serialize)]
pub struct PlaybookReport {
    pub playbook: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Objects already as the playbook says.
    pub unchanged: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub cluster: String,
    pub mode: Mode,
    pub k3s_version: String,
    pub nodes: Vec<NodeReport>,
    pub workload: Vec<PlaybookReport>,
    pub seconds: f64,
}

impl RunReport {
    pub fn changed(&self) -> bool {
        self.nodes.iter().any(|n| n.count(Status::Changed) > 0)
            || self.workload.iter().any(|p| p.status == Status::Changed)
    }

    pub fn failed(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.failed.is_some() || n.unreachable.is_some() || n.count(Status::Failed) > 0)
            || self.workload.iter().any(|p| p.status == Status::Failed)
    }

    /// Every node in trouble was unreachable: none failed a step.
    pub fn only_unreachable(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.failed.is_none() && n.count(Status::Failed) == 0)
            && self.workload.iter().all(|p| p.status != Status::Failed)
    }
}

/// Whether a run only checks or also changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Check only: nothing changes, on the nodes or on the controller.
    Plan,
    Apply,
}
