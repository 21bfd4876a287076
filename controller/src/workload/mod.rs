//! The workload: playbook directories (Kubernetes manifests as data)
//! converged through the API after the nodes, with server-side apply and
//! ApplySet pruning. [`manifests`] reads a playbook, [`images`] checks its
//! images against the nodes' arches, [`applyset`] names the set, [`apply`]
//! talks to the API.

pub mod apply;
pub mod applyset;
pub mod images;
pub mod manifests;

pub use apply::{ApplyError, Outcome, apply_playbook};
pub use manifests::{Manifest, ManifestError, load};
