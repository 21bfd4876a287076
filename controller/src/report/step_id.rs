//! What steps and report entries are called ([`StepId`], never matched as
//! text) and what a change is ([`Change`]): the words the steps, phases,
//! reports and the progress views share.

use serde::Serialize;

/// Every step and report entry of a node, by name: never matched as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    PiCgroups,
    K3sAdopt,
    K3sBinary,
    K3sTools,
    K3sConfig,
    K3sRegistries,
    K3sAirgapImages,
    K3sUnit,
    K3sService,
    HealthAgent,
    AgentAccess,
    AgentRbac,
    AgentPolicy,
    AgentMetrics,
    Kubeconfig,
    NodeReady,
    NodeLabels,
    K3sReset,
    NodeDeleted,
    EtcdMember,
    Drain,
    Snapshot,
    Rollback,
    Certificates,
    Uncordon,
}

impl StepId {
    pub fn as_str(self) -> &'static str {
        match self {
            StepId::PiCgroups => "pi-cgroups",
            StepId::K3sAdopt => "k3s-adopt",
            StepId::K3sBinary => "k3s-binary",
            StepId::K3sTools => "k3s-tools",
            StepId::K3sConfig => "k3s-config",
            StepId::K3sRegistries => "k3s-registries",
            StepId::K3sAirgapImages => "k3s-airgap-images",
            StepId::K3sUnit => "k3s-unit",
            StepId::K3sService => "k3s-service",
            StepId::HealthAgent => "health-agent",
            StepId::AgentAccess => "agent-access",
            StepId::AgentRbac => "agent-rbac",
            StepId::AgentPolicy => "agent-policy",
            StepId::AgentMetrics => "agent-metrics",
            StepId::Kubeconfig => "kubeconfig",
            StepId::NodeReady => "node-ready",
            StepId::NodeLabels => "node-labels",
            StepId::K3sReset => "k3s-reset",
            StepId::NodeDeleted => "node-deleted",
            StepId::EtcdMember => "etcd-member",
            StepId::Drain => "drain",
            StepId::Snapshot => "snapshot",
            StepId::Rollback => "rollback",
            StepId::Certificates => "certificates",
            StepId::Uncordon => "uncordon",
        }
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One planned difference between the node and the inventory, as people
/// read it (and as `--output json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub what: String,
    pub before: String,
    pub after: String,
    /// `plan --diff` only: the redacted unified diff of a text file rewrite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
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
            diff: None,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} → {}", self.what, self.before, self.after)
    }
}
