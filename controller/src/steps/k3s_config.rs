//! K3s's /etc/rancher/k3s/config.yaml (mode 0600: it holds the token).

use crate::artifacts::{ArtifactStore, sha256_hex};
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Step, StepError};
use crate::transport::{BoxFuture, Transport};

pub struct K3sConfig;

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

impl Step for K3sConfig {
    fn name(&self) -> &'static str {
        "k3s-config"
    }

    fn check(&self, cx: &NodeCx<'_>) -> Check {
        let installed = cx.facts.file_sha(paths::CONFIG);
        let before = installed.map_or_else(
            || "absent".to_string(),
            |sha| format!("sha256 {}", short(sha)),
        );
        let Some(cfg) = &cx.desired.config else {
            // Only in `plan`: the runner refuses to apply without a token.
            return Check::Changes(vec![Change::new(
                paths::CONFIG,
                before,
                cx.desired.config_pending,
            )]);
        };
        let want = sha256_hex(cfg.expose().as_bytes());
        if installed == Some(want.as_str()) {
            Check::Changes(Vec::new())
        } else {
            Check::Changes(vec![Change::new(
                paths::CONFIG,
                before,
                format!("sha256 {}", short(&want)),
            )])
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
            if let Some(cfg) = &cx.desired.config {
                t.put_file(
                    cfg.expose().as_bytes(),
                    paths::CONFIG,
                    0o600,
                    cx.node.ssh.sudo,
                )
                .await?;
            }
            Ok(Applied::Done)
        })
    }
}
