//! What a run is given: its mode (for reports), concurrency, how to reach
//! nodes, where to report progress, the artifact cache and how long to wait.

use std::sync::Arc;
use std::time::Duration;

use super::connect::Connector;
use crate::cluster::ApiConnector;
use crate::report::Progress;

pub struct Options {
    pub concurrency: usize,
    pub connector: Arc<dyn Connector>,
    pub api: Arc<dyn ApiConnector>,
    pub progress: Arc<dyn Progress>,
    pub cache_dir: std::path::PathBuf,
    /// How long to wait for a rebooting node and for nodes to turn Ready.
    pub wait: Duration,
    /// `plan --diff`: read drifted text files and show redacted diffs.
    pub diff: bool,
    /// Copy artifacts node to node (one upload per arch); `--no-relay`
    /// uploads every node's copy from the controller.
    pub relay: bool,
    /// How a K3s version change rolls through the nodes.
    pub upgrade: Upgrade,
    /// `--nodes` of plan and apply: converge only these (empty: all).
    pub only: Vec<String>,
}

/// How a K3s version change rolls through nodes already in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// Agents upgraded at once (servers are always one at a time).
    pub max_unavailable: usize,
    /// Evict each node's pods before upgrading it (`--no-drain`: false).
    pub drain: bool,
    /// How long a drain may wait for PodDisruptionBudgets.
    pub drain_timeout: Duration,
    /// Evict Pods nothing recreates and Pods with emptyDir data too
    /// (`--drain-force`); without it they stop their node's drain.
    pub drain_force: bool,
    /// Remove from the cluster the Nodes the inventory no longer names
    /// (`--prune-nodes`); without it they are warned about and left.
    pub prune_nodes: bool,
}

impl Default for Upgrade {
    fn default() -> Self {
        Self {
            max_unavailable: 1,
            drain: true,
            drain_timeout: Duration::from_secs(300),
            drain_force: false,
            prune_nodes: false,
        }
    }
}
