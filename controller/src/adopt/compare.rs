//! Is what K3s runs with the same as what pictl would configure? Compares
//! the imported settings with pictl's config.yaml for the node, knowing
//! K3s's defaults for the keys pictl always writes (node-name is the
//! hostname, node-ip the node's address, the kubeconfig is 0600, the
//! certificate already names the node). Any imported setting pictl would
//! not write is "dropped"; pictl never drops one silently.

use std::collections::{BTreeMap, BTreeSet};

use super::import::{Imported, Value};
pub use super::view::NodeView;
use super::view::{mode, set};

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Settings the node has that pictl's config would not carry.
    pub dropped: Vec<(String, String)>,
    /// Settings pictl would change: (key, now, then).
    pub changed: Vec<(String, String, String)>,
    /// Settings pictl changes on the node without a restart: (key, now, then).
    /// `write-kubeconfig-mode` is only read when K3s writes its kubeconfig at
    /// start, so adopting a new mode is a chmod of that file.
    pub live: Vec<(String, String, String)>,
}

impl Verdict {
    /// K3s would run exactly as it does now under pictl's files (changes
    /// made live need no restart).
    pub fn equivalent(&self) -> bool {
        self.dropped.is_empty() && self.changed.is_empty()
    }
}

/// Settings that pictl carries from other inventory keys, checked by
/// [`super::carried`] rather than by value here.
const CARRIED_ELSEWHERE: &[&str] = &[
    "node-label",
    "node-taint",
    "tls-san",
    "write-kubeconfig-mode",
];

pub fn compare(
    imported: &Imported,
    desired: &BTreeMap<String, Value>,
    view: NodeView<'_>,
) -> Verdict {
    let mut v = Verdict::default();
    for name in &imported.unknown {
        v.dropped
            .push((name.clone(), "(a flag K3s does not know)".into()));
    }
    for (key, value) in &imported.keys {
        if CARRIED_ELSEWHERE.contains(&key.as_str()) {
            continue;
        }
        if !desired.contains_key(key) && !is_default(key, value, view) {
            v.dropped.push((key.clone(), shown(key, value)));
        }
    }
    v.dropped
        .extend(super::carried::dropped(imported, desired, view));
    for (key, want) in desired {
        let have = imported.keys.get(key);
        if !same(key, have, want, view) {
            let now = have.map_or_else(|| "(K3s's default)".to_string(), |h| shown(key, h));
            let change = (key.clone(), now, shown(key, want));
            if key == "write-kubeconfig-mode" {
                // Not carried by the inventory: dropped above, not changed.
                if view.carried.contains_key(key) {
                    v.live.push(change);
                }
            } else {
                v.changed.push(change);
            }
        }
    }
    v
}

/// A value for people: tokens are never shown.
/// A value for people: secret settings (tokens, passwords, keys) and
/// passwords inside URLs are never shown, as in `plan --diff`.
fn shown(key: &str, value: &Value) -> String {
    use crate::secret::{redact_word, secret_key};
    if secret_key(key) {
        return "<redacted>".into();
    }
    let text = value.to_string();
    text.split(' ')
        .map(|w| redact_word(w).unwrap_or_else(|| w.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

use crate::secret::token_password as secret_of;

/// An imported setting that only repeats K3s's default.
fn is_default(key: &str, value: &Value, view: NodeView<'_>) -> bool {
    match (key, value) {
        (_, Value::Bool(false)) => true,
        (_, Value::Many(items)) if items.is_empty() => true,
        ("node-name", Value::One(n)) => n == view.hostname,
        ("node-ip", Value::One(ip)) => view.addresses.first() == Some(ip),
        ("node-ip", Value::Many(ips)) => ips.len() == 1 && view.addresses.first() == ips.first(),
        ("write-kubeconfig-mode", Value::One(m)) => mode(m) == "0600",
        _ => false,
    }
}

fn same(key: &str, have: Option<&Value>, want: &Value, view: NodeView<'_>) -> bool {
    match (key, have, want) {
        ("token" | "agent-token", Some(Value::One(h)), Value::One(w)) => {
            secret_of(h) == secret_of(w)
        }
        // A server started without a token keeps the one it generated.
        ("token", None, Value::One(w)) => view
            .running_token
            .is_some_and(|t| secret_of(t) == secret_of(w)),
        ("write-kubeconfig-mode", Some(Value::One(h)), Value::One(w)) => mode(h) == mode(w),
        ("tls-san", have, Value::Many(want)) => {
            // K3s's certificate already names the node's hostname and addresses.
            let mut known: BTreeSet<String> = have.map(set).unwrap_or_default();
            known.insert(view.hostname.to_string());
            known.extend(view.addresses.iter().cloned());
            want.iter().all(|w| known.contains(w))
        }
        (_, Some(Value::Many(h)), Value::Many(w)) => {
            set(&Value::Many(h.clone())) == set(&Value::Many(w.clone()))
        }
        // A secret setting the run read: equal when the node has its value.
        (_, Some(h), w @ Value::Secret(_)) => set(h) == set(w),
        (_, Some(h), w) => h == w,
        (_, None, w) => is_default(key, w, view),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Value {
        Value::One(s.into())
    }

    fn view() -> NodeView<'static> {
        static ADDRS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        static NONE: BTreeMap<String, Value> = BTreeMap::new();
        static LABELS: BTreeMap<String, String> = BTreeMap::new();
        NodeView {
            hostname: "pi1",
            addresses: ADDRS.get_or_init(|| vec!["192.168.0.196".into()]),
            running_token: Some("K10abcdef::server:s3cret"),
            carried: &NONE,
            labels: &LABELS,
            taints: &[],
        }
    }

    fn desired() -> BTreeMap<String, Value> {
        [
            ("node-name", one("pi1")),
            ("node-ip", one("192.168.0.196")),
            ("token", one("s3cret")),
            ("write-kubeconfig-mode", one("0600")),
            ("tls-san", Value::Many(vec!["192.168.0.196".into()])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn secret_settings_and_url_passwords_are_never_shown() {
        assert_eq!(shown("etcd-s3-secret-key", &one("s3cr3t")), "<redacted>");
        assert_eq!(shown("agent-token", &one("x")), "<redacted>");
        let endpoint = shown(
            "datastore-endpoint",
            &one("postgres://k3s:pa55@db:5432/k3s"),
        );
        assert!(
            !endpoint.contains("pa55") && endpoint.contains("db:5432"),
            "{endpoint}"
        );
        assert_eq!(
            shown("flannel-backend", &one("wireguard-native")),
            "wireguard-native"
        );
    }

    #[test]
    fn a_default_install_sh_server_is_equivalent_to_pictls_config() {
        let mut imported = Imported::default();
        imported
            .keys
            .insert("token".into(), one("K10abcdef::server:s3cret"));
        let v = compare(&imported, &desired(), view());
        assert!(v.equivalent(), "{v:?}");
    }

    #[test]
    fn a_server_started_without_a_token_keeps_the_one_it_runs_with() {
        let v = compare(&Imported::default(), &desired(), view());
        assert!(v.equivalent(), "{v:?}");
        let other = NodeView {
            running_token: Some("K10abcdef::server:other"),
            ..view()
        };
        assert_eq!(
            compare(&Imported::default(), &desired(), other)
                .changed
                .len(),
            1
        );
    }

    #[test]
    fn a_flag_the_inventory_does_not_carry_is_dropped_by_name() {
        let mut imported = Imported::default();
        imported.keys.insert("token".into(), one("s3cret"));
        imported
            .keys
            .insert("flannel-backend".into(), one("wireguard-native"));
        imported.unknown.push("mystery".into());
        let v = compare(&imported, &desired(), view());
        let names: Vec<&str> = v.dropped.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["mystery", "flannel-backend"]);
    }

    #[test]
    fn a_different_value_is_a_change_and_tokens_are_never_shown() {
        let mut imported = Imported::default();
        imported.keys.insert("token".into(), one("other"));
        let v = compare(&imported, &desired(), view());
        assert_eq!(
            v.changed,
            [(
                "token".to_string(),
                "<redacted>".to_string(),
                "<redacted>".to_string()
            )]
        );
        assert!(v.dropped.is_empty());
    }

    #[test]
    fn a_kubeconfig_mode_is_dropped_unless_carried_and_then_changed_live() {
        let mut imported = Imported::default();
        imported.keys.insert("token".into(), one("s3cret"));
        imported
            .keys
            .insert("write-kubeconfig-mode".into(), one("644"));
        let v = compare(&imported, &desired(), view());
        assert_eq!(
            v.dropped,
            [("write-kubeconfig-mode".to_string(), "644".to_string())]
        );
        assert!(v.changed.is_empty() && v.live.is_empty(), "{v:?}");
        // Carried with another mode: a change made live, not a restart.
        let carried: BTreeMap<String, Value> =
            [("write-kubeconfig-mode".into(), one("0640"))].into();
        let carrying = NodeView {
            carried: &carried,
            ..view()
        };
        let mut d = desired();
        d.insert("write-kubeconfig-mode".into(), one("0640"));
        let v = compare(&imported, &d, carrying);
        assert!(v.equivalent(), "{v:?}");
        assert_eq!(
            v.live,
            [(
                "write-kubeconfig-mode".to_string(),
                "644".to_string(),
                "0640".to_string()
            )]
        );
        // Carried as it is: nothing to do.
        d.insert("write-kubeconfig-mode".into(), one("0644"));
        let v = compare(&imported, &d, carrying);
        assert!(v.equivalent() && v.live.is_empty(), "{v:?}");
    }

    #[test]
    fn an_extra_certificate_name_is_a_change() {
        let mut d = desired();
        d.insert(
            "tls-san".into(),
            Value::Many(vec!["192.168.0.196".into(), "pi.example".into()]),
        );
        let mut imported = Imported::default();
        imported.keys.insert("token".into(), one("s3cret"));
        let v = compare(&imported, &d, view());
        assert_eq!(v.changed.len(), 1, "{v:?}");
        assert_eq!(v.changed[0].0, "tls-san");
    }
}
