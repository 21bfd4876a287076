//! K3s's `/etc/rancher/k3s/registries.yaml`, 0600 root:root, from
//! `[registries]`. K3s reads it only when it starts (pkg/agent/containerd/
//! config.go: containerd's registry hosts are written from it at start), so
//! a rewrite marks K3s for a restart; an unchanged file restarts nothing.
//! It holds registry passwords: like `config.yaml`, its plan never shows a
//! hash of it, and `plan --diff` shows its lines redacted.

use serde::Serialize;

use super::file::{self, MetaFix};
use crate::artifacts::sha256_hex;
use crate::facts::paths;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};

pub struct K3sRegistries;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistriesPlan {
    /// Write pictl's registries over what is there (`absent` or `modified`).
    Write { before: &'static str },
    /// The content is right; its mode or owner is not.
    Fix(MetaFix),
}

impl Plan for RegistriesPlan {
    fn rewrites(&self) -> bool {
        matches!(self, RegistriesPlan::Write { .. })
    }

    fn changes(&self) -> Vec<Change> {
        match self {
            RegistriesPlan::Write { before } => {
                vec![Change::new(
                    paths::REGISTRIES,
                    *before,
                    "pictl's registries",
                )]
            }
            RegistriesPlan::Fix(fix) => fix.changes(),
        }
    }
}

impl Step for K3sRegistries {
    const ID: StepId = StepId::K3sRegistries;
    type Plan = RegistriesPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<RegistriesPlan> {
        let Some(want) = &cx.desired.registries else {
            return Check::Skip(
                "no [registries] in the inventory: the file is left as it is".into(),
            );
        };
        let want = sha256_hex(want.expose().as_bytes());
        match cx.facts.file_sha(paths::REGISTRIES) {
            Some(sha) if sha == want => {
                match MetaFix::check(cx.facts, paths::REGISTRIES, file::SECRET) {
                    Some(fix) => Check::Change(RegistriesPlan::Fix(fix)),
                    None => Check::Converged,
                }
            }
            Some(_) => Check::Change(RegistriesPlan::Write { before: "modified" }),
            None => Check::Change(RegistriesPlan::Write { before: "absent" }),
        }
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &RegistriesPlan,
    ) -> Result<Applied, StepError> {
        let sudo = cx.node.ssh.sudo;
        match (plan, &cx.desired.registries) {
            (RegistriesPlan::Fix(fix), _) => fix.apply(io.transport, sudo).await?,
            (RegistriesPlan::Write { .. }, Some(text)) => {
                let bytes = text.expose().as_bytes();
                (io.transport)
                    .put_file(bytes, paths::REGISTRIES, file::SECRET.mode, sudo)
                    .await?;
            }
            // `check` plans a write only for a file pictl renders.
            (RegistriesPlan::Write { .. }, None) => {}
        }
        Ok(Applied::Done)
    }
}
