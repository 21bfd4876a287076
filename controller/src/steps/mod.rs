//! The node steps, in the order they run. One step per file; [`visit`] is
//! the one place that lists them, so the runner's converge and re-check
//! and the tests walk the same order.

mod agent_access;
pub mod diff;
mod file;
mod health_agent;
mod k3s_adopt;
mod k3s_airgap_images;
mod k3s_binary;
mod k3s_config;
mod k3s_registries;
mod k3s_reset;
mod k3s_service;
pub(crate) mod k3s_tools;
mod k3s_unit;
mod pi_cgroups;
mod relay;
mod service;

pub use agent_access::{
    AccessFiles, AgentAccess, AgentAccessPlan, PodMetrics, dropin, publish_conf,
};
pub use file::MetaFix;
pub use health_agent::{
    AGENT_FILES, CERTS_HOOK, HealthAgent, HealthAgentPlan, REMOVE_SCRIPT as REMOVE_AGENT_SCRIPT,
};
pub use k3s_adopt::{AdoptPlan, K3sAdopt, assess as assess_adoption};
pub use k3s_airgap_images::{AirgapImagesPlan, K3sAirgapImages};
pub use k3s_binary::{K3sBinary, K3sBinaryPlan};
pub use k3s_config::{K3sConfig, K3sConfigPlan};
pub use k3s_registries::{K3sRegistries, RegistriesPlan};
pub use k3s_reset::{K3sReset, ResetPlan};
pub use k3s_service::K3sService;
pub use k3s_tools::{K3sTools, ToolsPlan, uninstall_path};
pub use k3s_unit::{K3sUnit, K3sUnitPlan};
pub use pi_cgroups::{PiCgroups, PiCgroupsPlan, with_flags};
pub use service::{RestartReason, ServiceAction, ServicePlan};

use std::ops::ControlFlow;

use crate::step::Step;

/// Something done with each node step in turn; `Break` stops the walk.
pub trait StepVisitor {
    fn visit<S: Step>(
        &mut self,
        step: &S,
    ) -> impl std::future::Future<Output = ControlFlow<()>> + Send;
}

/// Every node step, in order: preflight, adoption, binary, tools, config,
/// registries, K3s's image archive (before K3s first starts), unit,
/// service, health agent.
pub async fn visit<V: StepVisitor + Send>(v: &mut V) -> ControlFlow<()> {
    v.visit(&PiCgroups).await?;
    v.visit(&K3sAdopt).await?;
    v.visit(&K3sBinary).await?;
    v.visit(&K3sTools).await?;
    v.visit(&K3sConfig).await?;
    v.visit(&K3sRegistries).await?;
    v.visit(&K3sAirgapImages).await?;
    v.visit(&K3sUnit).await?;
    v.visit(&K3sService).await?;
    v.visit(&HealthAgent).await
}

#[cfg(test)]
mod tests;
