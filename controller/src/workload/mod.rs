//! The workload: playbook directories (Kubernetes manifests as data)
//! converged through the API after the nodes, with server-side apply and
//! ApplySet pruning. [`manifests`] reads a playbook, [`images`] checks its
//! images against the nodes' arches (through [`registry`], with
//! [`reference`] parsing image names), [`applyset`] names the set, [`plan`]
//! reads the cluster (dry runs only) into a [`PlaybookPlan`], and
//! [`apply`] writes exactly that plan, with a [`crate::write::Writer`].

pub mod apply;
pub mod applyset;
pub mod error;
pub mod images;
pub mod manifests;
pub mod plan;
mod prune;
pub mod reference;
pub mod registry;
mod rollout;
pub mod target;

#[cfg(test)]
mod tests;

pub use apply::apply_plan;
pub use error::ApplyError;
pub use manifests::{Manifest, ManifestError, load};
pub use plan::{Action, Changes, PlaybookPlan, plan_playbook};
pub use target::ObjectRef;
