//! `[cluster]`: name, K3s release, mirror, token and API addresses.

use super::Loader;
use super::k3s::For;
use crate::inventory::model::{
    Cluster, DEFAULT_CHANNEL_URL, DEFAULT_MIRROR, K3sRelease, SecretSource,
};
use crate::inventory::paths::{default_state_dir, resolve_path};
use crate::inventory::reader::{self, TableReader};
use crate::inventory::rules;

pub(super) const CLUSTER_KEYS: &[&str] = &[
    "name",
    "k3s_version",
    "channel",
    "channel_url",
    "mirror",
    "allow_http_mirror",
    "allow_http_channel",
    "allow_downgrade",
    "token",
    "add_agent_token",
    "airgap_images",
    "agent_token",
    "api_address",
    "tls_san",
    "ha",
    "state_dir",
    "server_config",
    "agent_config",
];

const ADDRESS_HINT: Option<&str> = Some("an IP address or a DNS name");

impl Loader<'_, '_> {
    pub(super) fn cluster(&mut self, t: &TableReader<'_, '_>) -> Option<Cluster> {
        t.deny_unknown(self.sink, CLUSTER_KEYS);
        let name = self.required_str(t, "name", "a short cluster name, e.g. name = \"playson\"");
        if let Some(n) = &name {
            self.check(
                n,
                rules::dns_label(&n.value),
                Some("use lowercase letters, digits and '-'"),
            );
        }
        let k3s = self.k3s_release(t);
        let mirror = self.mirror(t);
        let channel_url = self.channel_url(t);
        let allow_downgrade = t
            .bool(self.sink, "allow_downgrade")
            .is_some_and(|b| b.value);
        let token = self
            .secret(t, "token", true)
            .unwrap_or(SecretSource::Generated);
        let agent_token = self
            .secret(t, "agent_token", true)
            .unwrap_or(SecretSource::Generated);
        let add_agent_token = t
            .bool(self.sink, "add_agent_token")
            .is_some_and(|b| b.value);
        let airgap_images = t.bool(self.sink, "airgap_images").is_some_and(|b| b.value);
        let api_address = t.str(self.sink, "api_address").map(|a| {
            self.check(&a, rules::address(&a.value), ADDRESS_HINT);
            a.value
        });
        let tls_san = t
            .str_list(self.sink, "tls_san")
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                self.check(&s, rules::address(&s.value), ADDRESS_HINT);
                s.value
            })
            .collect();
        let ha = t.bool(self.sink, "ha").is_some_and(|b| b.value);
        let server_config = self.k3s_settings(t, "server_config", For::Servers);
        let agent_config = self.k3s_settings(t, "agent_config", For::Agents);
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
            allow_downgrade,
            add_agent_token,
            airgap_images,
            agent_token,
            token,
            api_address,
            tls_san,
            ha,
            server_config,
            agent_config,
        })
    }

    /// Exactly one of `k3s_version` (pinned) and `channel` (followed).
    fn k3s_release(&mut self, t: &TableReader<'_, '_>) -> Option<K3sRelease> {
        let version = t.str(self.sink, "k3s_version");
        let channel = t.str(self.sink, "channel");
        match (version, channel) {
            (Some(v), None) => {
                self.check(
                    &v,
                    rules::k3s_version(&v.value),
                    Some("expected vX.Y.Z+k3sN, e.g. \"v1.32.5+k3s1\""),
                );
                Some(K3sRelease::Version(v.value))
            }
            (None, Some(c)) => {
                self.check(
                    &c,
                    rules::channel(&c.value),
                    Some("expected \"stable\", \"latest\", \"testing\" or a minor like \"v1.32\""),
                );
                Some(K3sRelease::Channel(c.value))
            }
            (Some(_), Some(c)) => {
                self.report(
                    &c,
                    "both k3s_version and channel are set",
                    Some("pin a version (reproducible) or follow a channel, not both"),
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
        }
    }

    /// The release mirror; plain http only when the inventory says so.
    fn mirror(&mut self, t: &TableReader<'_, '_>) -> String {
        let mirror = self.url(t, "mirror", DEFAULT_MIRROR);
        let allow_http = t
            .bool(self.sink, "allow_http_mirror")
            .is_some_and(|b| b.value);
        if let Some(m) = t
            .str(self.sink, "mirror")
            .filter(|m| m.value.starts_with("http://") && !allow_http)
        {
            self.report(
                &m,
                "a plain-http mirror lets anyone on the path swap both the binaries and their checksums",
                Some("use https, or set allow_http_mirror = true for a mirror on a network you trust (a lab)"),
            );
        }
        mirror
    }

    /// The channel server; plain http only when the inventory says so, as
    /// for the mirror: whoever answers the channel picks the release.
    fn channel_url(&mut self, t: &TableReader<'_, '_>) -> String {
        let url = self.url(t, "channel_url", DEFAULT_CHANNEL_URL);
        let allow_http = t
            .bool(self.sink, "allow_http_channel")
            .is_some_and(|b| b.value);
        if let Some(u) = t
            .str(self.sink, "channel_url")
            .filter(|u| u.value.starts_with("http://") && !allow_http)
        {
            self.report(
                &u,
                "a plain-http channel server lets anyone on the path pick the K3s release every node installs",
                Some("use https, or set allow_http_channel = true for a channel server on a network you trust (a lab)"),
            );
        }
        url
    }

    /// An http(s) URL (trailing slashes dropped), or `default` when absent.
    fn url(&mut self, t: &TableReader<'_, '_>, key: &str, default: &str) -> String {
        let Some(m) = t.str(self.sink, key) else {
            return default.to_string();
        };
        let example = format!("e.g. \"{default}\"");
        self.check(&m, rules::http_url(&m.value), Some(&example));
        m.value.trim_end_matches('/').to_string()
    }
}
