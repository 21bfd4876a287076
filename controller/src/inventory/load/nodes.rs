//! `[[nodes]]`: each node's name, address, role, arch, labels, taints and
//! SSH overrides, and the rules across nodes (unique names and addresses,
//! a server, a sensible server count).

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::Loader;
use super::k3s::For;
use super::ssh::RawSsh;
use crate::inventory::model::{Node, Role};
use crate::inventory::reader::{self, Located, TableReader};
use crate::inventory::rules;

pub(super) const NODE_KEYS: &[&str] = &[
    "name",
    "address",
    "role",
    "arch",
    "labels",
    "taints",
    "ssh",
    "k3s_config",
    "adopt_drop",
];

/// What the rules across nodes need to remember while the nodes are read.
#[derive(Default)]
struct Seen {
    names: BTreeMap<String, Located<String>>,
    addresses: BTreeMap<String, Located<String>>,
    servers: Vec<Located<String>>,
    bad_roles: usize,
    /// Each server's own K3s settings, located at its `k3s_config` (else its name).
    server_settings: Vec<(Located<String>, crate::inventory::K3sSettings)>,
}

impl Loader<'_, '_> {
    pub(super) fn nodes(
        &mut self,
        root: &TableReader<'_, '_>,
        defaults: &RawSsh,
        cluster: Option<&crate::inventory::Cluster>,
    ) -> Vec<Node> {
        let ha = cluster.map(|c| c.ha);
        let Some((path, item)) = root.get("nodes") else {
            self.sink.report(
                0..0,
                "nodes",
                "no nodes",
                Some("add at least one [[nodes]] with name, address and role = \"server\"".into()),
            );
            return Vec::new();
        };
        let DeValue::Array(arr) = item.value.get_ref() else {
            reader::type_error(self.sink, &path, &item, "an array of tables ([[nodes]])");
            return Vec::new();
        };
        let mut seen = Seen::default();
        let mut nodes = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            let p = format!("nodes[{i}]");
            let DeValue::Table(inner) = v.get_ref() else {
                self.sink.report(
                    v.span(),
                    &p,
                    format!("expected a table, found {}", reader::kind_name(v.get_ref())),
                    Some("write each node as a [[nodes]] table".into()),
                );
                continue;
            };
            let t = TableReader::new(p, v.span(), inner);
            nodes.extend(self.node(&t, defaults, &mut seen));
        }
        let everywhere = Located::new((), item.span(), "nodes".to_string());
        if !arr.is_empty() {
            self.server_count(&everywhere, &seen, ha);
        }
        if let Some(c) = cluster.filter(|c| c.ha) {
            self.critical_settings(&seen, &c.server_config);
        }
        if let Some(c) = cluster.filter(|c| c.airgap_images) {
            for n in &mut nodes {
                n.airgap_images = Some(images_dir(c, n));
            }
        }
        nodes
    }

    /// HA servers whose K3s critical settings differ: K3s would refuse the
    /// join (see [`crate::inventory::critical`]), so the inventory does first.
    fn critical_settings(&mut self, seen: &Seen, cluster: &crate::inventory::K3sSettings) {
        let whole: Vec<_> = seen
            .server_settings
            .iter()
            .map(|(_, own)| {
                let mut s = cluster.clone();
                s.extend(own.clone());
                s
            })
            .collect();
        for m in crate::inventory::critical::mismatches(&whole) {
            let (at, first) = (
                &seen.server_settings[m.server].0,
                &seen.server_settings[0].0,
            );
            let message = format!(
                "server {}'s {} ({}) differs from server {}'s ({}): K3s refuses a server whose \
                 critical settings differ from the cluster's (\"critical configuration value \
                 mismatch between servers\")",
                at.value, m.flag, m.value, first.value, m.first
            );
            let hint = "set it once for every server in [cluster] server_config, or the same in each server's k3s_config";
            self.report(at, message, Some(hint));
        }
    }

    fn node(
        &mut self,
        t: &TableReader<'_, '_>,
        defaults: &RawSsh,
        seen: &mut Seen,
    ) -> Option<Node> {
        t.deny_unknown(self.sink, NODE_KEYS);
        let name = self.required_str(t, "name", "the node's name, usually its hostname");
        if let Some(n) = &name {
            let hint = Some("a Kubernetes node name: lowercase letters, digits, '-' and '.'");
            if self.check(n, rules::node_name(&n.value), hint).is_some() {
                self.first_use(&mut seen.names, n.value.clone(), n, "node name");
            }
        }
        let address = self.required_str(t, "address", "the node's IP address or DNS name");
        if let Some(a) = &address {
            let hint = Some("an IP address or a DNS name");
            if self.check(a, rules::address(&a.value), hint).is_some() {
                let key = a.value.to_ascii_lowercase();
                self.first_use(&mut seen.addresses, key, a, "node address");
            }
        }
        let role = self
            .required_str(t, "role", "role = \"server\" or role = \"agent\"")
            .and_then(|r| {
                let role = self.check(&r, rules::role(&r.value), None);
                match role {
                    Some(Role::Server) => seen.servers.push(r),
                    Some(Role::Agent) => {}
                    None => seen.bad_roles += 1,
                }
                role
            });
        let arch = t
            .str(self.sink, "arch")
            .and_then(|a| self.check(&a, rules::arch(&a.value), None));
        let labels = self.labels(t);
        let taints = self.taints(t);
        let k3s_config =
            self.k3s_settings(t, "k3s_config", For::Node(role.map(|r| r == Role::Server)));
        if let (Some(Role::Server), Some(n)) = (role, &name) {
            let at = match t.get("k3s_config") {
                Some((path, item)) => Located::new(n.value.clone(), item.span(), path),
                None => n.clone(),
            };
            seen.server_settings.push((at, k3s_config.clone()));
        }
        let adopt_drop = t
            .str_list(self.sink, "adopt_drop")
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.value)
            .collect();
        let ssh = t
            .table(self.sink, "ssh")
            .map(|s| self.ssh(&s))
            .unwrap_or_default()
            .merged_over(defaults);
        self.check_known_hosts(&ssh);
        let address = address?;
        let ssh = self.settle_ssh(ssh, &address);
        Some(Node {
            name: name?.value,
            address: address.value,
            role: role?,
            ssh,
            arch,
            labels,
            taints,
            k3s_config,
            adopt_drop,
            airgap_images: None,
        })
    }

    /// The node's `taints`, each checked as `key=value:Effect`.
    fn taints(&mut self, t: &TableReader<'_, '_>) -> Vec<String> {
        let taint_hint =
            Some("key=value:Effect with Effect one of NoSchedule, PreferNoSchedule, NoExecute");
        t.str_list(self.sink, "taints")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| {
                self.check(&s, rules::taint(&s.value), taint_hint)
                    .map(|()| s.value)
            })
            .collect()
    }

    /// A server, and no more of them than the HA setting makes useful.
    fn server_count(&mut self, nodes: &Located<()>, seen: &Seen, ha: Option<bool>) {
        let servers = &seen.servers;
        if servers.is_empty() && seen.bad_roles == 0 {
            self.report(
                nodes,
                "no node has role = \"server\"",
                Some("a cluster needs one server (the control plane)"),
            );
        }
        if servers.len() > 1 && ha == Some(false) {
            self.report(
                &servers[1],
                format!("{} servers but HA is not enabled", servers.len()),
                Some("set ha = true in [cluster] (embedded etcd), or make this node an agent"),
            );
        }
        if servers.len() > 1 && servers.len().is_multiple_of(2) && ha == Some(true) {
            self.report(
                &servers[servers.len() - 1],
                format!(
                    "{} servers: an even number gives etcd no extra fault tolerance",
                    servers.len()
                ),
                Some("use an odd number of servers (3 or 5)"),
            );
        }
    }

    fn labels(&mut self, t: &TableReader<'_, '_>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(lt) = t.table(self.sink, "labels") else {
            return out;
        };
        for (k, v) in lt.table.iter() {
            let key: &str = k.get_ref();
            let p = reader::join(&lt.path, key);
            let key_at = Located::new((), k.span(), p.clone());
            let key_hint = Some("a Kubernetes label key, e.g. \"example.com/zone\"");
            if self
                .check(&key_at, rules::label_key(key), key_hint)
                .and_then(|()| self.check(&key_at, rules::kubelet_label(key), None))
                .is_none()
            {
                continue;
            }
            let value_at = Located::new((), v.span(), p);
            match v.get_ref() {
                DeValue::String(s) => {
                    if self.check(&value_at, rules::label_value(s), None).is_some() {
                        out.insert(key.to_string(), s.to_string());
                    }
                }
                other => {
                    let message = format!("expected a string, found {}", reader::kind_name(other));
                    self.report(&value_at, message, None);
                }
            }
        }
        out
    }
}

/// `<data-dir>/agent/images` for the data dir the node's config.yaml sets
/// (its role's settings, then its own), where K3s imports archives from.
fn images_dir(c: &crate::inventory::Cluster, n: &Node) -> String {
    let mut settings = match n.role {
        Role::Server => c.server_config.clone(),
        Role::Agent => c.agent_config.clone(),
    };
    settings.extend(n.k3s_config.clone());
    let dir = crate::data_dir::desired(&settings);
    format!("{}/agent/images", dir.trim_end_matches('/'))
}
