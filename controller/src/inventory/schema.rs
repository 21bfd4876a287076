//! The inventory's JSON Schema (draft 2020-12), for editors: taplo / Even
//! Better TOML read it through the `#:schema` directive on an inventory's
//! first line and complete keys, show their docs and flag unknown keys and
//! wrong types while the file is typed.
//!
//! The edge: the schema says what the loader's shape is (keys, types,
//! required keys, enumerations); the loader ([`super::load`]) stays the
//! judge of everything else (addresses, versions, files on disk, rules
//! across nodes). The key lists here are kept equal to the loader's by a
//! test, so a key added to one and not the other fails the build's tests.

use serde_json::{Map, Value, json};

use crate::arch::Arch;

/// The type of one key's value, as the loader reads it.
enum Ty {
    Str,
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    StrList,
    Enum(&'static [&'static str]),
    Arch,
    /// `{ env = "VAR" }` or `{ file = "path" }`; with `generate`, also the
    /// string "generate".
    Secret {
        generate: bool,
    },
    Table(&'static Table),
    /// A table defined once under `$defs` (the SSH settings).
    Def(&'static str),
    /// An array of tables (`[[nodes]]`).
    Tables(&'static Table),
    /// Tables under names of the user's (registry hosts).
    Map(&'static Table),
    /// Any key, string values (labels).
    StrMap,
    /// K3s config.yaml keys: their names and kinds are K3s's flags, checked
    /// by `validate`; an editor can only know the shapes a value may take.
    K3sSettings,
}

struct Key {
    name: &'static str,
    ty: Ty,
    doc: &'static str,
}

/// One TOML table of the inventory.
pub struct Table {
    /// Where it sits, as the loader's key paths say it (`nodes[]` for each node).
    pub path: &'static str,
    doc: &'static str,
    keys: &'static [Key],
    required: &'static [&'static str],
    /// Exactly one of these keys must be set.
    exactly_one_of: &'static [&'static str],
}

const fn key(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key { name, ty, doc }
}

const ROOT: Table = Table {
    path: "",
    doc: "A pictl inventory: one K3s cluster, its nodes and how to reach them.",
    keys: &[
        key("cluster", Ty::Table(&CLUSTER), CLUSTER.doc),
        key(
            "ssh",
            Ty::Def("ssh"),
            "How to reach the nodes over SSH (each node may override it in [nodes.ssh]).",
        ),
        key("nodes", Ty::Tables(&NODE), NODE.doc),
        key("workload", Ty::Table(&WORKLOAD), WORKLOAD.doc),
        key("agent", Ty::Table(&AGENT), AGENT.doc),
        key("registries", Ty::Table(&REGISTRIES), REGISTRIES.doc),
    ],
    required: &["cluster", "nodes"],
    exactly_one_of: &[],
};

const CLUSTER: Table = Table {
    path: "cluster",
    doc: "The cluster: its name, the K3s release, where binaries come from, the join token.",
    keys: &[
        key(
            "name",
            Ty::Str,
            "Short cluster name (a DNS label): the kubeconfig context and the state directory.",
        ),
        key(
            "k3s_version",
            Ty::Str,
            "An exact K3s release to pin, e.g. \"v1.32.5+k3s1\" (or set channel).",
        ),
        key(
            "channel",
            Ty::Str,
            "A K3s release channel to follow: \"stable\", \"latest\", \"testing\" or a minor like \"v1.32\".",
        ),
        key(
            "channel_url",
            Ty::Str,
            "Where channels are resolved (default: K3s's public channel server).",
        ),
        key(
            "mirror",
            Ty::Str,
            "Where K3s binaries and checksum files are downloaded from (https).",
        ),
        key(
            "allow_http_mirror",
            Ty::Bool,
            "Allow a plain-http mirror (only on a network you trust, e.g. a lab).",
        ),
        key(
            "allow_http_channel",
            Ty::Bool,
            "Allow a plain-http channel server (only on a network you trust).",
        ),
        key(
            "allow_downgrade",
            Ty::Bool,
            "Let k3s_version or a channel go to a release older than a node runs. K3s does not support downgrades: refused unless set.",
        ),
        key(
            "token",
            Ty::Secret { generate: true },
            "The join token's source: { env = \"VAR\" }, { file = \"path\" } (mode 0600), or \"generate\" (the default: kept in the state directory).",
        ),
        key(
            "agent_token",
            Ty::Secret { generate: true },
            "The agents' join secret: { env = \"VAR\" }, { file = \"path\" } (mode 0600), or \"generate\" (the default: kept in the state directory). A configured one is given to servers that run without one (each restarts once).",
        ),
        key(
            "add_agent_token",
            Ty::Bool,
            "Give servers that run without an agent token (install.sh's default) one: each restarts once, one at a time, and agents stop holding the server token.",
        ),
        key(
            "airgap_images",
            Ty::Bool,
            "Install the release's k3s-airgap-images-<arch>.tar.zst (verified against its sha256sum-<arch>.txt) in <data-dir>/agent/images on every node before K3s first starts, one transfer per arch over the controller's link: K3s imports K3s's own images (pause, coredns, metrics-server, ...) from it instead of pulling them. A changed archive is imported by K3s's image watcher without a restart; turning this off leaves the file.",
        ),
        key(
            "api_address",
            Ty::Str,
            "Address clients and agents use for the API (default: the first server's address).",
        ),
        key(
            "tls_san",
            Ty::StrList,
            "Extra names and addresses the API certificate must hold.",
        ),
        key(
            "ha",
            Ty::Bool,
            "Several servers with embedded etcd (use an odd number of servers).",
        ),
        key(
            "state_dir",
            Ty::Str,
            "Local directory for the generated token, the apply lock and the kubeconfig.",
        ),
        key(
            "server_config",
            Ty::K3sSettings,
            "Extra K3s settings (config.yaml keys, `k3s server` flags without dashes) for every server.",
        ),
        key(
            "agent_config",
            Ty::K3sSettings,
            "Extra K3s settings (config.yaml keys, `k3s agent` flags without dashes) for every agent.",
        ),
    ],
    required: &["name"],
    exactly_one_of: &["k3s_version", "channel"],
};

/// The SSH settings, shared by `[ssh]` and `[nodes.ssh]`.
const SSH: Table = Table {
    path: "ssh",
    doc: "How to reach a node over SSH.",
    keys: &[
        key(
            "user",
            Ty::Str,
            "The SSH user (default root); a non-root user needs sudo.",
        ),
        key(
            "port",
            Ty::Int { min: 1, max: 65535 },
            "SSH port (default 22).",
        ),
        key(
            "identity_file",
            Ty::Str,
            "An OpenSSH private key file (mode 0600); or set agent = true.",
        ),
        key(
            "agent",
            Ty::Bool,
            "Use the keys of the ssh-agent at $SSH_AUTH_SOCK.",
        ),
        key(
            "passphrase_env",
            Ty::Str,
            "Environment variable holding the identity file's passphrase.",
        ),
        key(
            "known_hosts",
            Ty::Str,
            "The known_hosts file host keys are checked against (default ~/.ssh/known_hosts).",
        ),
        key(
            "host_key_policy",
            Ty::Enum(&["strict", "accept-new"]),
            "\"strict\" (default): unknown hosts are refused; \"accept-new\": trusted on first contact and recorded. Never off.",
        ),
        key(
            "sudo",
            Ty::Bool,
            "Run privileged commands through sudo (default: when the user is not root).",
        ),
        key(
            "sudo_password",
            Ty::Secret { generate: false },
            "The sudo password's source: { env = \"VAR\" } or { file = \"path\" } (mode 0600).",
        ),
        key(
            "connect_timeout",
            Ty::Int { min: 1, max: 600 },
            "Seconds to wait for a connection (default 10).",
        ),
        key(
            "proxy_jump",
            Ty::Str,
            "Jump hosts to reach the node through, as OpenSSH's ProxyJump: \"[user@]host[:port]\", comma-separated, first hop first; \"none\" switches off an inherited one. Each hop's host key is checked like a node's.",
        ),
        key(
            "ssh_config",
            Ty::Str,
            "The ssh_config file read for Host aliases (HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile) where the inventory sets nothing (default ~/.ssh/config when it exists); \"none\" reads none.",
        ),
    ],
    required: &[],
    exactly_one_of: &[],
};

const NODE: Table = Table {
    path: "nodes[]",
    doc: "The cluster's nodes, one [[nodes]] table each.",
    keys: &[
        key(
            "name",
            Ty::Str,
            "The node's name in Kubernetes (usually its hostname).",
        ),
        key("address", Ty::Str, "The node's IP address or DNS name."),
        key(
            "role",
            Ty::Enum(&["server", "agent"]),
            "\"server\" (control plane) or \"agent\" (worker).",
        ),
        key(
            "arch",
            Ty::Arch,
            "The CPU architecture you expect; a node that is not fails early.",
        ),
        key("labels", Ty::StrMap, "Kubernetes labels for the Node."),
        key(
            "taints",
            Ty::StrList,
            "Taints for the Node: \"key=value:Effect\".",
        ),
        key("ssh", Ty::Def("ssh"), "This node's overrides of [ssh]."),
        key(
            "k3s_config",
            Ty::K3sSettings,
            "Extra K3s settings for this node (over the cluster's for its role).",
        ),
        key(
            "adopt_drop",
            Ty::StrList,
            "Settings found on a node installed by install.sh that pictl may drop when it takes the node over.",
        ),
    ],
    required: &["name", "address", "role"],
    exactly_one_of: &[],
};

const WORKLOAD: Table = Table {
    path: "workload",
    doc: "What runs on the cluster once the nodes converge.",
    keys: &[
        key(
            "playbooks",
            Ty::StrList,
            "Directories of manifests to apply, in order (relative to the inventory).",
        ),
        key(
            "image_arch_check",
            Ty::Enum(&["warn", "require", "off"]),
            "Whether every image must offer every node's arch: \"warn\" (default), \"require\" or \"off\".",
        ),
    ],
    required: &[],
    exactly_one_of: &[],
};

const AGENT: Table = Table {
    path: "agent",
    doc: "The health agent pictl installs on every node.",
    keys: &[
        key(
            "enabled",
            Ty::Bool,
            "Install the health agent (default true).",
        ),
        key("binaries", Ty::Table(&AGENT_BINARIES), AGENT_BINARIES.doc),
        key(
            "metrics",
            Ty::Enum(&["loopback", "pod-network"]),
            "Who can scrape the agent's /metrics: \"loopback\" (default, the node only) or \"pod-network\" (also Pods, on the node's cni0 address, answering only the cluster's pod CIDR; never the LAN).",
        ),
    ],
    required: &[],
    exactly_one_of: &[],
};

const AGENT_BINARIES: Table = Table {
    path: "agent.binaries",
    doc: "Agent binaries per arch (default: the pictl-agent beside pictl, for its own arch).",
    keys: &[
        key("amd64", Ty::Str, "The pictl-agent binary for amd64 nodes."),
        key("arm64", Ty::Str, "The pictl-agent binary for arm64 nodes."),
        key("armhf", Ty::Str, "The pictl-agent binary for armhf nodes."),
    ],
    required: &[],
    exactly_one_of: &[],
};

const REGISTRIES: Table = Table {
    path: "registries",
    doc: "K3s's /etc/rancher/k3s/registries.yaml on every node (mirrors, rewrites, auth, TLS, as K3s documents them), 0600; K3s restarts only when it changes. Without this table the file is left as it is.",
    keys: &[
        key("mirrors", Ty::Map(&MIRROR), MIRROR.doc),
        key("configs", Ty::Map(&REGISTRY_CONFIG), REGISTRY_CONFIG.doc),
    ],
    required: &[],
    exactly_one_of: &[],
};

const MIRROR: Table = Table {
    path: "registries.mirrors.*",
    doc: "Mirrors of one registry (\"docker.io\", \"registry.lan:5000\", or \"*\" for all), tried in order before the registry itself.",
    keys: &[
        key(
            "endpoint",
            Ty::StrList,
            "Endpoint URLs, e.g. [\"https://registry.lan:5000\"] (https when no scheme is given).",
        ),
        key(
            "rewrite",
            Ty::StrMap,
            "Image-name rewrites: regular expression = replacement, e.g. { \"^rancher/(.*)\" = \"mirror/rancher/$1\" }.",
        ),
    ],
    required: &[],
    exactly_one_of: &[],
};

const REGISTRY_CONFIG: Table = Table {
    path: "registries.configs.*",
    doc: "Credentials and TLS for one registry host (as its endpoint names it).",
    keys: &[
        key("auth", Ty::Table(&REGISTRY_AUTH), REGISTRY_AUTH.doc),
        key("tls", Ty::Table(&REGISTRY_TLS), REGISTRY_TLS.doc),
    ],
    required: &[],
    exactly_one_of: &[],
};

const REGISTRY_AUTH: Table = Table {
    path: "registries.configs.*.auth",
    doc: "Registry credentials; secrets only as { env = \"VAR\" } or { file = \"path\" }, never shown in a plan or log.",
    keys: &[
        key("username", Ty::Str, "Basic-auth user name."),
        key(
            "password",
            Ty::Secret { generate: false },
            "Basic-auth password: { env = \"VAR\" } or { file = \"path\" } (mode 0600).",
        ),
        key(
            "auth",
            Ty::Secret { generate: false },
            "A base64 user:password token instead of username/password.",
        ),
        key(
            "identity_token",
            Ty::Secret { generate: false },
            "An OAuth identity token.",
        ),
    ],
    required: &[],
    exactly_one_of: &[],
};

const REGISTRY_TLS: Table = Table {
    path: "registries.configs.*.tls",
    doc: "TLS towards the registry; files are paths on the node.",
    keys: &[
        key(
            "ca_file",
            Ty::Str,
            "CA bundle that signs the registry's certificate (absolute path on the node).",
        ),
        key("cert_file", Ty::Str, "Client certificate (with key_file)."),
        key("key_file", Ty::Str, "Client key (with cert_file)."),
        key(
            "insecure_skip_verify",
            Ty::Bool,
            "Skip verifying the registry's certificate (only for a lab).",
        ),
    ],
    required: &[],
    exactly_one_of: &[],
};

/// Every table of the inventory, each once.
pub const TABLES: &[&Table] = &[
    &ROOT,
    &CLUSTER,
    &SSH,
    &NODE,
    &WORKLOAD,
    &AGENT,
    &AGENT_BINARIES,
    &REGISTRIES,
    &MIRROR,
    &REGISTRY_CONFIG,
    &REGISTRY_AUTH,
    &REGISTRY_TLS,
];

impl Table {
    /// The keys the table may hold.
    pub fn key_names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }
}

/// The inventory's JSON Schema.
pub fn json_schema() -> Value {
    let mut schema = Map::new();
    schema.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    schema.insert("title".into(), json!("pictl inventory"));
    schema.extend(object(&ROOT));
    schema.insert("$defs".into(), json!({ "ssh": object(&SSH) }));
    Value::Object(schema)
}

/// The schema as `pictl schema` prints it and the repository ships it.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

fn object(t: &Table) -> Map<String, Value> {
    let properties: Map<String, Value> = t
        .keys
        .iter()
        .map(|k| {
            let mut v = value(&k.ty);
            if let Value::Object(m) = &mut v {
                m.insert("description".into(), json!(k.doc));
            }
            (k.name.to_string(), v)
        })
        .collect();
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("description".into(), json!(t.doc));
    m.insert("properties".into(), Value::Object(properties));
    m.insert("additionalProperties".into(), json!(false));
    if !t.required.is_empty() {
        m.insert("required".into(), json!(t.required));
    }
    if !t.exactly_one_of.is_empty() {
        let alternatives: Vec<Value> = t
            .exactly_one_of
            .iter()
            .map(|k| json!({ "required": [k] }))
            .collect();
        m.insert("oneOf".into(), Value::Array(alternatives));
    }
    m
}

fn value(ty: &Ty) -> Value {
    match ty {
        Ty::Str => json!({ "type": "string" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Int { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Ty::StrList => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::Enum(values) => json!({ "type": "string", "enum": values }),
        Ty::Arch => {
            let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
            json!({ "type": "string", "enum": names })
        }
        Ty::Secret { generate } => {
            let source = |k: &str| {
                json!({
                    "type": "object",
                    "properties": { k: { "type": "string" } },
                    "required": [k],
                    "additionalProperties": false,
                })
            };
            let mut alternatives = vec![source("env"), source("file")];
            if *generate {
                alternatives.push(json!({ "const": "generate" }));
            }
            json!({ "oneOf": alternatives })
        }
        Ty::Table(t) => Value::Object(object(t)),
        Ty::Def(name) => json!({ "$ref": format!("#/$defs/{name}") }),
        Ty::Tables(t) => json!({ "type": "array", "items": Value::Object(object(t)) }),
        Ty::Map(t) => json!({ "type": "object", "additionalProperties": Value::Object(object(t)) }),
        Ty::StrMap => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        // A secret-bearing setting (datastore-endpoint, etcd-s3-secret-key,
        // …) takes { env } / { file }.
        Ty::K3sSettings => json!({
            "type": "object",
            "additionalProperties": {
                "type": ["boolean", "string", "integer", "array", "object"],
                "items": { "type": "string" },
                "properties": { "env": { "type": "string" }, "file": { "type": "string" } },
                "additionalProperties": false,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_tables_hold_exactly_the_keys_the_loader_reads() {
        let loader = super::super::load::key_lists();
        let schema: Vec<(&str, Vec<&str>)> =
            TABLES.iter().map(|t| (t.path, t.key_names())).collect();
        for (path, keys) in &loader {
            let ours = schema
                .iter()
                .find(|(p, _)| p == path)
                .unwrap_or_else(|| panic!("the schema has no table {path:?}"));
            let mut a = keys.clone();
            let mut b = ours.1.clone();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "keys of {path:?}: loader (left) vs schema (right)");
        }
        assert_eq!(loader.len(), schema.len(), "tables: {schema:?}");
    }

    #[test]
    fn required_keys_are_keys_of_their_table() {
        for t in TABLES {
            for k in t.required.iter().chain(t.exactly_one_of) {
                assert!(t.key_names().contains(k), "{}: {k}", t.path);
            }
        }
    }
}
