//! K3s's own images for the node's arch (`[cluster] airgap_images`): the
//! release's `k3s-airgap-images-<arch>.tar.zst`, verified against the
//! release's checksum file, at `<data-dir>/agent/images/`, compared by
//! sha256 (the facts script hashes it, with its hash cache: a few hundred
//! MB are hashed once per change, not once per run). It runs before K3s
//! first starts, so a new node imports the images instead of pulling them.
//! No restart follows a new archive: K3s's image watcher
//! (pkg/agent/containerd/watcher.go `processImageEvent`) imports a file
//! that appears, or whose size changed, while it runs. Turning the setting
//! off leaves the file (its images are in containerd's store anyway).

use serde::Serialize;

use crate::artifacts::Kind;
use crate::step::{Applied, Change, Check, NodeCx, Plan, Step, StepError, StepId, StepIo};

pub struct K3sAirgapImages;

/// The archive's mode: public release content, read by K3s as root.
const MODE: u32 = 0o644;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AirgapImagesPlan {
    /// Install the release's archive at `path` over what is there
    /// (`absent` or `other content`), with its copy from `from`.
    Install {
        path: String,
        before: &'static str,
        version: String,
        from: crate::relay::Source,
    },
}

impl Plan for AirgapImagesPlan {
    /// K3s's watcher imports the new file while it runs: no restart.
    fn rewrites(&self) -> bool {
        false
    }

    fn changes(&self) -> Vec<Change> {
        let AirgapImagesPlan::Install {
            path,
            before,
            version,
            from,
        } = self;
        let after = format!("{version}'s images{}", from.suffix());
        vec![Change::new(path.clone(), *before, after)]
    }
}

impl Step for K3sAirgapImages {
    const ID: StepId = StepId::K3sAirgapImages;
    type Plan = AirgapImagesPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<AirgapImagesPlan> {
        let Some(want) = &cx.desired.airgap else {
            return Check::Skip("airgap_images is off in [cluster]".into());
        };
        let before = match cx.facts.file_sha(&want.path) {
            Some(sha) if sha == want.sha256 => return Check::Converged,
            Some(_) => "other content",
            None => "absent",
        };
        Check::Change(AirgapImagesPlan::Install {
            path: want.path.clone(),
            before,
            version: cx.desired.version.clone(),
            from: cx.desired.images_from.clone(),
        })
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &AirgapImagesPlan,
    ) -> Result<Applied, StepError> {
        let AirgapImagesPlan::Install { path, from, .. } = plan;
        let Some(want) = &cx.desired.airgap else {
            return Ok(Applied::Done);
        };
        let target = (path.as_str(), MODE, want.sha256.as_str());
        super::relay::install_release_asset(cx, io, Self::ID, from, target, Kind::AirgapImages)
            .await?;
        Ok(Applied::Done)
    }
}
