//! The systemd unit that runs K3s (`k3s.service` or `k3s-agent.service`).

use crate::artifacts::{ArtifactStore, sha256_hex};
use crate::step::{Applied, Change, Check, NodeCx, Step, StepError};
use crate::transport::{BoxFuture, Transport};

pub struct K3sUnit;

impl Step for K3sUnit {
    fn name(&self) -> &'static str {
        "k3s-unit"
    }

    fn check(&self, cx: &NodeCx<'_>) -> Check {
        let want = sha256_hex(cx.desired.unit.as_bytes());
        match cx.facts.file_sha(cx.desired.unit_path) {
            Some(sha) if sha == want => Check::Changes(Vec::new()),
            Some(_) => Check::Changes(vec![Change::new(
                cx.desired.unit_path,
                "modified",
                "pictl's unit",
            )]),
            None => Check::Changes(vec![Change::new(
                cx.desired.unit_path,
                "absent",
                "pictl's unit",
            )]),
        }
    }

    fn apply<'a>(
        &'a self,
        cx: &'a NodeCx<'a>,
        t: &'a dyn Transport,
        _store: &'a ArtifactStore,
        _changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Applied, StepError>> {
        Box::pin(async move {
            t.put_file(
                cx.desired.unit.as_bytes(),
                cx.desired.unit_path,
                0o644,
                cx.node.ssh.sudo,
            )
            .await?;
            Ok(Applied::Done)
        })
    }
}
