//! The step model: each step compares desired state with gathered facts
//! (`check`, pure and read-only) and performs exactly its planned changes
//! (`apply`). `pictl plan` only ever calls `check`, so a dry run is true by
//! construction: there is no `if dry_run` anywhere.

use serde::Serialize;

use crate::artifacts::{ArtifactError, ArtifactStore};
use crate::facts::Facts;
use crate::inventory::{Inventory, Node};
use crate::secret::Secret;
use crate::transport::{BoxFuture, Output, Transport, TransportError};

/// One planned difference between the node and the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub what: String,
    pub before: String,
    pub after: String,
}

impl Change {
    pub fn new(
        what: impl Into<String>,
        before: impl Into<String>,
        after: impl Into<String>,
    ) -> Self {
        Self {
            what: what.into(),
            before: before.into(),
            after: after.into(),
        }
    }
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The step does not concern this node (with the reason).
    Skip(String),
    /// Changes to make; empty means converged.
    Changes(Vec<Change>),
    /// Something the step cannot fix (with the reason): the node fails.
    Blocked(String),
}

/// What the desired state of one node is, computed once per run.
#[derive(Debug, Clone)]
pub struct Desired {
    pub version: String,
    /// The release's sha256 of the binary for this node's arch.
    pub binary_sha256: String,
    /// `config.yaml`; `None` while an agent's join token is not known yet
    /// (its server is not installed: only possible in `plan`).
    pub config: Option<Secret>,
    /// What `config` will be once known (shown by `plan` while it is `None`).
    pub config_pending: &'static str,
    pub unit_name: &'static str,
    pub unit_path: &'static str,
    pub unit: String,
    /// The health agent's binary for this node (`None`: disabled; `Err`: why
    /// there is none).
    pub agent: Option<Result<crate::agent_binary::AgentBinary, String>>,
}

/// Everything a step may read.
#[derive(Clone, Copy)]
pub struct NodeCx<'a> {
    pub inv: &'a Inventory,
    pub node: &'a Node,
    pub facts: &'a Facts,
    pub desired: &'a Desired,
    /// Names of earlier steps on this node that have changes in this run.
    pub pending: &'a [&'static str],
}

/// What an applied step asks of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The node is rebooting: reconnect and gather facts again.
    Rebooting,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{what} failed (exit {status}): {stderr}")]
    Remote {
        what: String,
        status: i32,
        stderr: String,
    },
}

impl StepError {
    /// Turns a non-zero exit into an error that says what was attempted.
    pub fn check_output(what: &str, out: Output) -> Result<Output, StepError> {
        if out.success() {
            Ok(out)
        } else {
            let stderr = out.stderr_text();
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            Err(StepError::Remote {
                what: what.to_string(),
                status: out.status,
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            })
        }
    }
}

pub trait Step: Send + Sync {
    fn name(&self) -> &'static str;

    fn check(&self, cx: &NodeCx<'_>) -> Check;

    fn apply<'a>(
        &'a self,
        cx: &'a NodeCx<'a>,
        t: &'a dyn Transport,
        store: &'a ArtifactStore,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Applied, StepError>>;
}
