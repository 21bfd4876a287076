//! Paths pictl manages on a node (hashed by the facts script).

pub const K3S_BIN: &str = "/usr/local/bin/k3s";
pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// K3s's private registry config (its `--private-registry` default).
pub const REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";
/// The admin kubeconfig a server writes (K3s's default `write-kubeconfig`).
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
pub const SERVER_UNIT: &str = "/etc/systemd/system/k3s.service";
pub const AGENT_UNIT: &str = "/etc/systemd/system/k3s-agent.service";
/// `sha256sum` of the binary, config and unit the running K3s was
/// (re)started with, written by pictl after each successful start.
pub const STARTED_WITH: &str = "/var/lib/pictl/k3s-started-with";
pub const HEALTH_AGENT_BIN: &str = "/usr/local/bin/pictl-agent";
pub const HEALTH_AGENT_UNIT: &str = "/etc/systemd/system/pictl-agent.service";
pub const KILLALL: &str = "/usr/local/bin/k3s-killall.sh";
/// The health agent's API access (see `steps::agent_access`).
pub const AGENT_TOKEN: &str = "/etc/pictl-agent/token";
pub const AGENT_CA: &str = "/etc/pictl-agent/ca.crt";
pub const AGENT_PUBLISH: &str = "/etc/pictl-agent/publish.conf";
pub const AGENT_DROPIN: &str = "/etc/systemd/system/pictl-agent.service.d/api.conf";
/// The K3s unit's drop-in that has the health agent note, after each start
/// of K3s, when its certificates end (see `steps::health_agent`).
pub const SERVER_CERTS_HOOK: &str =
    "/etc/systemd/system/k3s.service.d/pictl-agent-certificates.conf";
pub const AGENT_CERTS_HOOK: &str =
    "/etc/systemd/system/k3s-agent.service.d/pictl-agent-certificates.conf";
pub const SERVER_UNINSTALL: &str = "/usr/local/bin/k3s-uninstall.sh";
pub const AGENT_UNINSTALL: &str = "/usr/local/bin/k3s-agent-uninstall.sh";
pub const MANAGED: [&str; 16] = [
    K3S_BIN,
    CONFIG,
    REGISTRIES,
    SERVER_UNIT,
    AGENT_UNIT,
    HEALTH_AGENT_BIN,
    HEALTH_AGENT_UNIT,
    KILLALL,
    SERVER_UNINSTALL,
    AGENT_UNINSTALL,
    AGENT_TOKEN,
    AGENT_CA,
    AGENT_PUBLISH,
    AGENT_DROPIN,
    SERVER_CERTS_HOOK,
    AGENT_CERTS_HOOK,
];
