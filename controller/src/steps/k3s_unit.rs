//! The systemd unit that runs K3s (`k3s.service` or `k3s-agent.service`),
//! 0644 root:root.

use serde::Serialize;

use super::file::{self, MetaFix};
use crate::artifacts::sha256_hex;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};

pub struct K3sUnit;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum K3sUnitPlan {
    /// Write pictl's unit at `path` (absent or modified before).
    Write {
        path: &'static str,
        was_present: bool,
    },
    /// The unit is right; its mode or owner is not.
    Fix(MetaFix),
}

impl Plan for K3sUnitPlan {
    /// Whether the unit systemd runs K3s with changes (reload and restart).
    fn rewrites(&self) -> bool {
        matches!(self, K3sUnitPlan::Write { .. })
    }

    fn changes(&self) -> Vec<Change> {
        match self {
            K3sUnitPlan::Write { path, was_present } => {
                let before = if *was_present { "modified" } else { "absent" };
                vec![Change::new(*path, before, "pictl's unit")]
            }
            K3sUnitPlan::Fix(fix) => fix.changes(),
        }
    }
}

impl Step for K3sUnit {
    const ID: StepId = StepId::K3sUnit;
    type Plan = K3sUnitPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<K3sUnitPlan> {
        let want = sha256_hex(cx.desired.unit.as_bytes());
        let path = cx.desired.unit_path;
        match cx.facts.file_sha(path) {
            Some(sha) if sha == want => match MetaFix::check(cx.facts, path, file::UNIT) {
                Some(fix) => Check::Change(K3sUnitPlan::Fix(fix)),
                None => Check::Converged,
            },
            found => Check::Change(K3sUnitPlan::Write {
                path: cx.desired.unit_path,
                was_present: found.is_some(),
            }),
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &K3sUnitPlan,
    ) -> Result<Applied, StepError> {
        let sudo = cx.node.ssh.sudo;
        match plan {
            K3sUnitPlan::Write { path, .. } => {
                let unit = cx.desired.unit.as_bytes();
                io.transport
                    .put_file(unit, path, file::UNIT.mode, sudo)
                    .await?
            }
            K3sUnitPlan::Fix(fix) => fix.apply(io.transport, sudo).await?,
        }
        Ok(Applied::Done)
    }
}
