//! Why a run or a node did not get through, as types up to the CLI.

use crate::state;

/// What stops a whole run before or between its phases.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "node {node} is being changed by another pictl run ({holder}); nothing was changed. Its lock \
         ends with that run's SSH session; if that run is gone but its session lingers (a laptop \
         asleep), end it on {node} with `sudo kill PID`, the pid on the node named above"
    )]
    NodeLocked { node: String, holder: String },
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("--nodes: no node named {0:?} in the inventory")]
    NoSuchNode(String),
    #[error("{what}: {source}")]
    SettingSecret {
        what: String,
        #[source]
        source: state::StateError,
    },
    #[error(transparent)]
    Channel(#[from] crate::channel::ChannelError),
    #[error("node {node}: the sudo password is not available: {why}")]
    SudoPasswordMissing { node: String, why: String },
    #[error(
        "the cluster token from {from} is not the one server {server} runs with; a restart cannot change it \
         (rotate it on the server with `k3s token rotate`, or point the inventory at the current token)"
    )]
    TokenMismatch { server: String, from: String },
    #[error(
        "the agent token from {from} is not the one the first server runs with; pictl does not \
         replace a running cluster's agent token (point agent_token at the current one, or leave \
         it out to keep the running one)"
    )]
    AgentTokenMismatch { from: String },
    #[error(
        "channel {channel} resolves to K3s {resolved}, older than what {} runs; pictl does not downgrade \
         K3s on a channel's answer, and K3s does not support downgrades (set allow_downgrade = true in [cluster] to force it)",
        running_list(.running)
    )]
    ChannelDowngrade {
        channel: String,
        resolved: String,
        /// (node, the newer K3s it runs), in inventory order.
        running: Vec<(String, String)>,
    },
    #[error(
        "k3s_version {pinned} is older than what {} runs, and K3s does not support downgrades \
         (a newer release may have migrated the datastore); nothing was changed. The way back is \
         the snapshot pictl takes before every server upgrade (pre-upgrade-<version>, in \
         /var/lib/rancher/k3s/server/db/snapshots on the first server), restored with K3s's \
         `k3s server --cluster-reset --cluster-reset-restore-path=<file>`; set the running release, \
         or allow_downgrade = true in [cluster] to force it",
        running_list(.running)
    )]
    PinnedDowngrade {
        pinned: String,
        /// (node, the newer K3s it runs), in inventory order.
        running: Vec<(String, String)>,
    },
    #[error(
        "ha = true, but server {server} runs K3s on SQLite (/var/lib/rancher/k3s/server/db/state.db, no embedded etcd), \
         and K3s cannot add servers to a SQLite datastore; nothing was changed. K3s (v1.22.2 and later) moves SQLite into \
         embedded etcd when that server is restarted with cluster-init (it logs \"Migrating content from sqlite to etcd\" \
         and renames state.db to state.db.migrated): back up /var/lib/rancher/k3s/server/db on {server}, apply once with \
         ha = true and {server} as the only server (pictl restarts it with cluster-init), then add the other servers"
    )]
    SqliteToHa { server: String },
    #[error(
        "resetting servers {} would leave etcd without a quorum: {} servers hold the cluster, resetting {} leaves {}, \
         and etcd needs {} of {}; nothing was changed. Reset at most {} of them at a time (each leaves etcd before K3s \
         is removed), or reset every node (`pictl reset` without --nodes) to tear the whole cluster down",
        .0.servers.join(", "), .0.members, .0.servers.len(), .0.remaining, .0.need(), .0.members, .0.at_most()
    )]
    QuorumLoss(super::quorum::Shortfall),
    /// `pictl backup` / `pictl restore` refused or failed, with why.
    #[error("{0}")]
    Backup(String),
}

/// `node s1 (v1.33.0+k3s1), node a1 (…)`.
fn running_list(running: &[(String, String)]) -> String {
    running
        .iter()
        .map(|(node, v)| format!("node {node} ({v})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why one node stopped converging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFailure {
    /// The network: the node could not be reached or the connection went away.
    Unreachable(String),
    /// Everything else: a refused command, a blocked step, a failed check.
    Failed(String),
}

impl NodeFailure {
    /// `Unreachable` when `lost`, else `Failed`.
    pub fn new(lost: bool, msg: String) -> Self {
        if lost {
            NodeFailure::Unreachable(msg)
        } else {
            NodeFailure::Failed(msg)
        }
    }

    pub fn message(&self) -> &str {
        match self {
            NodeFailure::Unreachable(m) | NodeFailure::Failed(m) => m,
        }
    }
}
