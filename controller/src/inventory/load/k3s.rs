//! Extra K3s settings: `server_config` / `agent_config` in `[cluster]` and
//! `k3s_config` per node, as config.yaml keys checked against K3s's own
//! flags (name, role, value type), plus `adopt_drop`. Keys pictl sets itself
//! are refused here: they have their own inventory keys.

use toml::de::DeValue;

use super::Loader;
use crate::inventory::model::{K3sSettings, K3sValue, SecretSetting};
use crate::inventory::reader::{self, Located, TableReader};
use crate::k3s_flags::{self, Kind};
use crate::secret;

/// config.yaml keys pictl writes from other inventory keys.
pub const OWNED: &[&str] = &[
    "node-name",
    "node-ip",
    "server",
    "token",
    "agent-token",
    "tls-san",
    "node-label",
    "node-taint",
    "cluster-init",
];

/// Which roles a settings table applies to.
#[derive(Debug, Clone, Copy)]
pub(super) enum For {
    Servers,
    Agents,
    /// A node's own table: its role (`None` when the role was invalid).
    Node(Option<bool>),
}

impl Loader<'_, '_> {
    /// The settings table `key` of `t` (empty when absent).
    pub(super) fn k3s_settings(
        &mut self,
        t: &TableReader<'_, '_>,
        key: &str,
        applies: For,
    ) -> K3sSettings {
        let mut out = K3sSettings::new();
        let Some(table) = t.table(self.sink, key) else {
            return out;
        };
        let server = match applies {
            For::Servers => true,
            For::Agents => false,
            For::Node(Some(s)) => s,
            For::Node(None) => return out,
        };
        for (k, v) in table.table.iter() {
            let name: &str = k.get_ref();
            let at = Located::new((), k.span(), reader::join(&table.path, name));
            let Some(kind) = self.k3s_key(&at, name, server) else {
                continue;
            };
            let value_at = Located::new((), v.span(), at.path.clone());
            let value = if secret_setting(name) {
                self.k3s_secret(&value_at, name, v.get_ref())
            } else {
                self.k3s_value(&value_at, kind, v.get_ref())
            };
            let Some(value) = value else {
                continue;
            };
            if name == "write-kubeconfig-mode" && !is_file_mode(&value) {
                let hint =
                    "an octal mode as K3s parses it, such as \"0600\" (K3s's default) or \"0644\"";
                self.report(&value_at, "not a file mode", Some(hint));
                continue;
            }
            out.insert(name.to_string(), value);
        }
        out
    }

    /// The flag's kind when `name` is a K3s setting pictl lets the inventory set.
    fn k3s_key(&mut self, at: &Located<()>, name: &str, server: bool) -> Option<Kind> {
        let role = if server { "server" } else { "agent" };
        if OWNED.contains(&name) {
            let msg = format!("\"{name}\" is set by pictl from the inventory");
            self.report(at, msg, Some("use the node's own keys (name, address, labels, taints, [cluster] token, tls_san, ha)"));
            return None;
        }
        match k3s_flags::lookup(name, server) {
            Some(flag) if flag.name == name => Some(flag.kind),
            Some(flag) => {
                let hint = format!("write the long name \"{}\"", flag.name);
                self.report(at, format!("\"{name}\" is a short alias"), Some(&hint));
                None
            }
            None => {
                let other = k3s_flags::lookup(name, !server).is_some();
                let msg = if other {
                    format!("\"{name}\" is not a K3s {role} setting")
                } else {
                    format!("unknown K3s setting \"{name}\"")
                };
                self.report(
                    at,
                    msg,
                    Some("a `k3s server --help` / `k3s agent --help` flag name without the dashes"),
                );
                None
            }
        }
    }

    /// A secret-bearing setting: `{ env }`/`{ file }`; a string only where
    /// it holds no secret (a `datastore-endpoint` without a password).
    fn k3s_secret(&mut self, at: &Located<()>, name: &str, v: &DeValue<'_>) -> Option<K3sValue> {
        match v {
            DeValue::Table(inner) => {
                let r = TableReader::new(at.path.clone(), at.span.clone(), inner);
                let source = self.secret_table(&r, at, name)?;
                Some(K3sValue::Secret(SecretSetting::From(source)))
            }
            DeValue::String(s) if !secret::secret_key(name) && !holds_password(s) => {
                Some(K3sValue::One(s.to_string()))
            }
            DeValue::String(_) => {
                let hint = format!(
                    "\"{name}\" = {{ env = \"VAR\" }} or {{ file = \"path\" }} (mode 0600): the value is read when a run starts and written only into K3s's 0600 config"
                );
                self.report(
                    at,
                    format!("{name} is written in clear text in the inventory"),
                    Some(&hint),
                );
                None
            }
            other => {
                let found = reader::kind_name(other);
                let msg =
                    format!("expected {{ env = \"VAR\" }} or {{ file = \"path\" }}, found {found}");
                self.report(at, msg, None);
                None
            }
        }
    }

    fn k3s_value(&mut self, at: &Located<()>, kind: Kind, v: &DeValue<'_>) -> Option<K3sValue> {
        let expected = match kind {
            Kind::Bool => "true or false",
            Kind::Value => "a string",
            Kind::List => "a string or a list of strings",
        };
        let value = match (kind, v) {
            (Kind::Bool, DeValue::Boolean(b)) => Some(K3sValue::Bool(*b)),
            (Kind::Value, DeValue::String(s)) => Some(K3sValue::One(s.to_string())),
            (Kind::Value, DeValue::Integer(i)) => Some(K3sValue::One(i.to_string())),
            (Kind::List, DeValue::String(s)) => Some(K3sValue::Many(vec![s.to_string()])),
            (Kind::List, DeValue::Array(items)) => items
                .iter()
                .map(|i| match i.get_ref() {
                    DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(K3sValue::Many),
            _ => None,
        };
        if value.is_none() {
            let found = reader::kind_name(v);
            self.report(at, format!("expected {expected}, found {found}"), None);
        }
        value
    }
}

/// K3s settings whose value is (or may hold) a secret: taken only from
/// `{ env }`/`{ file }` and redacted everywhere.
pub fn secret_setting(name: &str) -> bool {
    secret::secret_key(name) || matches!(name, "datastore-endpoint" | "vpn-auth")
}

/// A URL or DSN with a password in it (`postgres://u:p@h/db`,
/// `mysql://u:p@tcp(h)/db`), or `vpn-auth`'s `joinKey=…`.
fn holds_password(value: &str) -> bool {
    secret::redact_word(value).is_some() || value.contains("joinKey=")
}

/// Three or four octal digits (K3s: `strconv.ParseInt(mode, 8, 0)`).
fn is_file_mode(v: &K3sValue) -> bool {
    matches!(v, K3sValue::One(m) if (3..=4).contains(&m.len()) && m.bytes().all(|b| (b'0'..=b'7').contains(&b)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::inventory::{Inventory, K3sValue};

    fn parse(extra_cluster: &str, extra_node: &str) -> Result<Inventory, String> {
        let text = format!(
            "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\n{extra_cluster}\n[ssh]\nagent = true\n\
             [[nodes]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n{extra_node}\n"
        );
        Inventory::parse(&text, "t.toml", Path::new("/")).map_err(|d| d.to_string())
    }

    #[test]
    fn k3s_settings_are_typed_by_their_flags() {
        let inv = parse(
            "server_config = { disable = [\"traefik\"], \"flannel-backend\" = \"wireguard-native\", \"secrets-encryption\" = true }",
            "k3s_config = { disable = \"servicelb\" }\nadopt_drop = [\"flannel-iface\"]",
        )
        .expect("valid");
        let c = &inv.cluster.server_config;
        assert_eq!(c["disable"], K3sValue::Many(vec!["traefik".into()]));
        assert_eq!(
            c["flannel-backend"],
            K3sValue::One("wireguard-native".into())
        );
        assert_eq!(c["secrets-encryption"], K3sValue::Bool(true));
        assert_eq!(
            inv.nodes[0].k3s_config["disable"],
            K3sValue::Many(vec!["servicelb".into()])
        );
        assert_eq!(inv.nodes[0].adopt_drop, ["flannel-iface"]);
    }

    #[test]
    fn the_kubeconfig_mode_is_an_inventory_setting_checked_as_a_mode() {
        let inv = parse(
            "server_config = { \"write-kubeconfig-mode\" = \"0644\" }",
            "",
        )
        .expect("valid");
        assert_eq!(
            inv.cluster.server_config["write-kubeconfig-mode"],
            K3sValue::One("0644".into())
        );
        let err = parse(
            "server_config = { \"write-kubeconfig-mode\" = \"rw-r--r--\" }",
            "",
        )
        .expect_err("invalid");
        assert!(
            err.contains("cluster.server_config.write-kubeconfig-mode: not a file mode"),
            "{err}"
        );
    }

    #[test]
    fn unknown_owned_aliased_and_mistyped_settings_are_refused_where_they_are() {
        let err = parse(
            "server_config = { \"no-such\" = \"x\", token = \"t\", t = \"x\", \"cluster-cidr\" = 5 }\nagent_config = { \"cluster-cidr\" = \"10.42.0.0/16\" }",
            "",
        )
        .expect_err("invalid");
        for want in [
            "cluster.server_config.no-such: unknown K3s setting \"no-such\"",
            "cluster.server_config.token: \"token\" is set by pictl from the inventory",
            "cluster.server_config.t: \"t\" is a short alias",
            "cluster.server_config.cluster-cidr: expected a string or a list of strings, found an integer",
            "cluster.agent_config.cluster-cidr: \"cluster-cidr\" is not a K3s agent setting",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }
}
