//! `[workload]` (the playbooks to apply, the image-arch preflight) and
//! `[agent]` (the health agent's binaries).

use std::collections::BTreeMap;

use super::Loader;
use crate::arch::Arch;
use crate::inventory::model::{AgentMetrics, AgentSettings, Cluster, K3sValue, Workload};
use crate::inventory::paths::resolve_path;
use crate::inventory::reader::TableReader;
use crate::inventory::rules;

pub(super) const WORKLOAD_KEYS: &[&str] = &["playbooks", "image_arch_check"];
pub(super) const AGENT_KEYS: &[&str] = &["enabled", "binaries", "metrics"];

/// `[agent.binaries]` keys: one per arch K3s ships.
pub(super) fn agent_binary_keys() -> Vec<&'static str> {
    Arch::ALL.iter().map(|a| a.name()).collect()
}

impl Loader<'_, '_> {
    pub(super) fn workload(&mut self, t: &TableReader<'_, '_>) -> Workload {
        t.deny_unknown(self.sink, WORKLOAD_KEYS);
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let playbooks = t
            .str_list(self.sink, "playbooks")
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let dir = resolve_path(self.base_dir, &p.value);
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(first) = names.insert(name.clone(), p.path.clone()) {
                    let hint = format!(
                        "a playbook's directory name names its set of objects (pruning included); rename one ({first} has it)"
                    );
                    self.report(&p, format!("a second playbook named \"{name}\""), Some(&hint));
                }
                if !dir.is_dir() {
                    self.report(
                        &p,
                        format!("{} is not a directory", dir.display()),
                        Some("paths are relative to the inventory file"),
                    );
                }
                dir
            })
            .collect();
        let image_arch_check = t
            .str(self.sink, "image_arch_check")
            .and_then(|v| self.check(&v, rules::image_arch_check(&v.value), None))
            .unwrap_or_default();
        Workload {
            playbooks,
            image_arch_check,
        }
    }

    pub(super) fn agent(
        &mut self,
        t: &TableReader<'_, '_>,
        cluster: Option<&Cluster>,
    ) -> AgentSettings {
        t.deny_unknown(self.sink, AGENT_KEYS);
        let mut settings = AgentSettings::default();
        if let Some(b) = t.bool(self.sink, "enabled") {
            settings.enabled = b.value;
        }
        if let Some(m) = t.str(self.sink, "metrics") {
            if let Some(metrics) = self.check(&m, rules::agent_metrics(&m.value), None) {
                settings.metrics = metrics;
            }
            if settings.metrics == AgentMetrics::PodNetwork
                && let Some(why) = pod_network_refused(settings.enabled, cluster)
            {
                self.report(&m, why.0, Some(why.1));
            }
        }
        if let Some(bins) = t.table(self.sink, "binaries") {
            bins.deny_unknown(self.sink, &agent_binary_keys());
            for arch in Arch::ALL {
                if let Some(p) = bins.str(self.sink, arch.name()) {
                    let path = resolve_path(self.base_dir, &p.value);
                    if !path.is_file() {
                        let hint = format!("build it, e.g. {}", arch.agent_build_hint());
                        let message = format!("{} is not a file", path.display());
                        self.report(&p, message, Some(&hint));
                    }
                    settings.binaries.insert(arch, path);
                }
            }
        }
        settings
    }
}

/// Why `metrics = "pod-network"` cannot work with these settings (message,
/// hint), if it cannot.
fn pod_network_refused(enabled: bool, cluster: Option<&Cluster>) -> Option<(String, &'static str)> {
    if !enabled {
        return Some((
            "metrics = \"pod-network\" needs the agent, but enabled = false".into(),
            "remove one of the two",
        ));
    }
    let cluster = cluster?;
    if let Some(K3sValue::One(b)) = cluster.server_config.get("flannel-backend")
        && b == "none"
    {
        return Some((
            "metrics = \"pod-network\" needs K3s's flannel (the node's cni0 bridge), but server_config sets flannel-backend = \"none\"".into(),
            "with another CNI, expose the agent with a firewall rule instead (see pictl-agent.service)",
        ));
    }
    match cluster.pod_cidrs_v4() {
        Err(why) => Some((
            why,
            "cluster-cidr is K3s's pod network, e.g. \"10.42.0.0/16\"",
        )),
        Ok(v) if v.is_empty() => Some((
            "metrics = \"pod-network\" needs an IPv4 cluster-cidr".into(),
            "IPv6-only clusters are not supported yet",
        )),
        Ok(_) => None,
    }
}
