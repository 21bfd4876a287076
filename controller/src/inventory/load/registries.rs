//! `[registries]`: K3s's `registries.yaml`, checked offline. K3s itself is
//! lenient where a mistake costs a Pi owner an afternoon: an endpoint it
//! cannot parse is skipped with a warning in its log (pkg/agent/containerd/
//! config.go `getHostConfigs`), an unknown key is ignored (yaml.v2), a bad
//! rewrite only fails at pull time. pictl names the line instead.

use toml::de::DeValue;

use super::Loader;
use crate::inventory::model::{
    Mirror, Registries, RegistryAuth, RegistryConfig, RegistryTls, SecretSetting,
};
use crate::inventory::reader::{self, Located, TableReader};
use crate::inventory::rules::{self, Violation};

pub(super) const REGISTRIES_KEYS: &[&str] = &["mirrors", "configs"];
pub(super) const MIRROR_KEYS: &[&str] = &["endpoint", "rewrite"];
pub(super) const CONFIG_KEYS: &[&str] = &["auth", "tls"];
pub(super) const AUTH_KEYS: &[&str] = &["username", "password", "auth", "identity_token"];
pub(super) const TLS_KEYS: &[&str] = &["ca_file", "cert_file", "key_file", "insecure_skip_verify"];

const HOST_HINT: &str = "a registry host as images name it (\"docker.io\", \"registry.lan:5000\") or \"*\" for every registry";

impl Loader<'_, '_> {
    pub(super) fn registries(&mut self, t: &TableReader<'_, '_>) -> Registries {
        t.deny_unknown(self.sink, REGISTRIES_KEYS);
        let mut out = Registries::default();
        for (name, r) in self.named_tables(t, "mirrors") {
            out.mirrors.insert(name, self.registry_mirror(&r));
        }
        for (name, r) in self.named_tables(t, "configs") {
            out.configs.insert(name, self.registry_config(&r));
        }
        out
    }

    /// The tables of `key`, each under a registry host's name.
    fn named_tables<'t, 'i>(
        &mut self,
        t: &TableReader<'t, 'i>,
        key: &str,
    ) -> Vec<(String, TableReader<'t, 'i>)> {
        let Some(table) = t.table(self.sink, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in table.table.iter() {
            let name: &str = k.get_ref();
            let at = Located::new(name.to_string(), k.span(), reader::join(&table.path, name));
            self.check(&at, registry_host(name), Some(HOST_HINT));
            match v.get_ref() {
                DeValue::Table(inner) => {
                    out.push((name.to_string(), TableReader::new(at.path, v.span(), inner)));
                }
                other => {
                    let msg = format!("expected a table, found {}", reader::kind_name(other));
                    self.report(&at, msg, None);
                }
            }
        }
        out
    }

    fn registry_mirror(&mut self, r: &TableReader<'_, '_>) -> Mirror {
        r.deny_unknown(self.sink, MIRROR_KEYS);
        let endpoint = r.str_list(self.sink, "endpoint").unwrap_or_default();
        for e in &endpoint {
            self.check(e, endpoint_url(&e.value), None);
        }
        let mut rewrite = std::collections::BTreeMap::new();
        if let Some(t) = r.table(self.sink, "rewrite") {
            for (k, v) in t.table.iter() {
                let pattern: &str = k.get_ref();
                let at = Located::new((), k.span(), reader::join(&t.path, pattern));
                let rule = regex::Regex::new(pattern).map(|_| ()).map_err(|e| {
                    Violation::from(format!(
                        "rewrite pattern {pattern:?} is not a regular expression: {e}"
                    ))
                });
                self.check(&at, rule, None);
                match v.get_ref() {
                    DeValue::String(s) => {
                        rewrite.insert(pattern.to_string(), s.to_string());
                    }
                    other => {
                        let msg = format!("expected a string, found {}", reader::kind_name(other));
                        self.report(&at, msg, None);
                    }
                }
            }
        }
        Mirror {
            endpoint: endpoint.into_iter().map(|e| e.value).collect(),
            rewrite,
        }
    }

    fn registry_config(&mut self, r: &TableReader<'_, '_>) -> RegistryConfig {
        r.deny_unknown(self.sink, CONFIG_KEYS);
        let auth = r.table(self.sink, "auth").map(|a| {
            a.deny_unknown(self.sink, AUTH_KEYS);
            let mut secret = |k| self.secret(&a, k, false).map(SecretSetting::From);
            let (password, auth, identity_token) =
                (secret("password"), secret("auth"), secret("identity_token"));
            RegistryAuth {
                username: a.str(self.sink, "username").map(|u| u.value),
                password,
                auth,
                identity_token,
            }
        });
        let tls = r.table(self.sink, "tls").map(|t| self.registry_tls(&t));
        RegistryConfig { auth, tls }
    }

    fn registry_tls(&mut self, t: &TableReader<'_, '_>) -> RegistryTls {
        t.deny_unknown(self.sink, TLS_KEYS);
        let mut file = |k| {
            t.str(self.sink, k).inspect(|f| {
                let hint = Some("an absolute path on the node: K3s reads it there");
                self.check(f, rules::absolute_path(&f.value), hint);
            })
        };
        let (ca, cert, key) = (file("ca_file"), file("cert_file"), file("key_file"));
        // rancher/wharfie registries.go `getTLSConfigForHost`: one without
        // the other fails every pull from the registry.
        match (&cert, &key) {
            (Some(c), None) => self.report(
                c,
                "cert_file without key_file",
                Some("set both, or neither"),
            ),
            (None, Some(k)) => self.report(
                k,
                "key_file without cert_file",
                Some("set both, or neither"),
            ),
            _ => {}
        }
        RegistryTls {
            ca_file: ca.map(|f| f.value),
            cert_file: cert.map(|f| f.value),
            key_file: key.map(|f| f.value),
            insecure_skip_verify: t
                .bool(self.sink, "insecure_skip_verify")
                .is_some_and(|b| b.value),
        }
    }
}

/// `*`, or `host[:port]` with a DNS name or an IP address (IPv6 in brackets).
fn registry_host(name: &str) -> Result<(), Violation> {
    if name == "*" {
        return Ok(());
    }
    let (host, port) = match name.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (name, None),
    };
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("{name:?}: port {p:?} is not a port number").into());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rules::address(host)
}

/// A mirror endpoint as K3s reads it (`[scheme://]host[:port][/path]`,
/// https when no scheme is given): a URL K3s can use, and no password in it.
pub(super) fn endpoint_url(e: &str) -> Result<(), Violation> {
    let text = if e.contains("://") {
        e.to_string()
    } else {
        format!("https://{e}")
    };
    let shown = crate::secret::redact_word(e).unwrap_or_else(|| e.to_string());
    let bad = |why: &str| -> Result<(), Violation> {
        Err(Violation {
            message: format!("endpoint {shown:?} {why}"),
            hint: Some(
                "a URL such as \"https://registry.lan:5000\" or \"http://10.0.0.5:5000\"".into(),
            ),
        })
    };
    let url = match url::Url::parse(&text) {
        Ok(u) => u,
        Err(err) => return bad(&format!("is not a URL: {err}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("must be http or https");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Violation {
            message: format!(
                "endpoint {:?} holds credentials",
                url.host_str().unwrap_or("")
            ),
            hint: Some(
                "put them in [registries.configs.\"HOST\".auth] with password = { env = \"VAR\" }"
                    .into(),
            ),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("has a query or fragment, which K3s drops");
    }
    Ok(())
}

#[cfg(test)]
#[path = "registries_tests.rs"]
mod tests;
