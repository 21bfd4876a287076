//! The k3s binary: the release's verified artifact for the node's arch at
//! /usr/local/bin/k3s, compared by sha256 (not by version string), 0755
//! root:root.

use serde::Serialize;

use super::file::{self, MetaFix};
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};

pub struct K3sBinary;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum K3sBinaryPlan {
    /// Install `version`'s binary over what is there (`before`, for
    /// people), with its copy from `from`.
    Install {
        before: String,
        version: String,
        from: crate::relay::Source,
    },
    /// The binary is right; its mode or owner is not.
    Fix(MetaFix),
}

impl Plan for K3sBinaryPlan {
    /// Whether the binary K3s runs changes (a restart is due).
    fn rewrites(&self) -> bool {
        matches!(self, K3sBinaryPlan::Install { .. })
    }

    fn changes(&self) -> Vec<Change> {
        match self {
            K3sBinaryPlan::Install {
                before,
                version,
                from,
            } => {
                let after = format!("{version}{}", from.suffix());
                vec![Change::new(paths::K3S_BIN, before.clone(), after)]
            }
            K3sBinaryPlan::Fix(fix) => fix.changes(),
        }
    }
}

impl Step for K3sBinary {
    const ID: StepId = StepId::K3sBinary;
    type Plan = K3sBinaryPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<K3sBinaryPlan> {
        let installed = cx.facts.file_sha(paths::K3S_BIN);
        if installed == Some(cx.desired.binary_sha256.as_str()) {
            return match MetaFix::check(cx.facts, paths::K3S_BIN, file::BINARY) {
                Some(fix) => Check::Change(K3sBinaryPlan::Fix(fix)),
                None => Check::Converged,
            };
        }
        if let Some(from) = &cx.facts.k3s_version
            && let Some(skipped) = crate::channel::skipped_minor(from, &cx.desired.version)
        {
            return Check::Blocked(format!(
                "upgrading K3s from {from} to {} would skip {skipped}: Kubernetes upgrades one minor release at a time; \
                 set k3s_version to the latest release of each skipped minor in turn (or channel = \"{}\"), apply, then move on",
                cx.desired.version,
                skipped.split(", ").next().unwrap_or_default(),
            ));
        }
        let before = match (installed, &cx.facts.k3s_version) {
            (None, _) => "absent".to_string(),
            (Some(_), Some(v)) if *v == cx.desired.version => format!("{v} (modified binary)"),
            (Some(_), Some(v)) => v.clone(),
            (Some(_), None) => "unknown binary".to_string(),
        };
        Check::Change(K3sBinaryPlan::Install {
            before,
            version: cx.desired.version.clone(),
            from: cx.desired.k3s_from.clone(),
        })
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &K3sBinaryPlan,
    ) -> Result<Applied, StepError> {
        if let K3sBinaryPlan::Fix(fix) = plan {
            fix.apply(io.transport, cx.node.ssh.sudo).await?;
            return Ok(Applied::Done);
        }
        let want = (
            paths::K3S_BIN,
            file::BINARY.mode,
            cx.desired.binary_sha256.as_str(),
        );
        let from = match plan {
            K3sBinaryPlan::Install { from, .. } => from,
            K3sBinaryPlan::Fix(_) => &crate::relay::Source::Controller,
        };
        let kind = crate::artifacts::Kind::Binary;
        super::relay::install_release_asset(cx, io, Self::ID, from, want, kind).await?;
        Ok(Applied::Done)
    }
}
