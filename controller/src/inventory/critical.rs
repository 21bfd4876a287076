//! K3s's critical control args: the settings every server of an HA cluster
//! must share. A joining server fetches the cluster's (`/v1-k3s/config`)
//! and refuses to start on any difference (pkg/cluster/bootstrap.go
//! `compareConfig`: `critical configuration mismatched: <flag>`, then
//! `failed to validate server configuration: critical configuration value
//! mismatch between servers`). The fields and their flags are
//! pkg/daemons/config/types.go `CriticalControlArgs` (its `cli` tags); the
//! defaults are pkg/cli/cmds/server.go's. Pure: settings in, differences out.

use super::model::{K3sSettings, K3sValue};

/// Each critical flag as a config.yaml key, with K3s's default. `disable`
/// stands for `disable-service-lb` (K3s sets it from `--disable servicelb`).
const CRITICAL: &[(&str, &str)] = &[
    ("cluster-cidr", "10.42.0.0/16"),
    ("cluster-dns", ""),
    ("cluster-domain", "cluster.local"),
    ("disable-cloud-controller", "false"),
    ("disable-helm-controller", "false"),
    ("disable-network-policy", "false"),
    ("disable", ""),
    ("secrets-encryption", "false"),
    ("secrets-encryption-provider", "aescbc"),
    ("embedded-registry", "false"),
    ("flannel-backend", "vxlan"),
    ("flannel-ipv6-masq", "false"),
    ("flannel-ip-masq-disable-random-fully", "false"),
    ("flannel-external-ip", "false"),
    ("egress-selector-mode", "agent"),
    ("service-cidr", "10.43.0.0/16"),
    ("supervisor-metrics", "false"),
];

/// One server whose critical setting differs from the first server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The index (among the servers given) of the one that differs.
    pub server: usize,
    /// K3s's name for it (the `cli` tag: `disable-service-lb` for `disable`).
    pub flag: &'static str,
    /// This server's value and the first server's, as K3s would use them.
    pub value: String,
    pub first: String,
}

/// A value as K3s compares it: lists joined by commas (K3s splits comma
/// lists), a boolean as `true`/`false`.
fn text(v: &K3sValue) -> String {
    let items: Vec<String> = match v {
        K3sValue::Bool(b) => return b.to_string(),
        K3sValue::Secret(s) => return s.to_string(),
        K3sValue::One(s) => vec![s.clone()],
        K3sValue::Many(l) => l.clone(),
    };
    let parts: Vec<&str> = items
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .collect();
    parts.join(",")
}

/// The value K3s runs with for `key` on a server whose config is `settings`.
fn effective(settings: &K3sSettings, key: &str, default: &str) -> String {
    match (key, settings.get(key)) {
        // Only servicelb of the packaged components is critical.
        ("disable", v) => v
            .is_some_and(|v| text(v).split(',').any(|c| c == "servicelb"))
            .to_string(),
        // Unset: the 10th address of service-cidr (10.43.0.10 by default).
        ("cluster-dns", None) => match effective(settings, "service-cidr", "10.43.0.0/16").as_str()
        {
            "10.43.0.0/16" => "10.43.0.10".to_string(),
            other => format!("the 10th address of {other}"),
        },
        (_, Some(v)) => text(v),
        (_, None) => default.to_string(),
    }
}

/// Every critical setting of a server (its whole config: the cluster's
/// settings with its own over them) that differs from the first one's.
pub fn mismatches(servers: &[K3sSettings]) -> Vec<Mismatch> {
    let Some((first, rest)) = servers.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, s) in rest.iter().enumerate() {
        for (key, default) in CRITICAL {
            let (value, want) = (effective(s, key, default), effective(first, key, default));
            if value != want {
                let flag = if *key == "disable" {
                    "disable-service-lb"
                } else {
                    key
                };
                out.push(Mismatch {
                    server: i + 1,
                    flag,
                    value,
                    first: want,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, K3sValue)]) -> K3sSettings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn defaults_written_out_match_and_differences_are_named_by_k3s_flag() {
        let one = |s: &str| K3sValue::One(s.into());
        let plain = settings(&[]);
        let explicit = settings(&[
            ("cluster-cidr", one("10.42.0.0/16")),
            ("cluster-dns", one("10.43.0.10")),
            ("flannel-backend", one("vxlan")),
            ("disable", K3sValue::Many(vec!["traefik".into()])),
            ("node-label", one("zone=a")),
        ]);
        assert_eq!(mismatches(&[plain.clone(), explicit]), vec![]);
        let other = settings(&[
            ("cluster-cidr", one("10.50.0.0/16")),
            ("disable", one("traefik,servicelb")),
            ("secrets-encryption", K3sValue::Bool(true)),
        ]);
        let found = mismatches(&[plain.clone(), plain, other]);
        let flags: Vec<(usize, &str, &str, &str)> = found
            .iter()
            .map(|m| (m.server, m.flag, m.value.as_str(), m.first.as_str()))
            .collect();
        assert_eq!(
            flags,
            vec![
                (2, "cluster-cidr", "10.50.0.0/16", "10.42.0.0/16"),
                (2, "disable-service-lb", "true", "false"),
                (2, "secrets-encryption", "true", "false"),
            ]
        );
    }
}

#[cfg(test)]
mod load_tests {
    use crate::inventory::Inventory;
    use std::path::Path;

    fn parse(s2: &str, s3: &str) -> Result<Inventory, String> {
        let text = format!(
            "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\nha = true\n\
             server_config = {{ \"flannel-backend\" = \"host-gw\" }}\n[ssh]\nagent = true\n\
             [[nodes]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n\
             [[nodes]]\nname = \"s2\"\naddress = \"10.0.0.2\"\nrole = \"server\"\n{s2}\n\
             [[nodes]]\nname = \"s3\"\naddress = \"10.0.0.3\"\nrole = \"server\"\n{s3}\n"
        );
        Inventory::parse(&text, "t.toml", Path::new("/")).map_err(|d| d.to_string())
    }

    #[test]
    fn ha_servers_whose_critical_settings_differ_are_refused_where_they_differ() {
        // Per-node settings K3s does not compare are each server's own.
        parse("k3s_config = { \"kubelet-arg\" = [\"max-pods=50\"] }", "").expect("valid");
        let err = parse(
            "k3s_config = { \"cluster-cidr\" = \"10.50.0.0/16\" }",
            "k3s_config = { \"flannel-backend\" = \"vxlan\", disable = [\"servicelb\"] }",
        )
        .expect_err("refused");
        for want in [
            "nodes[1].k3s_config: server s2's cluster-cidr (10.50.0.0/16) differs from server s1's (10.42.0.0/16)",
            "nodes[2].k3s_config: server s3's flannel-backend (vxlan) differs from server s1's (host-gw)",
            "server s3's disable-service-lb (true) differs from server s1's (false)",
            "critical configuration value mismatch between servers",
            "set it once for every server in [cluster] server_config",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }
}
