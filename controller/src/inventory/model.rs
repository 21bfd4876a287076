//! The validated inventory as plain data: what the rest of pictl reads.
//!
//! Nothing here parses, reads files or talks to a node; the loader
//! ([`super::load`]) is the only way to build an [`Inventory`] from a file,
//! and the transport takes the SSH settings from here (not the reverse).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::arch::Arch;

/// Inventories larger than this are refused before parsing.
pub const MAX_INVENTORY_BYTES: usize = 1 << 20;

/// Where the K3s release binaries and checksum files are downloaded from.
pub const DEFAULT_MIRROR: &str = "https://github.com/k3s-io/k3s/releases/download";

/// K3s's public channel server (the install script's default).
pub const DEFAULT_CHANNEL_URL: &str = "https://update.k3s.io/v1-release/channels";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The file this was loaded from.
    pub source: PathBuf,
    pub cluster: Cluster,
    pub nodes: Vec<Node>,
    pub workload: Workload,
    pub agent: AgentSettings,
    /// `[registries]`: K3s's `registries.yaml` on every node; `None`: the
    /// file is not pictl's (left as it is).
    pub registries: Option<Registries>,
}

/// The health agent pictl installs on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    pub enabled: bool,
    /// Agent binaries per arch; without one, the `pictl-agent` next to the
    /// running `pictl` serves nodes of the controller's own arch.
    pub binaries: BTreeMap<Arch, PathBuf>,
    /// Where the agent's `/metrics` can be scraped from besides loopback.
    pub metrics: AgentMetrics,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            binaries: BTreeMap::new(),
            metrics: AgentMetrics::Loopback,
        }
    }
}

/// `[agent] metrics`: who can scrape an agent's `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentMetrics {
    /// Only the node itself (`127.0.0.1:9750`).
    #[default]
    Loopback,
    /// Also Pods, on the node's pod-network address (its `cni0` bridge, the
    /// first address of its podCIDR), answering only peers in the cluster's
    /// pod CIDR: an in-cluster Prometheus scrapes it, the LAN cannot.
    PodNetwork,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub k3s: K3sRelease,
    pub mirror: String,
    /// Where release channels are resolved (only used with `channel`).
    pub channel_url: String,
    /// Whether the release (pinned or a channel's answer) may be older than
    /// a node runs (`allow_downgrade = true`); refused otherwise, as K3s does
    /// not support downgrades.
    pub allow_downgrade: bool,
    /// Give servers that run without an agent token one (`add_agent_token =
    /// true`): each server restarts once, one at a time, and the agents move
    /// to the `K10<hash>::node:` form. Off: such a cluster is kept as it is.
    pub add_agent_token: bool,
    /// Install the release's `k3s-airgap-images-<arch>.tar.zst` on every
    /// node (`airgap_images = true`), so K3s starts its system pods
    /// without pulling from a registry.
    pub airgap_images: bool,
    pub token: SecretSource,
    /// The agents' join secret (`agent-token`): `{ env }`/`{ file }`, or
    /// generated once into the state directory (the default).
    pub agent_token: SecretSource,
    /// Address clients use for the API (kubeconfig, agents' `server:`); the
    /// first server's address when not set.
    pub api_address: Option<String>,
    pub tls_san: Vec<String>,
    pub ha: bool,
    /// Extra K3s settings (config.yaml keys) for every server / every agent.
    pub server_config: K3sSettings,
    pub agent_config: K3sSettings,
    /// Local directory for the generated token, the apply lock and fetched
    /// kubeconfig.
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum K3sRelease {
    /// An exact release, `vX.Y.Z+k3sN`.
    Version(String),
    /// A release channel (`stable`, `latest`, `v1.32`), resolved at apply time.
    Channel(String),
}

/// Where a secret comes from; never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    /// A file that must be 0600 (or stricter).
    File(PathBuf),
    /// Generated once by pictl and kept in the state directory (0600).
    Generated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
}

/// How to prove who we are to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshAuth {
    /// An OpenSSH private key file; if it is encrypted, the passphrase is
    /// read from the environment variable `passphrase_env` when set.
    Key {
        path: PathBuf,
        passphrase_env: Option<String>,
    },
    /// The keys held by the ssh-agent at `SSH_AUTH_SOCK`.
    Agent,
}

/// Host-key checking policy, as in OpenSSH's `StrictHostKeyChecking`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Unknown hosts are refused (the default).
    #[default]
    Strict,
    /// Unknown hosts are trusted on first use and recorded; a changed key is
    /// still refused.
    AcceptNew,
}

/// How to reach one node, after merging `[ssh]` with the node's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub auth: SshAuth,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    pub sudo: bool,
    pub sudo_password: Option<SecretSource>,
    pub connect_timeout: Duration,
    /// Where SSH connects when ssh_config's `HostName` names another place
    /// for the node's `address` (which K3s and the other nodes still use).
    pub host_name: Option<String>,
    /// The jump hosts to go through, first hop first (`proxy_jump`, or
    /// ssh_config's `ProxyJump`); empty: the node is reached directly.
    pub proxy_jump: Vec<JumpHost>,
}

/// One jump host (OpenSSH's `ProxyJump`), settled: its host key is checked
/// against `known_hosts` under the node's policy, as a node's is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    /// As written in `proxy_jump` (an ssh_config alias or an address), for messages.
    pub name: String,
    /// Where to connect (ssh_config's `HostName`, else `name`); also the
    /// known_hosts lookup name.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    pub known_hosts: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub address: String,
    pub role: Role,
    pub ssh: SshSettings,
    /// The arch the operator expects; a mismatch with the detected one is an error.
    pub arch: Option<Arch>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
    /// Extra K3s settings for this node (over the cluster's for its role).
    pub k3s_config: K3sSettings,
    /// Settings found on the node (from install.sh) that pictl may drop
    /// when it takes the node over.
    pub adopt_drop: Vec<String>,
    /// Where K3s imports image archives from on this node
    /// (`<data-dir>/agent/images`), when `[cluster] airgap_images` is on.
    pub airgap_images: Option<String>,
}

/// A K3s setting's value, typed by its flag (`config.yaml` shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum K3sValue {
    Bool(bool),
    One(String),
    Many(Vec<String>),
    /// A secret-bearing setting (`datastore-endpoint`, `etcd-s3-secret-key`,
    /// …): where it comes from, then its value once a run read it.
    Secret(SecretSetting),
}

/// A secret an inventory names by its source: as loaded, only the source;
/// a run resolves it ([`crate::runner`]) before anything is rendered.
/// Neither form ever formats the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSetting {
    From(SecretSource),
    Value(crate::secret::Secret),
}

impl serde::Serialize for SecretSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SecretSetting::Value(v) => s.serialize_str(v.expose()),
            SecretSetting::From(_) => Err(serde::ser::Error::custom(
                "a secret setting was rendered before the run read it",
            )),
        }
    }
}

impl std::fmt::Display for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSetting::From(SecretSource::Env(v)) => write!(f, "{{ env = \"{v}\" }}"),
            SecretSetting::From(SecretSource::File(p)) => {
                write!(f, "{{ file = \"{}\" }}", p.display())
            }
            SecretSetting::From(SecretSource::Generated) => f.write_str("generate"),
            SecretSetting::Value(_) => f.write_str(crate::secret::REDACTED),
        }
    }
}

/// `[registries]`: K3s's `/etc/rancher/k3s/registries.yaml`, as K3s
/// documents it (docs.k3s.io/installation/private-registry; the shape is
/// rancher/wharfie's `registries.Registry`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Registries {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Mirror {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoint: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RegistryConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegistryAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RegistryTls>,
}

/// Credentials: every secret only by `{ env }`/`{ file }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RegistryAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSetting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<SecretSetting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_token: Option<SecretSetting>,
}

/// Files on the node (K3s reads them there) and the verify switch.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RegistryTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

impl Registries {
    /// Every secret setting with where it is (`"host" password`), to be
    /// read by a run.
    pub fn secrets_mut(&mut self) -> impl Iterator<Item = (String, &mut SecretSetting)> {
        self.configs.iter_mut().flat_map(|(host, c)| {
            let fields = c.auth.as_mut().map(|a| {
                [
                    ("password", &mut a.password),
                    ("auth", &mut a.auth),
                    ("identity_token", &mut a.identity_token),
                ]
            });
            fields
                .into_iter()
                .flatten()
                .filter_map(move |(k, v)| Some((format!("\"{host}\" {k}"), v.as_mut()?)))
        })
    }
}

impl std::fmt::Display for K3sValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            K3sValue::Bool(b) => write!(f, "{b}"),
            K3sValue::One(s) => f.write_str(s),
            K3sValue::Many(v) => write!(f, "[{}]", v.join(", ")),
            K3sValue::Secret(s) => write!(f, "{s}"),
        }
    }
}

/// K3s's default `cluster-cidr` (pkg/cli/cmds/server.go).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// config.yaml key → value.
pub type K3sSettings = BTreeMap<String, K3sValue>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// Directories of manifests to apply, in order.
    pub playbooks: Vec<PathBuf>,
    /// Whether every container image must be shown to run on every node's arch.
    pub image_arch_check: ImageArchCheck,
}

/// The image-architecture preflight (the playson incident: an amd64-only
/// image crash-looping on arm64 Pis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageArchCheck {
    /// An image that lacks a node's arch fails the playbook; a registry that
    /// cannot be asked is a warning.
    #[default]
    Warn,
    /// As `Warn`, and an image whose platforms cannot be read fails too.
    Require,
    /// No registry is contacted.
    Off,
}

impl Cluster {
    /// The cluster's IPv4 pod CIDRs: K3s's `cluster-cidr` (comma-separated
    /// or a list; IPv6 entries of a dual-stack cluster left out), default
    /// `10.42.0.0/16`. An entry that is not a CIDR is an error.
    pub fn pod_cidrs_v4(&self) -> Result<Vec<ipnet::Ipv4Net>, String> {
        let entries: Vec<String> = match self.server_config.get("cluster-cidr") {
            None => vec![DEFAULT_CLUSTER_CIDR.to_owned()],
            Some(K3sValue::One(s)) => vec![s.clone()],
            Some(K3sValue::Many(v)) => v.clone(),
            Some(K3sValue::Bool(b)) => return Err(format!("cluster-cidr = {b} is not a CIDR")),
            Some(K3sValue::Secret(_)) => return Err("cluster-cidr is not a secret".into()),
        };
        let mut out = Vec::new();
        for entry in entries.iter().flat_map(|e| e.split(',')).map(str::trim) {
            match entry.parse::<ipnet::IpNet>() {
                Ok(ipnet::IpNet::V4(net)) => out.push(net.trunc()),
                Ok(ipnet::IpNet::V6(_)) => {}
                Err(_) => return Err(format!("cluster-cidr {entry:?} is not a CIDR")),
            }
        }
        Ok(out)
    }
}

impl Inventory {
    pub fn servers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Server)
    }

    pub fn agents(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Agent)
    }

    /// The address clients and agents use to reach the API.
    pub fn api_address(&self) -> &str {
        if let Some(a) = &self.cluster.api_address {
            return a;
        }
        self.servers()
            .next()
            .map_or("127.0.0.1", |n| n.address.as_str())
    }
}
