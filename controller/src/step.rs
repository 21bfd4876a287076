//! The step model: each step compares desired state with gathered facts
//! (`check`, pure and read-only) and returns a typed plan; `apply` performs
//! exactly that plan and needs a [`Writer`], which `pictl plan` never has.
//! So a dry run is true by construction: there is no `if dry_run` anywhere.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::artifacts::{ArtifactError, ArtifactStore};
use crate::facts::Facts;
use crate::inventory::Node;
use crate::secret::Secret;
use crate::transport::{Output, Transport, TransportError};
use crate::write::Writer;

pub use crate::report::{Change, StepId};

/// What the node should hold (computed by the `agent-access` phase).
#[derive(Debug, Clone)]
pub struct AccessFiles {
    pub token: Secret,
    pub ca_pem: String,
    pub publish_conf: String,
}

/// A step's typed plan: what `apply` will do, and how people read it.
pub trait Plan: std::fmt::Debug + Clone + Serialize + Send + Sync {
    /// The plan as changes (never empty: "nothing to do" is `Check::Converged`).
    fn changes(&self) -> Vec<Change>;

    /// Whether applying it changes what a service reads at start (a file's
    /// content, not only its mode or owner): later steps see such steps in
    /// [`NodeCx::pending`] and restart what depends on them.
    fn rewrites(&self) -> bool {
        true
    }
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<P> {
    /// The step does not concern this node (with the reason).
    Skip(String),
    /// Nothing to do.
    Converged,
    /// What to do.
    Change(P),
    /// Something the step cannot fix (with the reason): the node fails.
    Blocked(String),
}

/// The config a node should run with.
#[derive(Debug, Clone)]
pub enum DesiredConfig {
    Known(Secret),
    /// Not known yet (only in `plan`): an agent's join token comes from a
    /// server that is not installed; what it will be, for people.
    Pending(&'static str),
}

/// The release's image archive a node should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirgapImages {
    /// `<data-dir>/agent/images/k3s-airgap-images-<arch>.tar.zst`.
    pub path: String,
    /// Its sha256 in the release's checksum file.
    pub sha256: String,
}

/// What the desired state of one node is, computed once per run.
#[derive(Debug, Clone)]
pub struct Desired {
    pub version: String,
    /// The release's sha256 of the binary for this node's arch.
    pub binary_sha256: String,
    /// `config.yaml`.
    pub config: DesiredConfig,
    /// `registries.yaml` as pictl renders it (`None`: not pictl's file).
    pub registries: Option<crate::secret::Secret>,
    pub unit_name: &'static str,
    pub unit_path: &'static str,
    pub unit: String,
    /// The health agent's binary for this node (`None`: disabled; `Err`: why
    /// there is none).
    pub agent:
        Option<Result<crate::agent_binary::AgentBinary, crate::agent_binary::AgentBinaryError>>,
    /// Where this node's K3s binary and agent come from (the relay phase
    /// sets them; the controller by default).
    pub k3s_from: crate::relay::Source,
    pub agent_from: crate::relay::Source,
    /// K3s's image archive for the node's arch (`[cluster] airgap_images`),
    /// and where its copy comes from (the relay phase sets that).
    pub airgap: Option<AirgapImages>,
    pub images_from: crate::relay::Source,
    /// The agent unit's firewall drop-in (the API server's addresses, and
    /// the pod CIDRs with pod-network metrics), installed with the agent so
    /// systemd reloads once.
    pub agent_dropin: String,
    /// The agent's API access files, once the API is up (the `agent-access` phase).
    pub agent_access: Option<AccessFiles>,
    /// The inventory's K3s settings for the node (its role's, then its own):
    /// what adoption may find carried.
    pub k3s_settings: crate::inventory::K3sSettings,
}

impl Desired {
    /// K3s's data dir as the node's config.yaml will set it (the
    /// inventory's `data-dir`, else K3s's default): the killall and
    /// uninstall scripts default to it, and a server's token is there.
    pub fn data_dir(&self) -> String {
        crate::data_dir::desired(&self.k3s_settings)
    }
}

/// Everything a step may read.
#[derive(Clone, Copy)]
pub struct NodeCx<'a> {
    pub node: &'a Node,
    pub facts: &'a Facts,
    pub desired: &'a Desired,
    /// Earlier steps on this node that have changes in this run.
    pub pending: &'a BTreeSet<StepId>,
    /// What taking over K3s set up outside pictl means on this node
    /// ([`crate::steps::assess_adoption`]), assessed once per gathering of
    /// facts by whoever builds the context: the adopt step acts on it and
    /// the service step reads from it whether adopting needs a restart.
    pub adoption: Option<&'a crate::adopt::Assessment>,
}

/// What a step's `apply` may use besides the node's context.
#[derive(Clone, Copy)]
pub struct StepIo<'a> {
    pub transport: &'a dyn Transport,
    pub store: &'a ArtifactStore,
    pub writer: &'a Writer,
    /// How long the run waits for slow things (`--wait`).
    pub wait: std::time::Duration,
    /// Where a step says what it did besides its plan (a fallback).
    pub progress: &'a dyn crate::report::Progress,
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
    #[error("{0}")]
    NotReady(String),
    #[error(
        "the cluster refuses {node}: \"Node password rejected\" (it knows a node named {node} by another \
         password: a re-flashed SD card, or /etc/rancher/node removed); delete the old Node and its password \
         with `kubectl delete node {node}` (or `pictl reset --nodes {node} --yes`), then apply again"
    )]
    NodePasswordRejected { node: String },
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

    /// The connection went away (the node is unreachable, not failed).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StepError::Transport(e) if e.is_unreachable())
    }
}

/// One node step: a pure `check` and an `apply` of exactly its plan.
pub trait Step: Send + Sync {
    const ID: StepId;
    type Plan: Plan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<Self::Plan>;

    fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &Self::Plan,
    ) -> impl std::future::Future<Output = Result<Applied, StepError>> + Send;
}
