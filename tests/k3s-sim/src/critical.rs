//! K3s's critical control args: the settings every server of an HA cluster
//! must share. A server answers `/v1-k3s/config` (node or server token)
//! with its own, and a server joining a cluster fetches them from the
//! server it joins and refuses to start on any difference, naming each
//! flag (pkg/cluster/bootstrap.go `bootstrap` → `compareConfig`:
//! `critical configuration mismatched: <cli tag>` warnings, then `failed to
//! validate server configuration: critical configuration value mismatch
//! between servers`). The fields are pkg/daemons/config/types.go
//! `CriticalControlArgs` by their `cli` tags, the defaults
//! pkg/cli/cmds/server.go's. When the config cannot be fetched, K3s warns
//! `Skipping cluster configuration validation` and goes on.

use crate::config::Settings;
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Each critical flag as config.yaml spells it, with K3s's default.
/// `disable` stands for `disable-service-lb` (set by `--disable servicelb`).
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

/// The value this server runs with for `key`, by K3s's `cli` tag.
fn effective(s: &Settings, key: &str, default: &str) -> (&'static str, String) {
    let tag = CRITICAL
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(k, _)| {
            if *k == "disable" {
                "disable-service-lb"
            } else {
                k
            }
        });
    let value = match (key, s.text(key)) {
        ("disable", v) => v
            .is_some_and(|v| v.split(',').any(|c| c.trim() == "servicelb"))
            .to_string(),
        ("cluster-dns", None) => {
            let cidr = effective(s, "service-cidr", "10.43.0.0/16").1;
            format!("the 10th address of {cidr}")
        }
        (_, Some(v)) => v.split(',').map(str::trim).collect::<Vec<_>>().join(","),
        (_, None) => default.to_string(),
    };
    (tag, value)
}

/// Every critical arg of this server, by `cli` tag.
pub fn args(s: &Settings) -> BTreeMap<&'static str, String> {
    CRITICAL.iter().map(|(k, d)| effective(s, k, d)).collect()
}

/// What `/v1-k3s/config` answers (K3s serves its whole `config.Control`;
/// only the critical args are read by a joiner).
pub fn config_json(s: &Settings) -> Value {
    json!({ "CriticalControlArgs": args(s) })
}

/// `compareConfig` on the cluster's answer: each difference warned by its
/// flag, then the error K3s exits with.
pub fn compare(local: &Settings, cluster: &Value) -> Result<()> {
    let ours = args(local);
    let mismatched: Vec<&str> = ours
        .iter()
        .filter(|(k, v)| cluster["CriticalControlArgs"][**k].as_str() != Some(v.as_str()))
        .map(|(k, _)| *k)
        .collect();
    if mismatched.is_empty() {
        return Ok(());
    }
    for flag in mismatched {
        crate::warn!("critical configuration mismatched: {flag}");
    }
    bail!(
        "failed to validate server configuration: critical configuration value mismatch between servers"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Settings {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).expect("write");
        let args = ["--config".to_string(), path.display().to_string()];
        crate::config::load(crate::config::Role::Server, &args).expect("settings")
    }

    #[test]
    fn equal_settings_pass_and_each_difference_fails_the_join() {
        let a = settings("cluster-init: true\ndisable: [traefik]\n");
        let same = settings("server: https://10.0.0.1:6443\ndisable: traefik\n");
        assert!(compare(&same, &config_json(&a)).is_ok());
        for other in [
            "cluster-cidr: 10.52.0.0/16\n",
            "flannel-backend: host-gw\n",
            "disable: [traefik, servicelb]\n",
            "secrets-encryption: true\n",
            "service-cidr: 10.53.0.0/16\n",
        ] {
            let err = compare(&settings(other), &config_json(&a)).expect_err(other);
            assert!(
                format!("{err}").contains("critical configuration value mismatch"),
                "{other}"
            );
        }
        // A component K3s does not count (traefik) is not critical.
        assert!(compare(&settings("disable: [metrics-server]\n"), &config_json(&a)).is_ok());
    }
}
