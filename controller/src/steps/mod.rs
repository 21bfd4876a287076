//! The node steps, in the order they run. One step per file.

mod health_agent;
mod k3s_binary;
mod k3s_config;
mod k3s_service;
mod k3s_unit;
mod pi_cgroups;

pub use health_agent::HealthAgent;
pub use k3s_binary::K3sBinary;
pub use k3s_config::K3sConfig;
pub use k3s_service::K3sService;
pub use k3s_unit::K3sUnit;
pub use pi_cgroups::{PiCgroups, with_cgroup_flags};

use crate::step::Step;

/// Every node step, in order: preflight, binary, config, unit, service, health agent.
pub fn node_steps() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(PiCgroups),
        Box::new(K3sBinary),
        Box::new(K3sConfig),
        Box::new(K3sUnit),
        Box::new(K3sService),
        Box::new(HealthAgent),
    ]
}

#[cfg(test)]
mod tests;
