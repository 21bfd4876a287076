//! K3s's /etc/rancher/k3s/config.yaml, 0600 root:root: it holds the token.
//!
//! Its plan never shows a hash of the file: a hash of a file holding the
//! token lets anyone who sees the plan confirm a guessed token offline.
//! `pictl plan --diff` shows the lines instead, with the token redacted.

use serde::Serialize;

use super::file::{self, MetaFix};
use crate::artifacts::sha256_hex;
use crate::facts::paths;
use crate::step::{
    Applied, Change, Check, DesiredConfig, NodeCx, Plan, Step, StepError, StepId, StepIo,
};

pub struct K3sConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum K3sConfigPlan {
    /// Write pictl's config over what is there.
    Write {
        /// `absent`, `modified`, or `present` (when the config to compare
        /// with is not known yet).
        before: &'static str,
        /// `None`: pictl's config; else what it will be once known.
        pending: Option<&'static str>,
    },
    /// The config is right; its mode or owner is not.
    Fix(MetaFix),
}

impl Plan for K3sConfigPlan {
    /// Whether the config K3s reads at start changes (a restart is due).
    fn rewrites(&self) -> bool {
        matches!(self, K3sConfigPlan::Write { .. })
    }

    fn changes(&self) -> Vec<Change> {
        match self {
            K3sConfigPlan::Write { before, pending } => vec![Change::new(
                paths::CONFIG,
                *before,
                pending.unwrap_or("pictl's config"),
            )],
            K3sConfigPlan::Fix(fix) => fix.changes(),
        }
    }
}

impl Step for K3sConfig {
    const ID: StepId = StepId::K3sConfig;
    type Plan = K3sConfigPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<K3sConfigPlan> {
        let installed = cx.facts.file_sha(paths::CONFIG);
        let cfg = match &cx.desired.config {
            DesiredConfig::Known(cfg) => cfg,
            DesiredConfig::Pending(what) => {
                return Check::Change(K3sConfigPlan::Write {
                    before: if installed.is_some() {
                        "present"
                    } else {
                        "absent"
                    },
                    pending: Some(what),
                });
            }
        };
        let want = sha256_hex(cfg.expose().as_bytes());
        match installed {
            Some(sha) if sha == want => match MetaFix::check(cx.facts, paths::CONFIG, file::SECRET)
            {
                Some(fix) => Check::Change(K3sConfigPlan::Fix(fix)),
                None => Check::Converged,
            },
            found => Check::Change(K3sConfigPlan::Write {
                before: if found.is_some() {
                    "modified"
                } else {
                    "absent"
                },
                pending: None,
            }),
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &K3sConfigPlan,
    ) -> Result<Applied, StepError> {
        let sudo = cx.node.ssh.sudo;
        if let K3sConfigPlan::Fix(fix) = plan {
            fix.apply(io.transport, sudo).await?;
            return Ok(Applied::Done);
        }
        let cfg = match &cx.desired.config {
            DesiredConfig::Known(cfg) => cfg,
            DesiredConfig::Pending(what) => {
                return Err(StepError::NotReady(format!(
                    "the config is not known yet: {what}"
                )));
            }
        };
        let bytes = cfg.expose().as_bytes();
        io.transport
            .put_file(bytes, paths::CONFIG, file::SECRET.mode, sudo)
            .await?;
        Ok(Applied::Done)
    }
}
