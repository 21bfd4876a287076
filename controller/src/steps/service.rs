//! What a service step plans for its systemd unit, shared by the K3s and
//! health-agent services: reload, enable, and start or restart, as types.

use serde::Serialize;

use crate::facts::UnitFact;
use crate::step::{Change, StepId};

/// Why a running service must restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartReason {
    /// Earlier steps of this run changed its inputs.
    ChangedByRun(Vec<StepId>),
    /// It runs with older inputs than installed (an interrupted run).
    StartedWithOlder(Vec<&'static str>),
    /// Its binary or unit is replaced in this run.
    Replaced,
}

/// What to do with the service process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceAction {
    Keep,
    /// Not running; `from` is its state (`inactive`, `failed`, …).
    Start {
        from: String,
    },
    Restart(RestartReason),
    /// Set up outside pictl and already running as pictl configures it:
    /// kept running, and recorded as started with pictl's files.
    Adopt,
}

impl ServiceAction {
    /// The `systemctl` verb (`none` when kept).
    pub fn verb(&self) -> &'static str {
        match self {
            ServiceAction::Keep | ServiceAction::Adopt => "none",
            // A unit stuck starting (K3s retrying forever with a token it
            // read at start) or failed needs a new process: `start` would
            // leave the old one waiting.
            ServiceAction::Start { from } if matches!(from.as_str(), "activating" | "failed") => {
                "restart"
            }
            ServiceAction::Start { .. } => "start",
            ServiceAction::Restart(_) => "restart",
        }
    }

    /// `Start` when the unit is not active, else `otherwise`.
    pub fn start_or(unit: &UnitFact, otherwise: ServiceAction) -> ServiceAction {
        if unit.active {
            return otherwise;
        }
        let from = if unit.active_state.is_empty() {
            "not installed".to_string()
        } else {
            unit.active_state.clone()
        };
        ServiceAction::Start { from }
    }
}

/// A unit's plan: reload, enable, start or restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePlan {
    pub unit: &'static str,
    pub daemon_reload: bool,
    pub enable: bool,
    pub action: ServiceAction,
}

impl ServicePlan {
    pub fn is_empty(&self) -> bool {
        !self.daemon_reload && !self.enable && self.action == ServiceAction::Keep
    }

    /// The plan as people read it.
    pub fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        if self.daemon_reload {
            out.push(Change::new(
                "systemd",
                "unit files changed",
                "daemon-reload",
            ));
        }
        if self.enable {
            out.push(Change::new(self.unit, "disabled", "enabled"));
        }
        match &self.action {
            ServiceAction::Keep => {}
            ServiceAction::Adopt => out.push(Change::new(
                self.unit,
                "running (set up outside pictl)",
                "kept running: it already runs as pictl configures it",
            )),
            ServiceAction::Start { from } => {
                out.push(Change::new(self.unit, from.clone(), "active"))
            }
            ServiceAction::Restart(RestartReason::ChangedByRun(steps)) => {
                let names: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
                out.push(Change::new(
                    self.unit,
                    "running",
                    format!("restarted ({} changed)", names.join(", ")),
                ))
            }
            ServiceAction::Restart(RestartReason::StartedWithOlder(files)) => {
                out.push(Change::new(
                    self.unit,
                    format!("running with an older {}", files.join(", ")),
                    "restarted",
                ))
            }
            ServiceAction::Restart(RestartReason::Replaced) => {
                out.push(Change::new(self.unit, "running", "restarted"))
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceAction;

    #[test]
    fn a_unit_stuck_starting_or_failed_is_restarted_a_stopped_one_started() {
        let start = |from: &str| ServiceAction::Start { from: from.into() }.verb();
        assert_eq!(start("inactive"), "start");
        assert_eq!(start("not installed"), "start");
        assert_eq!(start("activating"), "restart");
        assert_eq!(start("failed"), "restart");
    }
}
