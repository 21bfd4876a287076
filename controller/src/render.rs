//! What the managed files on a node must contain: K3s's `config.yaml` and
//! the systemd units. Node labels and taints are not in config.yaml: K3s
//! reads them only at registration, so the API converges them
//! ([`crate::runner::node_meta`]). Pure functions of the inventory, so `plan` and tests
//! see exactly the bytes `apply` would write.

use std::net::IpAddr;

use serde::Serialize;

use crate::inventory::{Inventory, K3sSettings, Node, Role};
use crate::secret::Secret;

pub const HEADER: &str = "# Managed by pictl: edits are reverted by the next `pictl apply`.\n";

/// K3s's `config.yaml` keys pictl sets (the same names as the CLI flags).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct K3sConfig<'a> {
    node_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_kubeconfig_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tls_san: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cluster_init: bool,
    /// The inventory's extra K3s settings for the node's role and the node.
    #[serde(flatten)]
    extra: K3sSettings,
}

/// The cluster's settings for `node`'s role, with the node's own over them.
pub fn node_settings(inv: &Inventory, node: &Node) -> K3sSettings {
    let mut out = match node.role {
        Role::Server => inv.cluster.server_config.clone(),
        Role::Agent => inv.cluster.agent_config.clone(),
    };
    out.extend(node.k3s_config.clone());
    out
}

/// How a server's K3s starts its datastore. K3s reads it only on a data dir
/// without etcd (pkg/cluster/bootstrap.go `shouldBootstrapLoad`: an
/// initialized etcd is started as the member it was, whatever the flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No `server:`, no `cluster-init`: SQLite (`ha = false`).
    Alone,
    /// `cluster-init: true`: a new etcd cluster.
    Init,
    /// `server: <url>`: join the etcd cluster there.
    Join(String),
}

impl Start {
    /// As the inventory alone says: with `ha`, the first server starts etcd
    /// and the others join the API address.
    pub fn by_inventory(inv: &Inventory, node: &Node) -> Start {
        let first_server = inv.servers().next().is_some_and(|s| s.name == node.name);
        match (inv.cluster.ha, first_server) {
            (false, _) => Start::Alone,
            (true, true) => Start::Init,
            (true, false) => Start::Join(api_url(inv)),
        }
    }
}

/// The server's config; `secret` is the cluster secret (the server derives
/// its `K10…` token from it).
/// `agent_secret`: the agents' join secret (`agent-token`), if the cluster has one.
pub fn server_config(
    inv: &Inventory,
    node: &Node,
    secret: &Secret,
    agent_secret: Option<&Secret>,
) -> String {
    let start = Start::by_inventory(inv, node);
    server_config_as(inv, node, &start, secret, agent_secret)
}

/// The server's config, starting as `start` says.
pub fn server_config_as(
    inv: &Inventory,
    node: &Node,
    start: &Start,
    secret: &Secret,
    agent_secret: Option<&Secret>,
) -> String {
    let mut tls_san: Vec<&str> = vec![inv.api_address()];
    for s in &inv.cluster.tls_san {
        if !tls_san.contains(&s.as_str()) {
            tls_san.push(s);
        }
    }
    if !tls_san.contains(&node.address.as_str()) {
        tls_san.push(&node.address);
    }
    let extra = node_settings(inv, node);
    let cfg = K3sConfig {
        node_name: &node.name,
        node_ip: ip_of(node),
        server: match start {
            Start::Join(url) => Some(url.clone()),
            Start::Alone | Start::Init => None,
        },
        token: secret.expose(),
        agent_token: agent_secret.map(Secret::expose),
        // K3s's default is 0600 for the admin kubeconfig; the inventory may
        // set another (`server_config`), as install.sh users do.
        write_kubeconfig_mode: (!extra.contains_key("write-kubeconfig-mode")).then_some("0600"),
        tls_san,
        cluster_init: *start == Start::Init,
        extra,
    };
    to_yaml(&cfg)
}

/// An agent's config; `join_token` is the server's full `K10…` token, which
/// also pins the cluster CA.
pub fn agent_config(inv: &Inventory, node: &Node, join_token: &Secret) -> String {
    let cfg = K3sConfig {
        node_name: &node.name,
        node_ip: ip_of(node),
        server: Some(api_url(inv)),
        token: join_token.expose(),
        agent_token: None,
        write_kubeconfig_mode: None,
        tls_san: Vec::new(),
        cluster_init: false,
        extra: node_settings(inv, node),
    };
    to_yaml(&cfg)
}

/// `registries.yaml` from `[registries]` (`None`: the inventory has none).
pub fn registries(inv: &Inventory) -> Option<String> {
    inv.registries.as_ref().map(to_yaml)
}

pub fn api_url(inv: &Inventory) -> String {
    server_url(inv.api_address())
}

/// `https://<address>:6443`, IPv6 addresses bracketed.
pub fn server_url(a: &str) -> String {
    if a.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("https://[{a}]:6443")
    } else {
        format!("https://{a}:6443")
    }
}

fn ip_of(node: &Node) -> Option<&str> {
    node.address
        .parse::<IpAddr>()
        .is_ok()
        .then_some(node.address.as_str())
}

fn to_yaml<T: Serialize>(v: &T) -> String {
    // Plain strings, vectors and bools cannot fail; a secret setting fails
    // only when rendered before the run read it (plan and apply read them
    // first: runner/resolve.rs), and then the text says so instead of
    // holding a value.
    let body = serde_yaml_ng::to_string(v)
        .unwrap_or_else(|e| format!("# pictl could not render this file: {e}\n"));
    format!("{HEADER}{body}")
}

/// The systemd unit name for a role, as K3s's installer names them.
pub fn unit_name(role: Role) -> &'static str {
    match role {
        Role::Server => "k3s.service",
        Role::Agent => "k3s-agent.service",
    }
}

/// The unit file, modelled on the one K3s's install script writes.
pub fn unit_file(role: Role) -> String {
    // K3s's installer writes Type=notify for both (its SYSTEMD_TYPE
    // default): an agent notifies once its Node registered. User=root as
    // install.sh writes it (k3s-io/k3s#11777): systemd then sets $HOME, which
    // etcd S3 snapshots reading /root/.aws rely on.
    let (desc, kind, exec) = match role {
        Role::Server => ("Lightweight Kubernetes", "notify", "server"),
        Role::Agent => ("Lightweight Kubernetes (agent)", "notify", "agent"),
    };
    format!(
        "# Managed by pictl: edits are reverted by the next `pictl apply`.
[Unit]
Description={desc}
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type={kind}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/%N.service.env
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s {exec}
"
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn inv() -> Inventory {
        let text = r#"
[cluster]
name = "demo"
k3s_version = "v1.32.5+k3s1"
tls_san = ["pi.example.com"]
[ssh]
agent = true
[[nodes]]
name = "s1"
address = "10.0.0.1"
role = "server"
[[nodes]]
name = "a1"
address = "10.0.0.2"
role = "agent"
labels = { "zone" = "shelf" }
taints = ["edge=true:NoSchedule"]
"#;
        Inventory::parse(text, "t.toml", Path::new("/")).expect("valid")
    }

    #[test]
    fn server_config_holds_sans_and_restricts_the_kubeconfig() {
        let inv = inv();
        let y = server_config(
            &inv,
            &inv.nodes[0],
            &Secret::new("sec"),
            Some(&Secret::new("agents")),
        );
        assert!(y.starts_with(HEADER));
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&y).expect("yaml");
        assert_eq!(v["node-name"], "s1");
        assert_eq!(v["token"], "sec");
        assert_eq!(v["agent-token"], "agents");
        assert_eq!(v["write-kubeconfig-mode"], "0600");
        assert_eq!(v["tls-san"][0], "10.0.0.1");
        assert_eq!(v["tls-san"][1], "pi.example.com");
        assert!(v.get("server").is_none());
        assert!(v.get("cluster-init").is_none());
    }

    #[test]
    fn agent_config_joins_the_api_address_and_leaves_labels_and_taints_to_the_api() {
        let inv = inv();
        let y = agent_config(&inv, &inv.nodes[1], &Secret::new("K10x::server:sec"));
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&y).expect("yaml");
        assert_eq!(v["server"], "https://10.0.0.1:6443");
        assert_eq!(v["token"], "K10x::server:sec");
        // K3s applies node-label/node-taint only when a node registers, and
        // a change would restart K3s for nothing: the node-labels phase
        // converges them through the API instead.
        assert!(v.get("node-label").is_none() && v.get("node-taint").is_none());
        assert!(v.get("tls-san").is_none());
    }

    #[test]
    fn rendering_is_deterministic() {
        let inv = inv();
        let s = Secret::new("t");
        assert_eq!(
            agent_config(&inv, &inv.nodes[1], &s),
            agent_config(&inv, &inv.nodes[1], &s)
        );
        assert!(unit_file(Role::Server).contains("Type=notify"));
        assert!(unit_file(Role::Agent).contains("ExecStart=/usr/local/bin/k3s agent"));
    }
}
