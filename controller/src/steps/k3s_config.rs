//! K3s's /etc/rancher/k3s/config.yaml (mode 0600: it holds the token).

use serde::Serialize;

use crate::artifacts::sha256_hex;
use crate::facts::paths;
use crate::step::{
    Applied, Change, Check, DesiredConfig, NodeCx, Plan, Step, StepError, StepId, StepIo,
};

pub struct K3sConfig;

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Write the desired config over what is there. Hashes only: the file
/// holds the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K3sConfigPlan {
    /// Short sha256 of the installed config, `None` when absent.
    pub before: Option<String>,
    /// Short sha256 of the desired config, or what it will be once known.
    pub after: String,
}

impl Plan for K3sConfigPlan {
    fn changes(&self) -> Vec<Change> {
        let before = self
            .before
            .as_ref()
            .map_or_else(|| "absent".to_string(), |s| format!("sha256 {s}"));
        vec![Change::new(paths::CONFIG, before, self.after.clone())]
    }
}

impl Step for K3sConfig {
    const ID: StepId = StepId::K3sConfig;
    type Plan = K3sConfigPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<K3sConfigPlan> {
        let installed = cx.facts.file_sha(paths::CONFIG);
        let before = installed.map(|sha| short(sha).to_string());
        let cfg = match &cx.desired.config {
            DesiredConfig::Known(cfg) => cfg,
            DesiredConfig::Pending(what) => {
                return Check::Change(K3sConfigPlan {
                    before,
                    after: (*what).to_string(),
                });
            }
        };
        let want = sha256_hex(cfg.expose().as_bytes());
        if installed == Some(want.as_str()) {
            Check::Converged
        } else {
            Check::Change(K3sConfigPlan {
                before,
                after: format!("sha256 {}", short(&want)),
            })
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        _plan: &K3sConfigPlan,
    ) -> Result<Applied, StepError> {
        let DesiredConfig::Known(cfg) = &cx.desired.config else {
            return Err(StepError::NotReady(
                "the config is not known yet (no join token)".into(),
            ));
        };
        io.transport
            .put_file(
                cfg.expose().as_bytes(),
                paths::CONFIG,
                0o600,
                cx.node.ssh.sudo,
            )
            .await?;
        Ok(Applied::Done)
    }
}
