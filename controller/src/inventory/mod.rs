//! The inventory: one TOML file describing a cluster, its nodes and how to
//! reach them.
//!
//! Raw bytes → toml's spanned tree ([`reader`]) → validated [`Inventory`]
//! ([`load`]), judged by [`rules`]. Loading never stops at the first
//! problem: it returns every [`Diagnostic`] at once, each with
//! `file:line:col`, key path and a hint. The model ([`model`]) is plain data
//! and imports nothing of pictl but [`crate::arch`]: the transport and the
//! channel resolver depend on it, never the reverse. Nothing here does
//! network I/O.

pub mod critical;
pub mod diagnostic;
mod load;
mod model;
mod paths;
mod reader;
pub mod rules;
pub mod schema;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use model::{
    AgentMetrics, AgentSettings, Cluster, DEFAULT_CHANNEL_URL, DEFAULT_MIRROR, HostKeyPolicy,
    ImageArchCheck, Inventory, JumpHost, K3sRelease, K3sSettings, K3sValue, MAX_INVENTORY_BYTES,
    Mirror, Node, Registries, RegistryAuth, RegistryConfig, RegistryTls, Role, SecretSetting,
    SecretSource, SshAuth, SshSettings, Workload,
};
pub use paths::{default_state_dir, resolve_path};
