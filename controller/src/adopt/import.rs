//! What K3s on a node was told, from the files install.sh (or a person)
//! left: the unit's `ExecStart` flags, its `.service.env` variables and a
//! config.yaml not written by pictl, combined with K3s's precedence:
//! command-line flags over config.yaml over environment variables, and
//! list flags from config.yaml and the command line appended.

use std::collections::BTreeMap;

use crate::k3s_flags::{self as flags, Kind};

/// One setting's value, typed by its flag.
pub use crate::inventory::K3sValue as Value;

/// The effective settings of a K3s install that pictl did not write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Imported {
    /// `server` or `agent`, from the command line.
    pub command: String,
    /// config.yaml key → value.
    pub keys: BTreeMap<String, Value>,
    /// Environment variables that set a key (pictl moves them into config.yaml).
    pub env_used: Vec<String>,
    /// Flags or keys K3s would not know (kept by name, reported as dropped).
    pub unknown: Vec<String>,
}

/// Imports from the unit's ExecStart words, the env file's variables and
/// an existing config.yaml's text.
pub fn import(exec: &[String], env: &BTreeMap<String, String>, config: Option<&str>) -> Imported {
    let mut out = Imported {
        command: exec.get(1).cloned().unwrap_or_default(),
        ..Imported::default()
    };
    let server = out.command == "server";
    for (var, value) in env {
        if let Some(flag) = flags::by_env(var, server) {
            out.keys
                .insert(flag.name.to_string(), typed(flag.kind, vec![value.clone()]));
            out.env_used.push(var.clone());
        }
    }
    if let Some(text) = config {
        from_config(&mut out, text, server);
    }
    from_args(&mut out, exec.get(2..).unwrap_or_default(), server);
    out
}

fn typed(kind: Kind, mut values: Vec<String>) -> Value {
    match kind {
        Kind::Bool => Value::Bool(values.last().is_none_or(|v| v != "false")),
        Kind::Value => Value::One(values.pop().unwrap_or_default()),
        Kind::List => Value::Many(values),
    }
}

/// Sets `name` from a source that overrides the environment; lists append
/// unless `replace_lists`.
fn set(out: &mut Imported, name: &str, server: bool, values: Vec<String>, replace_lists: bool) {
    let Some(flag) = flags::lookup(name, server) else {
        if !out.unknown.iter().any(|u| u == name) {
            out.unknown.push(name.to_string());
        }
        return;
    };
    let key = flag.name.to_string();
    let value = match (flag.kind, out.keys.get(&key)) {
        (Kind::List, Some(Value::Many(old))) if !replace_lists => {
            Value::Many(old.iter().cloned().chain(values).collect())
        }
        (kind, _) => typed(kind, values),
    };
    out.keys.insert(key, value);
}

fn from_config(out: &mut Imported, text: &str, server: bool) {
    let Ok(serde_yaml_ng::Value::Mapping(map)) = serde_yaml_ng::from_str(text) else {
        return;
    };
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        let (name, append) = k.strip_suffix('+').map_or((k, false), |n| (n, true));
        let values = match v {
            serde_yaml_ng::Value::Sequence(items) => items.iter().map(scalar).collect(),
            other => vec![scalar(&other)],
        };
        // A config value replaces what the environment set.
        set(out, name, server, values, !append);
    }
}

fn scalar(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn from_args(out: &mut Imported, args: &[String], server: bool) {
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            out.unknown.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let kind = flags::lookup(name, server).map(|f| f.kind);
        let value = match (inline, kind) {
            (Some(v), _) => vec![v],
            (None, Some(Kind::Bool)) | (None, None) => vec![],
            (None, Some(_)) => it.next().cloned().into_iter().collect(),
        };
        // Config values come first as arguments: command-line lists append.
        set(out, name, server, value, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_env_and_config_combine_with_k3s_precedence() {
        let env: BTreeMap<String, String> = [
            ("K3S_TOKEN".to_string(), "from-env".to_string()),
            ("K3S_KUBECONFIG_MODE".to_string(), "644".to_string()),
            ("HTTP_PROXY".to_string(), "http://p".to_string()),
        ]
        .into_iter()
        .collect();
        let config = "write-kubeconfig-mode: \"600\"\nnode-label:\n  - a=1\n";
        let exec = words(
            "/usr/local/bin/k3s server --disable traefik --disable=servicelb --cluster-init --node-label b=2",
        );
        let got = import(&exec, &env, Some(config));
        assert_eq!(got.command, "server");
        assert_eq!(got.keys["token"], Value::One("from-env".into()));
        // config.yaml beats the environment
        assert_eq!(got.keys["write-kubeconfig-mode"], Value::One("600".into()));
        assert_eq!(
            got.keys["disable"],
            Value::Many(vec!["traefik".into(), "servicelb".into()])
        );
        assert_eq!(got.keys["cluster-init"], Value::Bool(true));
        // list flags from the command line append to config.yaml's
        assert_eq!(
            got.keys["node-label"],
            Value::Many(vec!["a=1".into(), "b=2".into()])
        );
        assert_eq!(got.env_used, ["K3S_KUBECONFIG_MODE", "K3S_TOKEN"]);
        assert!(got.unknown.is_empty(), "{:?}", got.unknown);
    }

    #[test]
    fn an_agent_reads_its_server_and_token_from_the_environment() {
        let env: BTreeMap<String, String> = [
            ("K3S_URL".to_string(), "https://10.0.0.1:6443".to_string()),
            ("K3S_TOKEN".to_string(), "K10x::server:y".to_string()),
        ]
        .into_iter()
        .collect();
        let got = import(&words("/usr/local/bin/k3s agent"), &env, None);
        assert_eq!(
            got.keys["server"],
            Value::One("https://10.0.0.1:6443".into())
        );
        assert_eq!(got.keys["token"], Value::One("K10x::server:y".into()));
    }

    #[test]
    fn flags_k3s_does_not_know_are_kept_as_unknown() {
        let got = import(
            &words("/usr/local/bin/k3s server --no-such-flag --disable traefik"),
            &BTreeMap::new(),
            None,
        );
        assert_eq!(got.unknown, ["no-such-flag"]);
        assert_eq!(got.keys["disable"], Value::Many(vec!["traefik".into()]));
    }
}
