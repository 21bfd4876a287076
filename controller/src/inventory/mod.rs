//! The inventory: one TOML file describing a cluster, its nodes and how to
//! reach them.
//!
//! Raw bytes → toml's spanned tree ([`reader`]) → validated [`Inventory`].
//! Loading never stops at the first problem: it returns every [`Diagnostic`]
//! at once, each with `file:line:col`, key path and a hint. Nothing here does
//! network I/O; the only file-system reads are the inventory itself and the
//! metadata of files it names (identity file, secret files, playbooks).

pub mod diagnostic;
mod reader;
pub mod rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

use crate::arch::Arch;
/// SSH authentication and host-key policy are the transport's own types.
pub use crate::transport::{Auth as SshAuth, HostKeyPolicy};
use diagnostic::Sink;
pub use diagnostic::{Diagnostic, Diagnostics};
use reader::{Located, TableReader};

/// Inventories larger than this are refused before parsing.
pub const MAX_INVENTORY_BYTES: usize = 1 << 20;

/// Where the K3s release binaries and checksum files are downloaded from.
pub const DEFAULT_MIRROR: &str = "https://github.com/k3s-io/k3s/releases/download";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The file this was loaded from.
    pub source: PathBuf,
    pub cluster: Cluster,
    pub nodes: Vec<Node>,
    pub workload: Workload,
    pub agent: AgentSettings,
}

/// The health agent pictl installs on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    pub enabled: bool,
    /// Agent binaries per arch; without one, the `pictl-agent` next to the
    /// running `pictl` serves nodes of the controller's own arch.
    pub binaries: BTreeMap<Arch, PathBuf>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            binaries: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub k3s: K3sRelease,
    pub mirror: String,
    /// Where release channels are resolved (only used with `channel`).
    pub channel_url: String,
    pub token: SecretSource,
    /// Address clients use for the API (kubeconfig, agents' `server:`); the
    /// first server's address when not set.
    pub api_address: Option<String>,
    pub tls_san: Vec<String>,
    pub ha: bool,
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
}

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

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Inventory, Diagnostics> {
        let display = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                return Err(Diagnostics(vec![Diagnostic {
                    file: display,
                    line: 1,
                    col: 1,
                    key_path: String::new(),
                    message: format!("cannot read the inventory: {e}"),
                    hint: Some("pass the file with -i/--inventory".into()),
                }]));
            }
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut inv = Self::parse_bytes(&bytes, &display, &base)?;
        inv.source = path.to_path_buf();
        Ok(inv)
    }

    /// Validates inventory bytes; relative paths are resolved against `base_dir`.
    pub fn parse_bytes(
        bytes: &[u8],
        file: &str,
        base_dir: &Path,
    ) -> Result<Inventory, Diagnostics> {
        let whole_file = |message: String, hint: &str, line, col| {
            Diagnostics(vec![Diagnostic {
                file: file.to_string(),
                line,
                col,
                key_path: String::new(),
                message,
                hint: Some(hint.to_string()),
            }])
        };
        if bytes.len() > MAX_INVENTORY_BYTES {
            return Err(whole_file(
                format!(
                    "the file is {} bytes, more than the 1 MiB an inventory may be",
                    bytes.len()
                ),
                "is this the right file?",
                1,
                1,
            ));
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
                let (line, col) = diagnostic::line_col(valid, valid.len());
                return Err(whole_file(
                    format!("byte {} is not valid UTF-8", e.valid_up_to()),
                    "an inventory is a UTF-8 TOML text file",
                    line,
                    col,
                ));
            }
        };
        Self::parse(text, file, base_dir)
    }

    /// Validates inventory text; relative paths are resolved against `base_dir`.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Inventory, Diagnostics> {
        let mut sink = Sink::new(file, text);
        let (doc, syntax_errors) = DeTable::parse_recoverable(text);
        if !syntax_errors.is_empty() {
            for e in syntax_errors {
                let span = e.span().unwrap_or(0..0);
                sink.report(
                    span,
                    "",
                    format!("TOML syntax: {}", e.message().trim()),
                    None,
                );
            }
            return Err(Diagnostics(sink.finish()));
        }
        let root = TableReader::new(String::new(), doc.span(), doc.get_ref());
        let inv = Loader {
            sink: &mut sink,
            base_dir,
            text,
        }
        .load(&root);
        if sink.is_empty() {
            // `load` returns Some whenever it reported nothing.
            if let Some(mut inv) = inv {
                inv.source = PathBuf::from(file);
                return Ok(inv);
            }
        }
        let found = sink.finish();
        if found.is_empty() {
            // Unreachable by construction; never turn it into a panic.
            return Err(Diagnostics(vec![Diagnostic {
                file: file.to_string(),
                line: 1,
                col: 1,
                key_path: String::new(),
                message: "the inventory is invalid".into(),
                hint: None,
            }]));
        }
        Err(Diagnostics(found))
    }

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

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Expands `~/` and resolves relative paths against the inventory's folder.
pub fn resolve_path(base_dir: &Path, raw: &str) -> PathBuf {
    if let Some(rest) = raw.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let p = PathBuf::from(raw);
    normalize(&if p.is_absolute() { p } else { base_dir.join(p) })
}

/// Removes `.` and `name/..` lexically, so messages show `.lab/key`, not
/// `inventory/../.lab/key` (symlinks are not resolved: nothing is read).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// Default per-cluster state directory (`$XDG_STATE_HOME/pictl/<cluster>`).
pub fn default_state_dir(cluster: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".local/state"))
                .unwrap_or_else(|| PathBuf::from("/var/lib"))
        });
    base.join("pictl").join(cluster)
}

/// Raw `[ssh]` or `[nodes.ssh]` values before merging.
#[derive(Default, Clone)]
struct RawSsh {
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    agent: Option<bool>,
    passphrase_env: Option<String>,
    known_hosts: Option<PathBuf>,
    host_key_policy: Option<HostKeyPolicy>,
    sudo: Option<bool>,
    sudo_password: Option<SecretSource>,
    connect_timeout: Option<Duration>,
}

impl RawSsh {
    fn merged_over(&self, base: &RawSsh) -> RawSsh {
        RawSsh {
            user: self.user.clone().or_else(|| base.user.clone()),
            port: self.port.or(base.port),
            // A node naming a key or the agent replaces the default's choice.
            identity_file: if self.identity_file.is_some() || self.agent == Some(true) {
                self.identity_file.clone()
            } else {
                base.identity_file.clone()
            },
            agent: self.agent.or(if self.identity_file.is_some() {
                None
            } else {
                base.agent
            }),
            passphrase_env: self
                .passphrase_env
                .clone()
                .or_else(|| base.passphrase_env.clone()),
            known_hosts: self
                .known_hosts
                .clone()
                .or_else(|| base.known_hosts.clone()),
            host_key_policy: self.host_key_policy.or(base.host_key_policy),
            sudo: self.sudo.or(base.sudo),
            sudo_password: self
                .sudo_password
                .clone()
                .or_else(|| base.sudo_password.clone()),
            connect_timeout: self.connect_timeout.or(base.connect_timeout),
        }
    }

    fn settle(self) -> SshSettings {
        let user = self.user.unwrap_or_else(|| "root".to_string());
        let sudo = self.sudo.unwrap_or(user != "root");
        let auth = match self.identity_file {
            Some(path) => SshAuth::Key {
                path,
                passphrase_env: self.passphrase_env,
            },
            None => SshAuth::Agent,
        };
        SshSettings {
            port: self.port.unwrap_or(22),
            auth,
            known_hosts: self
                .known_hosts
                .unwrap_or_else(|| resolve_path(Path::new("/"), "~/.ssh/known_hosts")),
            host_key_policy: self.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
            sudo,
            sudo_password: self.sudo_password,
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(10)),
            user,
        }
    }
}

struct Loader<'s, 'a> {
    sink: &'s mut Sink<'a>,
    base_dir: &'s Path,
    text: &'a str,
}

const ROOT_KEYS: &[&str] = &["cluster", "ssh", "nodes", "workload", "agent"];
const CLUSTER_KEYS: &[&str] = &[
    "name",
    "k3s_version",
    "channel",
    "channel_url",
    "mirror",
    "allow_http_mirror",
    "token",
    "api_address",
    "tls_san",
    "ha",
    "state_dir",
];
const SSH_KEYS: &[&str] = &[
    "user",
    "port",
    "identity_file",
    "agent",
    "passphrase_env",
    "known_hosts",
    "host_key_policy",
    "sudo",
    "sudo_password",
    "connect_timeout",
];
const NODE_KEYS: &[&str] = &["name", "address", "role", "arch", "labels", "taints", "ssh"];
const WORKLOAD_KEYS: &[&str] = &["playbooks", "image_arch_check"];

impl Loader<'_, '_> {
    fn load(&mut self, root: &TableReader<'_, '_>) -> Option<Inventory> {
        root.deny_unknown(self.sink, ROOT_KEYS);
        let cluster = match root.table(self.sink, "cluster") {
            Some(t) => self.cluster(&t),
            None => {
                if root.get("cluster").is_none() {
                    self.sink.report(
                        0..0,
                        "cluster",
                        "missing table [cluster]",
                        Some("add [cluster] with at least name and k3s_version".into()),
                    );
                }
                None
            }
        };
        let ssh_defaults = match root.table(self.sink, "ssh") {
            Some(t) => self.ssh(&t),
            None => RawSsh::default(),
        };
        let nodes = self.nodes(root, &ssh_defaults, cluster.as_ref().map(|c| c.ha));
        let workload = match root.table(self.sink, "workload") {
            Some(t) => self.workload(&t),
            None => Workload::default(),
        };
        let agent = match root.table(self.sink, "agent") {
            Some(t) => self.agent(&t),
            None => AgentSettings::default(),
        };
        Some(Inventory {
            source: PathBuf::new(),
            cluster: cluster?,
            nodes,
            workload,
            agent,
        })
    }

    fn required_str(
        &mut self,
        t: &TableReader<'_, '_>,
        key: &str,
        hint: &str,
    ) -> Option<Located<String>> {
        if t.get(key).is_none() {
            self.sink.report(
                t.span.clone(),
                &reader::join(&t.path, key),
                format!("missing required key \"{key}\""),
                Some(hint.to_string()),
            );
            return None;
        }
        t.str(self.sink, key)
    }

    fn cluster(&mut self, t: &TableReader<'_, '_>) -> Option<Cluster> {
        t.deny_unknown(self.sink, CLUSTER_KEYS);
        let name = self.required_str(t, "name", "a short cluster name, e.g. name = \"playson\"");
        if let Some(n) = &name
            && let Err(why) = rules::dns_label(&n.value)
        {
            self.sink.report(
                n.span.clone(),
                &n.path,
                why,
                Some("use lowercase letters, digits and '-'".into()),
            );
        }
        let version = t.str(self.sink, "k3s_version");
        let channel = t.str(self.sink, "channel");
        let k3s = match (version, channel) {
            (Some(v), None) => {
                if !rules::is_k3s_version(&v.value) {
                    self.sink.report(
                        v.span.clone(),
                        &v.path,
                        format!("\"{}\" is not a K3s release version", v.value),
                        Some("expected vX.Y.Z+k3sN, e.g. \"v1.32.5+k3s1\"".into()),
                    );
                }
                Some(K3sRelease::Version(v.value))
            }
            (None, Some(c)) => {
                if !rules::is_channel(&c.value) {
                    self.sink.report(
                        c.span.clone(),
                        &c.path,
                        format!("\"{}\" is not a K3s channel", c.value),
                        Some("expected \"stable\", \"latest\", \"testing\" or a minor like \"v1.32\"".into()),
                    );
                }
                Some(K3sRelease::Channel(c.value))
            }
            (Some(_), Some(c)) => {
                self.sink.report(
                    c.span.clone(),
                    &c.path,
                    "both k3s_version and channel are set",
                    Some("pin a version (reproducible) or follow a channel, not both".into()),
                );
                None
            }
            (None, None) => {
                if t.get("k3s_version").is_none() && t.get("channel").is_none() {
                    self.sink.report(
                        t.span.clone(),
                        &reader::join(&t.path, "k3s_version"),
                        "missing required key \"k3s_version\"",
                        Some(
                            "pin a release, e.g. k3s_version = \"v1.32.5+k3s1\" (or set channel)"
                                .into(),
                        ),
                    );
                }
                None
            }
        };
        let mirror = self.url(t, "mirror", DEFAULT_MIRROR);
        let allow_http = t
            .bool(self.sink, "allow_http_mirror")
            .is_some_and(|b| b.value);
        if let Some(m) = t
            .str(self.sink, "mirror")
            .filter(|m| m.value.starts_with("http://") && !allow_http)
        {
            self.sink.report(
                m.span.clone(),
                &m.path,
                "a plain-http mirror lets anyone on the path swap both the binaries and their checksums",
                Some("use https, or set allow_http_mirror = true for a mirror on a network you trust (a lab)".into()),
            );
        }
        let channel_url = self.url(t, "channel_url", crate::channel::DEFAULT_CHANNEL_URL);
        let token = self
            .secret(t, "token", true)
            .unwrap_or(SecretSource::Generated);
        let api_address = t.str(self.sink, "api_address").map(|a| {
            if let Err(why) = rules::address(&a.value) {
                self.sink.report(
                    a.span.clone(),
                    &a.path,
                    why,
                    Some("an IP address or a DNS name".into()),
                );
            }
            a.value
        });
        let tls_san = t
            .str_list(self.sink, "tls_san")
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                if let Err(why) = rules::address(&s.value) {
                    self.sink.report(
                        s.span.clone(),
                        &s.path,
                        why,
                        Some("an IP address or a DNS name".into()),
                    );
                }
                s.value
            })
            .collect();
        let ha = t.bool(self.sink, "ha").is_some_and(|b| b.value);
        let state_dir = t
            .str(self.sink, "state_dir")
            .map(|s| resolve_path(self.base_dir, &s.value));
        let name = name?.value;
        Some(Cluster {
            state_dir: state_dir.unwrap_or_else(|| default_state_dir(&name)),
            name,
            k3s: k3s?,
            mirror,
            channel_url,
            token,
            api_address,
            tls_san,
            ha,
        })
    }

    /// An http(s) URL (trailing slashes dropped), or `default` when absent.
    fn url(&mut self, t: &TableReader<'_, '_>, key: &str, default: &str) -> String {
        let Some(m) = t.str(self.sink, key) else {
            return default.to_string();
        };
        let rest = m
            .value
            .strip_prefix("https://")
            .or_else(|| m.value.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            self.sink.report(
                m.span.clone(),
                &m.path,
                format!("\"{}\" is not an http(s) URL", m.value),
                Some(format!("e.g. \"{default}\"")),
            );
        }
        m.value.trim_end_matches('/').to_string()
    }

    /// A secret source: `{ env = "VAR" }` or `{ file = "path" }`; a plain
    /// string is refused because it would be the secret in clear text.
    fn secret(
        &mut self,
        t: &TableReader<'_, '_>,
        key: &str,
        may_generate: bool,
    ) -> Option<SecretSource> {
        let (path, item) = t.get(key)?;
        let generate_hint = if may_generate {
            ", or leave it out to let pictl generate one"
        } else {
            ""
        };
        match item.value.get_ref() {
            toml::de::DeValue::String(s) if may_generate && s.as_ref() == "generate" => {
                Some(SecretSource::Generated)
            }
            toml::de::DeValue::String(_) => {
                self.sink.report(
                    item.span(),
                    &path,
                    format!("{key} is written in clear text in the inventory"),
                    Some(format!(
                        "use {key} = {{ env = \"VAR\" }} or {key} = {{ file = \"path\" }} (mode 0600){generate_hint}"
                    )),
                );
                None
            }
            toml::de::DeValue::Table(inner) => {
                let r = TableReader::new(path.clone(), item.span(), inner);
                r.deny_unknown(self.sink, &["env", "file"]);
                match (r.str(self.sink, "env"), r.str(self.sink, "file")) {
                    (Some(e), None) => {
                        if !rules::is_env_name(&e.value) {
                            self.sink.report(
                                e.span.clone(),
                                &e.path,
                                format!("\"{}\" is not an environment variable name", e.value),
                                Some("letters, digits and '_', not starting with a digit".into()),
                            );
                        }
                        Some(SecretSource::Env(e.value))
                    }
                    (None, Some(f)) => {
                        let p = resolve_path(self.base_dir, &f.value);
                        self.check_private_file(&p, &f, false);
                        Some(SecretSource::File(p))
                    }
                    _ => {
                        self.sink.report(
                            item.span(),
                            &path,
                            "a secret source needs exactly one of env or file",
                            Some(format!(
                                "{key} = {{ env = \"VAR\" }} or {key} = {{ file = \"path\" }}"
                            )),
                        );
                        None
                    }
                }
            }
            _ => {
                reader::type_error(
                    self.sink,
                    &path,
                    &item,
                    "a table { env = \"VAR\" } or { file = \"path\" }",
                );
                None
            }
        }
    }

    /// A file holding a secret or a private key must exist and not be
    /// readable by group or others.
    fn check_private_file(&mut self, p: &Path, at: &Located<String>, is_key: bool) {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(p) {
            Err(e) => self.sink.report(
                at.span.clone(),
                &at.path,
                format!("{} does not exist or cannot be read: {e}", p.display()),
                Some(if is_key {
                    "create a key with ssh-keygen -t ed25519, or set agent = true".into()
                } else {
                    "create it with mode 0600".into()
                }),
            ),
            Ok(m) if !m.is_file() => self.sink.report(
                at.span.clone(),
                &at.path,
                format!("{} is not a regular file", p.display()),
                None,
            ),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => self.sink.report(
                at.span.clone(),
                &at.path,
                format!(
                    "{} is readable by other users (mode {:04o})",
                    p.display(),
                    m.permissions().mode() & 0o7777
                ),
                Some(format!("chmod 600 {}", p.display())),
            ),
            Ok(_) => {}
        }
    }

    fn ssh(&mut self, t: &TableReader<'_, '_>) -> RawSsh {
        t.deny_unknown(self.sink, SSH_KEYS);
        let mut raw = RawSsh {
            user: t.str(self.sink, "user").map(|u| u.value),
            ..RawSsh::default()
        };
        if let Some(u) = t.str(self.sink, "user")
            && let Err(why) = rules::unix_user(&u.value)
        {
            self.sink.report(u.span.clone(), &u.path, why, None);
        }
        raw.port = t
            .int(self.sink, "port", 1, 65535)
            .and_then(|p| u16::try_from(p.value).ok());
        let identity = t.str(self.sink, "identity_file");
        let agent = t.bool(self.sink, "agent");
        if let (Some(i), Some(a)) = (&identity, &agent)
            && a.value
        {
            self.sink.report(
                a.span.clone(),
                &a.path,
                "both identity_file and agent = true are set",
                Some(format!("keep one; {} names identity_file", i.path)),
            );
        }
        if let Some(i) = &identity {
            let p = resolve_path(self.base_dir, &i.value);
            self.check_private_file(&p, i, true);
            raw.identity_file = Some(p);
        }
        raw.agent = agent.map(|a| a.value);
        raw.passphrase_env = t.str(self.sink, "passphrase_env").map(|e| {
            if !rules::is_env_name(&e.value) {
                self.sink.report(
                    e.span.clone(),
                    &e.path,
                    format!("\"{}\" is not an environment variable name", e.value),
                    None,
                );
            }
            e.value
        });
        raw.known_hosts = t
            .str(self.sink, "known_hosts")
            .map(|k| resolve_path(self.base_dir, &k.value));
        raw.host_key_policy = t.str(self.sink, "host_key_policy").and_then(|p| match p.value.as_str() {
            "strict" => Some(HostKeyPolicy::Strict),
            "accept-new" => Some(HostKeyPolicy::AcceptNew),
            other => {
                let hint = match other {
                    "no" | "off" | "none" | "insecure" | "false" => {
                        "pictl never turns host key checking off; use \"accept-new\" for a first contact".to_string()
                    }
                    _ => "expected \"strict\" or \"accept-new\"".to_string(),
                };
                self.sink.report(p.span.clone(), &p.path, format!("invalid host key policy \"{other}\""), Some(hint));
                None
            }
        });
        raw.sudo = t.bool(self.sink, "sudo").map(|b| b.value);
        raw.sudo_password = self.secret(t, "sudo_password", false);
        raw.connect_timeout = t
            .int(self.sink, "connect_timeout", 1, 600)
            .and_then(|s| u64::try_from(s.value).ok())
            .map(Duration::from_secs);
        raw
    }

    fn nodes(
        &mut self,
        root: &TableReader<'_, '_>,
        defaults: &RawSsh,
        ha: Option<bool>,
    ) -> Vec<Node> {
        let Some((path, item)) = root.get("nodes") else {
            self.sink.report(
                0..0,
                "nodes",
                "no nodes",
                Some("add at least one [[nodes]] with name, address and role = \"server\"".into()),
            );
            return Vec::new();
        };
        let toml::de::DeValue::Array(arr) = item.value.get_ref() else {
            reader::type_error(self.sink, &path, &item, "an array of tables ([[nodes]])");
            return Vec::new();
        };
        let mut nodes = Vec::new();
        let mut names: BTreeMap<String, Located<String>> = BTreeMap::new();
        let mut addrs: BTreeMap<String, Located<String>> = BTreeMap::new();
        let mut servers = Vec::new();
        let mut bad_roles = 0;
        for (i, v) in arr.iter().enumerate() {
            let p = format!("nodes[{i}]");
            let toml::de::DeValue::Table(inner) = v.get_ref() else {
                self.sink.report(
                    v.span(),
                    &p,
                    format!("expected a table, found {}", reader::kind_name(v.get_ref())),
                    Some("write each node as a [[nodes]] table".into()),
                );
                continue;
            };
            let t = TableReader::new(p.clone(), v.span(), inner);
            t.deny_unknown(self.sink, NODE_KEYS);
            let name = self.required_str(&t, "name", "the node's name, usually its hostname");
            if let Some(n) = &name {
                if let Err(why) = rules::node_name(&n.value) {
                    self.sink.report(
                        n.span.clone(),
                        &n.path,
                        why,
                        Some(
                            "a Kubernetes node name: lowercase letters, digits, '-' and '.'".into(),
                        ),
                    );
                } else if let Some(first) = names.get(&n.value) {
                    let (l, c) = diagnostic::line_col(self.text, first.span.start);
                    self.sink.report(
                        n.span.clone(),
                        &n.path,
                        format!("duplicate node name \"{}\"", n.value),
                        Some(format!(
                            "first used at line {l}, column {c} ({})",
                            first.path
                        )),
                    );
                } else {
                    names.insert(n.value.clone(), n.clone());
                }
            }
            let address = self.required_str(&t, "address", "the node's IP address or DNS name");
            if let Some(a) = &address {
                if let Err(why) = rules::address(&a.value) {
                    self.sink.report(
                        a.span.clone(),
                        &a.path,
                        why,
                        Some("an IP address or a DNS name".into()),
                    );
                } else if let Some(first) = addrs.get(&a.value.to_ascii_lowercase()) {
                    let (l, c) = diagnostic::line_col(self.text, first.span.start);
                    self.sink.report(
                        a.span.clone(),
                        &a.path,
                        format!("duplicate node address \"{}\"", a.value),
                        Some(format!(
                            "first used at line {l}, column {c} ({})",
                            first.path
                        )),
                    );
                } else {
                    addrs.insert(a.value.to_ascii_lowercase(), a.clone());
                }
            }
            let role = match self.required_str(&t, "role", "role = \"server\" or role = \"agent\"")
            {
                Some(r) => match r.value.as_str() {
                    "server" => {
                        servers.push(r.clone());
                        Some(Role::Server)
                    }
                    "agent" => Some(Role::Agent),
                    other => {
                        let hint = match other {
                            "master" | "control-plane" | "controlplane" => {
                                "K3s calls a control-plane node \"server\"".to_string()
                            }
                            "worker" | "node" => "K3s calls a worker \"agent\"".to_string(),
                            _ => "expected \"server\" or \"agent\"".to_string(),
                        };
                        self.sink.report(
                            r.span.clone(),
                            &r.path,
                            format!("invalid role \"{other}\""),
                            Some(hint),
                        );
                        bad_roles += 1;
                        None
                    }
                },
                None => None,
            };
            let arch = t
                .str(self.sink, "arch")
                .and_then(|a| match a.value.parse::<Arch>() {
                    Ok(arch) => Some(arch),
                    Err(_) => {
                        self.sink.report(
                            a.span.clone(),
                            &a.path,
                            format!("unknown arch \"{}\"", a.value),
                            Some("expected \"amd64\", \"arm64\" or \"armhf\"".into()),
                        );
                        None
                    }
                });
            let labels = self.labels(&t);
            let taints = t
                .str_list(self.sink, "taints")
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| match rules::taint(&s.value) {
                    Ok(()) => Some(s.value),
                    Err(why) => {
                        self.sink.report(
                            s.span.clone(),
                            &s.path,
                            why,
                            Some("key=value:Effect with Effect one of NoSchedule, PreferNoSchedule, NoExecute".into()),
                        );
                        None
                    }
                })
                .collect();
            let node_ssh = match t.table(self.sink, "ssh") {
                Some(s) => self.ssh(&s),
                None => RawSsh::default(),
            };
            if let (Some(name), Some(address), Some(role)) = (name, address, role) {
                nodes.push(Node {
                    name: name.value,
                    address: address.value,
                    role,
                    ssh: node_ssh.merged_over(defaults).settle(),
                    arch,
                    labels,
                    taints,
                });
            }
        }
        if servers.is_empty() && !arr.is_empty() && bad_roles == 0 {
            self.sink.report(
                item.span(),
                "nodes",
                "no node has role = \"server\"",
                Some("a cluster needs one server (the control plane)".into()),
            );
        }
        if servers.len() > 1 && ha == Some(false) {
            let second = &servers[1];
            self.sink.report(
                second.span.clone(),
                &second.path,
                format!("{} servers but HA is not enabled", servers.len()),
                Some(
                    "set ha = true in [cluster] (embedded etcd), or make this node an agent".into(),
                ),
            );
        }
        if servers.len() > 1 && servers.len() % 2 == 0 && ha == Some(true) {
            self.sink.report(
                servers[servers.len() - 1].span.clone(),
                &servers[servers.len() - 1].path,
                format!(
                    "{} servers: an even number gives etcd no extra fault tolerance",
                    servers.len()
                ),
                Some("use an odd number of servers (3 or 5)".into()),
            );
        }
        nodes
    }

    fn labels(&mut self, t: &TableReader<'_, '_>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(lt) = t.table(self.sink, "labels") else {
            return out;
        };
        for (k, v) in lt.table.iter() {
            let key: &str = k.get_ref();
            let p = reader::join(&lt.path, key);
            if let Err(why) = rules::label_key(key) {
                self.sink.report(
                    k.span(),
                    &p,
                    why,
                    Some("a Kubernetes label key, e.g. \"example.com/zone\"".into()),
                );
                continue;
            }
            match v.get_ref() {
                toml::de::DeValue::String(s) => match rules::label_value(s) {
                    Ok(()) => {
                        out.insert(key.to_string(), s.to_string());
                    }
                    Err(why) => self.sink.report(v.span(), &p, why, None),
                },
                other => self.sink.report(
                    v.span(),
                    &p,
                    format!("expected a string, found {}", reader::kind_name(other)),
                    None,
                ),
            }
        }
        out
    }

    fn agent(&mut self, t: &TableReader<'_, '_>) -> AgentSettings {
        t.deny_unknown(self.sink, &["enabled", "binaries"]);
        let mut settings = AgentSettings::default();
        if let Some(b) = t.bool(self.sink, "enabled") {
            settings.enabled = b.value;
        }
        if let Some(bins) = t.table(self.sink, "binaries") {
            bins.deny_unknown(self.sink, &["amd64", "arm64", "armhf"]);
            for arch in Arch::ALL {
                if let Some(p) = bins.str(self.sink, arch.name()) {
                    let path = resolve_path(self.base_dir, &p.value);
                    if !path.is_file() {
                        self.sink.report(
                            p.span.clone(),
                            &p.path,
                            format!("{} is not a file", path.display()),
                            Some(format!(
                                "build it, e.g. cargo zigbuild --release -p pictl-agent --target {}",
                                arch.musl_target()
                            )),
                        );
                    }
                    settings.binaries.insert(arch, path);
                }
            }
        }
        settings
    }

    fn workload(&mut self, t: &TableReader<'_, '_>) -> Workload {
        t.deny_unknown(self.sink, WORKLOAD_KEYS);
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let playbooks = t
            .str_list(self.sink, "playbooks")
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let dir = resolve_path(self.base_dir, &p.value);
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if let Some(first) = names.insert(name.clone(), p.path.clone()) {
                    self.sink.report(
                        p.span.clone(),
                        &p.path,
                        format!("a second playbook named \"{name}\""),
                        Some(format!(
                            "a playbook's directory name names its set of objects (pruning included); rename one ({first} has it)"
                        )),
                    );
                }
                if !dir.is_dir() {
                    self.sink.report(
                        p.span.clone(),
                        &p.path,
                        format!("{} is not a directory", dir.display()),
                        Some("paths are relative to the inventory file".into()),
                    );
                }
                dir
            })
            .collect();
        let image_arch_check = match t.str(self.sink, "image_arch_check") {
            None => ImageArchCheck::default(),
            Some(v) => match v.value.as_str() {
                "warn" => ImageArchCheck::Warn,
                "require" => ImageArchCheck::Require,
                "off" => ImageArchCheck::Off,
                other => {
                    self.sink.report(
                        v.span.clone(),
                        &v.path,
                        format!("invalid image_arch_check \"{other}\""),
                        Some("expected \"warn\", \"require\" or \"off\"".into()),
                    );
                    ImageArchCheck::default()
                }
            },
        };
        Workload {
            playbooks,
            image_arch_check,
        }
    }
}
