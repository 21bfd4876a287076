//! The k3s binary: the release's verified artifact for the node's arch at
//! /usr/local/bin/k3s, compared by sha256 (not by version string).

use crate::artifacts::ArtifactStore;
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Step, StepError};
use crate::transport::{BoxFuture, Transport};

pub struct K3sBinary;

impl Step for K3sBinary {
    fn name(&self) -> &'static str {
        "k3s-binary"
    }

    fn check(&self, cx: &NodeCx<'_>) -> Check {
        let installed = cx.facts.file_sha(paths::K3S_BIN);
        if installed == Some(cx.desired.binary_sha256.as_str()) {
            return Check::Changes(Vec::new());
        }
        let before = match (installed, &cx.facts.k3s_version) {
            (None, _) => "absent".to_string(),
            (Some(_), Some(v)) if *v == cx.desired.version => format!("{v} (modified binary)"),
            (Some(_), Some(v)) => v.clone(),
            (Some(_), None) => "unknown binary".to_string(),
        };
        Check::Changes(vec![Change::new(
            paths::K3S_BIN,
            before,
            cx.desired.version.clone(),
        )])
    }

    fn apply<'a>(
        &'a self,
        cx: &'a NodeCx<'a>,
        t: &'a dyn Transport,
        store: &'a ArtifactStore,
        _changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Applied, StepError>> {
        Box::pin(async move {
            // `cross_node_checks` has failed nodes whose arch K3s does not ship.
            let Ok(arch) = cx.facts.arch.clone() else {
                return Ok(Applied::Done);
            };
            // Verified against the release checksum before a byte is sent.
            let artifact = store.binary(arch).await?;
            t.put_file(&artifact.bytes, paths::K3S_BIN, 0o755, cx.node.ssh.sudo)
                .await?;
            Ok(Applied::Done)
        })
    }
}
