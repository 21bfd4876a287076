//! Command line and `/etc/rancher/k3s/config.yaml` handling, with K3s's flag names,
//! short aliases, environment variables and precedence (CLI > config file > env >
//! default), and K3s's leniency exactly where K3s is lenient
//! (pkg/configfilearg/parser.go, defaultparser.go): a missing config file is not an
//! error, whether it is the default one or named by `--config`/`K3S_CONFIG_FILE`;
//! `k3s server` warns about config keys it does not know and skips them, while
//! `k3s agent` (which has no such filter) fails on them as on an unknown flag.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Bool,
    Str,
    List,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Server,
    Agent,
}

use Kind::{Bool, List, Str};

/// Flags both `k3s server` and `k3s agent` accept.
const COMMON: &[(&str, Kind)] = &[
    ("config", Str),
    ("debug", Bool),
    ("v", Str),
    ("vmodule", Str),
    ("log", Str),
    ("alsologtostderr", Bool),
    ("data-dir", Str),
    ("token", Str),
    ("token-file", Str),
    ("server", Str),
    ("node-name", Str),
    ("with-node-id", Bool),
    ("node-label", List),
    ("node-taint", List),
    ("image-credential-provider-bin-dir", Str),
    ("image-credential-provider-config", Str),
    ("docker", Bool),
    ("container-runtime-endpoint", Str),
    ("default-runtime", Str),
    ("disable-default-registry-endpoint", Bool),
    ("nonroot-devices", Bool),
    ("pause-image", Str),
    ("snapshotter", Str),
    ("private-registry", Str),
    ("system-default-registry", Str),
    ("node-ip", List),
    ("node-external-ip", List),
    ("node-internal-dns", List),
    ("node-external-dns", List),
    ("resolv-conf", Str),
    ("flannel-iface", Str),
    ("flannel-conf", Str),
    ("flannel-cni-conf", Str),
    ("kubelet-arg", List),
    ("kube-proxy-arg", List),
    ("protect-kernel-defaults", Bool),
    ("selinux", Bool),
    ("lb-server-port", Str),
    ("rootless", Bool),
    ("prefer-bundled-bin", Bool),
    ("vpn-auth", Str),
    ("vpn-auth-file", Str),
    ("airgap-extra-registry", List),
    ("enable-pprof", Bool),
];

/// Flags only `k3s server` accepts.
const SERVER_ONLY: &[(&str, Kind)] = &[
    ("bind-address", Str),
    ("https-listen-port", Str),
    ("advertise-address", Str),
    ("advertise-port", Str),
    ("tls-san", List),
    ("tls-san-security", Bool),
    ("cluster-cidr", List),
    ("service-cidr", List),
    ("service-node-port-range", Str),
    ("cluster-dns", List),
    ("cluster-domain", Str),
    ("flannel-backend", Str),
    ("flannel-ipv6-masq", Bool),
    ("flannel-external-ip", Bool),
    ("egress-selector-mode", Str),
    ("servicelb-namespace", Str),
    ("write-kubeconfig", Str),
    ("write-kubeconfig-mode", Str),
    ("write-kubeconfig-group", Str),
    ("helm-job-image", Str),
    ("agent-token", Str),
    ("agent-token-file", Str),
    ("cluster-init", Bool),
    ("cluster-reset", Bool),
    ("cluster-reset-restore-path", Str),
    ("kube-apiserver-arg", List),
    ("etcd-arg", List),
    ("kube-controller-manager-arg", List),
    ("kube-scheduler-arg", List),
    ("kube-cloud-controller-manager-arg", List),
    ("datastore-endpoint", Str),
    ("datastore-cafile", Str),
    ("datastore-certfile", Str),
    ("datastore-keyfile", Str),
    ("etcd-expose-metrics", Bool),
    ("etcd-disable-snapshots", Bool),
    ("etcd-snapshot-name", Str),
    ("etcd-snapshot-schedule-cron", Str),
    ("etcd-snapshot-retention", Str),
    ("etcd-snapshot-dir", Str),
    ("etcd-snapshot-compress", Bool),
    ("etcd-s3", Bool),
    ("etcd-s3-endpoint", Str),
    ("etcd-s3-endpoint-ca", Str),
    ("etcd-s3-skip-ssl-verify", Bool),
    ("etcd-s3-access-key", Str),
    ("etcd-s3-secret-key", Str),
    ("etcd-s3-bucket", Str),
    ("etcd-s3-region", Str),
    ("etcd-s3-folder", Str),
    ("etcd-s3-insecure", Bool),
    ("etcd-s3-timeout", Str),
    ("default-local-storage-path", Str),
    ("disable", List),
    ("disable-scheduler", Bool),
    ("disable-cloud-controller", Bool),
    ("disable-kube-proxy", Bool),
    ("disable-network-policy", Bool),
    ("disable-helm-controller", Bool),
    ("embedded-registry", Bool),
    ("supervisor-metrics", Bool),
    ("secrets-encryption", Bool),
    ("secrets-encryption-provider", Str),
    ("kine-tls", Bool),
];

/// Flags only `k3s agent` accepts.
const AGENT_ONLY: &[(&str, Kind)] = &[("disable-apiserver-lb", Bool)];

const SHORT: &[(&str, &str)] = &[
    ("c", "config"),
    ("d", "data-dir"),
    ("o", "write-kubeconfig"),
    ("t", "token"),
    ("s", "server"),
    ("l", "log"),
    ("i", "node-ip"),
];

/// Environment variables K3s reads for these flags.
const ENV: &[(&str, &str)] = &[
    ("K3S_TOKEN", "token"),
    ("K3S_TOKEN_FILE", "token-file"),
    ("K3S_URL", "server"),
    ("K3S_NODE_NAME", "node-name"),
    ("K3S_DATA_DIR", "data-dir"),
    ("K3S_KUBECONFIG_OUTPUT", "write-kubeconfig"),
    ("K3S_KUBECONFIG_MODE", "write-kubeconfig-mode"),
    ("K3S_CLUSTER_INIT", "cluster-init"),
    ("K3S_AGENT_TOKEN", "agent-token"),
    ("K3S_AGENT_TOKEN_FILE", "agent-token-file"),
];

pub const DEFAULT_CONFIG: &str = "/etc/rancher/k3s/config.yaml";

fn kind_of(role: Role, key: &str) -> Option<Kind> {
    let own: &[(&str, Kind)] = match role {
        Role::Server => SERVER_ONLY,
        Role::Agent => AGENT_ONLY,
    };
    COMMON
        .iter()
        .chain(own)
        .find(|(k, _)| *k == key)
        .map(|(_, k)| *k)
}

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Bool(bool),
    Str(String),
    List(Vec<String>),
}

/// The effective settings of one `k3s server` / `k3s agent` invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<String, Val>,
    /// Which config file was read (None: the default one did not exist).
    pub config_file: Option<PathBuf>,
}

impl Settings {
    pub fn str(&self, key: &str) -> Option<String> {
        match self.values.get(key) {
            Some(Val::Str(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
    /// Any value as text: a list joined by commas, a boolean `true`/`false`.
    pub fn text(&self, key: &str) -> Option<String> {
        match self.values.get(key)? {
            Val::Str(s) => Some(s.clone()).filter(|s| !s.is_empty()),
            Val::Bool(b) => Some(b.to_string()),
            Val::List(l) => Some(l.join(",")),
        }
    }
    pub fn bool(&self, key: &str) -> bool {
        matches!(self.values.get(key), Some(Val::Bool(true)))
    }
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.values.get(key) {
            Some(Val::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(
            self.str("data-dir")
                .unwrap_or_else(|| "/var/lib/rancher/k3s".into()),
        )
    }
    /// `key=value` entries of a component arg list such as kubelet-arg.
    pub fn component_arg(&self, list: &str, name: &str) -> Option<String> {
        self.list(list).iter().rev().find_map(|a| {
            let a = a.trim_start_matches('-');
            let (k, v) = a.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

fn parse_bool(key: &str, s: &str) -> Result<bool> {
    match s {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Ok(false),
        _ => bail!("invalid boolean value {s:?} for -{key}"),
    }
}

/// The settings K3s reads from `K3S_*` variables (an empty one is unset).
fn from_env(role: Role) -> Result<BTreeMap<String, Val>> {
    let mut values: BTreeMap<String, Val> = BTreeMap::new();
    for (env, key) in ENV {
        if let Ok(v) = std::env::var(env) {
            if v.is_empty() {
                continue;
            }
            if let Some(kind) = kind_of(role, key) {
                let val = match kind {
                    Kind::Bool => Val::Bool(parse_bool(key, &v)?),
                    Kind::Str => Val::Str(v),
                    Kind::List => Val::List(vec![v]),
                };
                values.insert(key.to_string(), val);
            }
        }
    }
    Ok(values)
}

/// Drop-ins, like K3s: `<config>.d/*.yaml` in lexical order.
fn merge_dropins(role: Role, path: &Path, into: &mut BTreeMap<String, Val>) -> Result<()> {
    let dropin_dir = PathBuf::from(format!("{}.d", path.display()));
    if let Ok(rd) = std::fs::read_dir(&dropin_dir) {
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|x| {
                        x.eq_ignore_ascii_case("yaml") || x.eq_ignore_ascii_case("yml")
                    })
            })
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("unable to read config file {}", f.display()))?;
            merge_file(role, &f, &text, into)?;
        }
    }
    Ok(())
}

/// Parses the arguments after the subcommand name.
pub fn load(role: Role, args: &[String]) -> Result<Settings> {
    let cli = parse_cli(role, args)?;
    let mut values = from_env(role)?;
    // Which config file: --config on the command line, else K3S_CONFIG_FILE, else the
    // default. K3s ignores a missing default file but not an explicitly named one.
    let explicit = cli
        .iter()
        .rev()
        .find(|(k, _)| k == "config")
        .and_then(|(_, v)| match v {
            Val::Str(s) => Some(s.clone()),
            _ => None,
        })
        .or_else(|| {
            std::env::var("K3S_CONFIG_FILE")
                .ok()
                .filter(|s| !s.is_empty())
        });
    let (path, is_explicit) = match explicit {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let mut config_file = None;
    let mut from_file: BTreeMap<String, Val> = BTreeMap::new();
    // K3s reads the file and then its drop-ins; a missing file (with or without
    // drop-ins) is not an error, whoever named it.
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            merge_file(role, &path, &text, &mut from_file)?;
            config_file = Some(path.clone());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if is_explicit {
                crate::debug!("config file {} does not exist", path.display());
            }
        }
        Err(e) => {
            return Err(anyhow!("open {}: {e}", path.display()));
        }
    }
    merge_dropins(role, &path, &mut from_file)?;
    values.extend(from_file);
    // CLI last: scalars override, lists add to what the files said.
    for (k, v) in cli {
        match (values.get_mut(&k), v) {
            (Some(Val::List(existing)), Val::List(more)) => existing.extend(more),
            (_, v) => {
                values.insert(k, v);
            }
        }
    }
    Ok(Settings {
        values,
        config_file,
    })
}

fn merge_file(role: Role, path: &Path, text: &str, into: &mut BTreeMap<String, Val>) -> Result<()> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| anyhow!("failed to parse config file {}: {e}", path.display()))?;
    let map = match doc {
        serde_yaml_ng::Value::Null => return Ok(()),
        serde_yaml_ng::Value::Mapping(m) => m,
        _ => bail!(
            "config file {} must be a YAML mapping of flag names to values",
            path.display()
        ),
    };
    for (k, v) in map {
        let Some(raw_key) = k.as_str() else {
            bail!(
                "config file {}: keys must be strings, found {k:?}",
                path.display()
            );
        };
        let (key, append) = match raw_key.strip_suffix('+') {
            Some(base) => (base, true),
            None => (raw_key, false),
        };
        let Some(kind) = kind_of(role, key) else {
            match role {
                // defaultparser.go filters only `server` (and etcd-snapshot) keys.
                Role::Server => {
                    crate::warn!("Unknown flag --{key} found in config.yaml, skipping\n");
                    continue;
                }
                // The agent gets every key as a flag, and urfave/cli refuses it.
                Role::Agent => bail!("Incorrect Usage: flag provided but not defined: -{key}"),
            }
        };
        let val = yaml_to_val(path, key, kind, &v)?;
        match (append, into.get_mut(key), val) {
            (true, Some(Val::List(existing)), Val::List(more)) => existing.extend(more),
            (_, _, val) => {
                into.insert(key.to_string(), val);
            }
        }
    }
    Ok(())
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn yaml_to_val(path: &Path, key: &str, kind: Kind, v: &serde_yaml_ng::Value) -> Result<Val> {
    let bad = || {
        anyhow!(
            "config file {}: invalid value for {key:?}: {v:?}",
            path.display()
        )
    };
    Ok(match kind {
        Kind::Bool => match v {
            serde_yaml_ng::Value::Bool(b) => Val::Bool(*b),
            serde_yaml_ng::Value::String(s) => Val::Bool(parse_bool(key, s)?),
            _ => return Err(bad()),
        },
        Kind::Str => Val::Str(scalar(v).ok_or_else(bad)?),
        Kind::List => match v {
            serde_yaml_ng::Value::Sequence(items) => Val::List(
                items
                    .iter()
                    .map(|i| scalar(i).ok_or_else(bad))
                    .collect::<Result<_>>()?,
            ),
            other => Val::List(vec![scalar(other).ok_or_else(bad)?]),
        },
    })
}

fn parse_cli(role: Role, args: &[String]) -> Result<Vec<(String, Val)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            bail!("Incorrect Usage: unexpected argument {arg:?}");
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        let name = SHORT
            .iter()
            .find(|(s, _)| *s == name)
            .map(|(_, l)| *l)
            .unwrap_or(name);
        if name == "help" || name == "h" {
            bail!(
                "usage: k3s {} [OPTIONS] (see https://docs.k3s.io/cli)",
                role_name(role)
            );
        }
        let Some(kind) = kind_of(role, name) else {
            bail!("Incorrect Usage: flag provided but not defined: -{name}");
        };
        let val = match kind {
            Kind::Bool => Val::Bool(match inline {
                Some(v) => parse_bool(name, &v)?,
                None => true,
            }),
            _ => {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).ok_or_else(|| {
                            anyhow!("Incorrect Usage: flag needs an argument: -{name}")
                        })?;
                        i += 1;
                        v.clone()
                    }
                };
                if kind == Kind::List {
                    Val::List(vec![v])
                } else {
                    Val::Str(v)
                }
            }
        };
        match (
            out.iter_mut().find(|(k, _): &&mut (String, Val)| k == name),
            val,
        ) {
            (Some((_, Val::List(existing))), Val::List(more)) => existing.extend(more),
            (_, val) => out.push((name.to_string(), val)),
        }
    }
    Ok(out)
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Server => "server",
        Role::Agent => "agent",
    }
}

/// Go-style durations as used in component args: `40s`, `1m30s`, `500ms`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            unit = "ms".into();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
