//! The k3s binary: the release's verified artifact for the node's arch at
//! /usr/local/bin/k3s, compared by sha256 (not by version string).

use serde::Serialize;

use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};

pub struct K3sBinary;

/// Install `version`'s binary over what is there (`before`, for people).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K3sBinaryPlan {
    pub before: String,
    pub version: String,
}

impl Plan for K3sBinaryPlan {
    fn changes(&self) -> Vec<Change> {
        vec![Change::new(
            paths::K3S_BIN,
            self.before.clone(),
            self.version.clone(),
        )]
    }
}

impl Step for K3sBinary {
    const ID: StepId = StepId::K3sBinary;
    type Plan = K3sBinaryPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<K3sBinaryPlan> {
        let installed = cx.facts.file_sha(paths::K3S_BIN);
        if installed == Some(cx.desired.binary_sha256.as_str()) {
            return Check::Converged;
        }
        let before = match (installed, &cx.facts.k3s_version) {
            (None, _) => "absent".to_string(),
            (Some(_), Some(v)) if *v == cx.desired.version => format!("{v} (modified binary)"),
            (Some(_), Some(v)) => v.clone(),
            (Some(_), None) => "unknown binary".to_string(),
        };
        Check::Change(K3sBinaryPlan {
            before,
            version: cx.desired.version.clone(),
        })
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        _plan: &K3sBinaryPlan,
    ) -> Result<Applied, StepError> {
        // The facts phase has failed nodes whose arch K3s does not ship.
        let Ok(arch) = cx.facts.arch.clone() else {
            return Ok(Applied::Done);
        };
        // Verified against the release checksum before a byte is sent.
        let artifact = io.store.binary(arch).await?;
        io.transport
            .put_file(&artifact.bytes, paths::K3S_BIN, 0o755, cx.node.ssh.sudo)
            .await?;
        Ok(Applied::Done)
    }
}
