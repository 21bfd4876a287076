//! The systemd unit that runs K3s (`k3s.service` or `k3s-agent.service`).

use serde::Serialize;

use crate::artifacts::sha256_hex;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};

pub struct K3sUnit;

/// Write pictl's unit at `path` (absent or modified before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K3sUnitPlan {
    pub path: &'static str,
    pub was_present: bool,
}

impl Plan for K3sUnitPlan {
    fn changes(&self) -> Vec<Change> {
        let before = if self.was_present {
            "modified"
        } else {
            "absent"
        };
        vec![Change::new(self.path, before, "pictl's unit")]
    }
}

impl Step for K3sUnit {
    const ID: StepId = StepId::K3sUnit;
    type Plan = K3sUnitPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<K3sUnitPlan> {
        let want = sha256_hex(cx.desired.unit.as_bytes());
        match cx.facts.file_sha(cx.desired.unit_path) {
            Some(sha) if sha == want => Check::Converged,
            found => Check::Change(K3sUnitPlan {
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
        io.transport
            .put_file(
                cx.desired.unit.as_bytes(),
                plan.path,
                0o644,
                cx.node.ssh.sudo,
            )
            .await?;
        Ok(Applied::Done)
    }
}
