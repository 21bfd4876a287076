//! How a step installs an artifact another node serves (see
//! [`crate::relay`]): from the seed or the node's own staged copy when the
//! relay phase set one up, else (and after any failure, said so in the
//! run's output) by the caller's direct upload.

use crate::relay::{self, FetchError, Source};
use crate::report::{Event, Stage, Topic};
use crate::step::{NodeCx, StepError, StepId, StepIo};

/// The most bytes a copy from a seed may have (K3s is about 70 MB).
const MAX_BYTES: u64 = 512 << 20;

/// Installs `path` from `from`; `Ok(false)` when the caller must upload.
pub async fn try_install(
    cx: &NodeCx<'_>,
    io: StepIo<'_>,
    step: StepId,
    from: &Source,
    (path, mode, sha256): (&str, u32, &str),
) -> Result<bool, StepError> {
    let Some(location) = from.location() else {
        return Ok(false);
    };
    let sudo = cx.node.ssh.sudo;
    match relay::install(io.transport, location, path, mode, sha256, MAX_BYTES, sudo).await {
        Ok(()) => {
            tracing::info!(%path, source = %from.describe(), "installed without an upload");
            Ok(true)
        }
        Err(FetchError::Transport(e)) if e.is_unreachable() => Err(e.into()),
        Err(e) => {
            let detail = format!(
                "{path} from {}: {}; uploading it from the controller instead",
                from.describe(),
                crate::error_chain(&e)
            );
            io.progress.event(&Event {
                subject: &cx.node.name,
                topic: Topic::Step(step),
                stage: Stage::Warning,
                detail: &detail,
            });
            Ok(false)
        }
    }
}

/// Installs a release asset at `target`: from `from` when another node
/// serves it, else (and after any failure) uploaded from the controller,
/// verified against the release checksum before a byte is sent.
pub async fn install_release_asset(
    cx: &NodeCx<'_>,
    io: StepIo<'_>,
    step: StepId,
    from: &Source,
    (path, mode, sha256): (&str, u32, &str),
    kind: crate::artifacts::Kind,
) -> Result<(), StepError> {
    // The facts phase has failed nodes whose arch K3s does not ship.
    let Ok(arch) = cx.facts.arch.clone() else {
        return Ok(());
    };
    if try_install(cx, io, step, from, (path, mode, sha256)).await? {
        return Ok(());
    }
    let asset = io.store.asset(arch, kind).await?;
    io.transport
        .put_file(&asset.bytes, path, mode, cx.node.ssh.sudo)
        .await?;
    Ok(())
}
