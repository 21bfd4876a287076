//! The Kubernetes API's room, as `transport/` is SSH's: the client (built
//! once per run from the admin kubeconfig, or from a file for `status`),
//! the Nodes (one LIST a run shares, one Ready parser, writes preconditioned
//! on `resourceVersion`), cordon and drain, and the health agents'
//! ServiceAccounts, roles and admission policy. `kube::Api` is built here and in `workload/`
//! only; every call that changes the cluster takes the run's
//! [`crate::write::Writer`]. What goes wrong is a [`ClusterError`].

pub mod agent_access;
pub mod agent_policy;
mod client;
pub mod cordons;
pub mod drain;
pub mod etcd_member;
#[cfg(test)]
pub(crate) mod fake;
pub mod nodes;

use std::sync::Arc;

pub use client::{ApiConnector, ApiError, KubeconfigApi, kube_client, kube_client_from_yaml};
pub use nodes::{NodeList, NodeState};

/// Why a call through the API did not get what it needed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// The call failed: what pictl was doing, and the API's answer.
    #[error("{what}")]
    Call {
        what: String,
        #[source]
        source: Arc<kube::Error>,
    },
    /// The API answered with something pictl cannot use.
    #[error("{0}")]
    Unusable(String),
    /// What pictl waited for did not come in time.
    #[error("{0}")]
    Timeout(String),
    /// There is no API client: why.
    #[error("{0}")]
    NoApi(String),
}

impl ClusterError {
    /// `what` failed with `e`, for `map_err`.
    pub fn call(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
        let what = what.into();
        move |e| ClusterError::Call {
            what,
            source: Arc::new(e),
        }
    }

    /// The API's HTTP status, when it answered with one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClusterError::Call { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}
