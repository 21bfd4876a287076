//! `[ssh]` and `[nodes.ssh]`: read raw, merged per node, then settled into
//! [`SshSettings`] with pictl's defaults.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use ssh2_config::SshConfig;

use super::Loader;
use super::jump::{self, Hop, HostEntry};
use super::secret::Holds;
use crate::inventory::model::{HostKeyPolicy, SecretSource, SshAuth, SshSettings};
use crate::inventory::paths::resolve_path;
use crate::inventory::reader::{Located, TableReader};
use crate::inventory::rules::{self, Violation};

pub(super) const SSH_KEYS: &[&str] = &[
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
    "proxy_jump",
    "ssh_config",
];

/// Raw `[ssh]` or `[nodes.ssh]` values before merging.
#[derive(Default, Clone)]
pub(super) struct RawSsh {
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    agent: Option<bool>,
    passphrase_env: Option<String>,
    /// Where it was written, to report a strict policy it makes unusable.
    known_hosts: Option<Located<PathBuf>>,
    host_key_policy: Option<HostKeyPolicy>,
    sudo: Option<bool>,
    sudo_password: Option<SecretSource>,
    connect_timeout: Option<Duration>,
    /// `Some(empty)`: `"none"`, an inherited chain switched off.
    proxy_jump: Option<Vec<Hop>>,
    /// `Some(None)`: `"none"`, no ssh_config read.
    ssh_config: Option<Located<Option<PathBuf>>>,
}

impl RawSsh {
    pub(super) fn merged_over(&self, base: &RawSsh) -> RawSsh {
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
            proxy_jump: self.proxy_jump.clone().or_else(|| base.proxy_jump.clone()),
            ssh_config: self.ssh_config.clone().or_else(|| base.ssh_config.clone()),
        }
    }

    /// A `known_hosts` the inventory names that does not exist, under the
    /// strict policy: no host could ever be trusted.
    pub(super) fn unusable_known_hosts(&self) -> Option<&Located<PathBuf>> {
        let strict = self.host_key_policy.unwrap_or_default() == HostKeyPolicy::Strict;
        self.known_hosts
            .as_ref()
            .filter(|k| strict && !k.value.exists())
    }

    /// The settings with what ssh_config says about the node (`config`)
    /// filling what the inventory leaves unset, then pictl's defaults; no
    /// jump hosts yet (they are settled from these).
    pub(super) fn settle(self, config: &HostEntry) -> SshSettings {
        let user = self
            .user
            .or_else(|| config.user.clone())
            .unwrap_or_else(|| "root".to_string());
        let sudo = self.sudo.unwrap_or(user != "root");
        let identity_file = match self.agent {
            Some(true) => None,
            _ => self.identity_file.or_else(|| config.identity_file.clone()),
        };
        let auth = match identity_file {
            Some(path) => SshAuth::Key {
                path,
                passphrase_env: self.passphrase_env,
            },
            None => SshAuth::Agent,
        };
        SshSettings {
            port: self.port.or(config.port).unwrap_or(22),
            auth,
            known_hosts: self
                .known_hosts
                .map(|k| k.value)
                .or_else(|| config.known_hosts.clone())
                .unwrap_or_else(|| resolve_path(Path::new("/"), "~/.ssh/known_hosts")),
            host_key_policy: self.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
            sudo,
            sudo_password: self.sudo_password,
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(10)),
            user,
            host_name: config.host_name.clone(),
            proxy_jump: Vec::new(),
        }
    }
}

impl Loader<'_, '_> {
    pub(super) fn ssh(&mut self, t: &TableReader<'_, '_>) -> RawSsh {
        t.deny_unknown(self.sink, SSH_KEYS);
        let user = t.str(self.sink, "user").inspect(|u| {
            self.check(u, rules::unix_user(&u.value), None);
        });
        let mut raw = RawSsh {
            user: user.map(|u| u.value),
            port: t
                .int(self.sink, "port", 1, 65535)
                .and_then(|p| u16::try_from(p.value).ok()),
            ..RawSsh::default()
        };
        self.ssh_auth(t, &mut raw);
        raw.known_hosts = t.str(self.sink, "known_hosts").map(|k| {
            let path = resolve_path(self.base_dir, &k.value);
            Located::new(path, k.span, k.path)
        });
        raw.host_key_policy = t
            .str(self.sink, "host_key_policy")
            .and_then(|p| self.check(&p, rules::host_key_policy(&p.value), None));
        raw.sudo = t.bool(self.sink, "sudo").map(|b| b.value);
        raw.sudo_password = self.secret(t, "sudo_password", false);
        raw.connect_timeout = t
            .int(self.sink, "connect_timeout", 1, 600)
            .and_then(|s| u64::try_from(s.value).ok())
            .map(Duration::from_secs);
        raw.proxy_jump = t
            .str(self.sink, "proxy_jump")
            .and_then(|p| self.check(&p, jump::parse_chain(&p.value), None));
        raw.ssh_config = t.str(self.sink, "ssh_config").map(|c| {
            let path = (!c.value.eq_ignore_ascii_case("none"))
                .then(|| resolve_path(self.base_dir, &c.value));
            Located::new(path, c.span, c.path)
        });
        raw
    }

    /// `identity_file`, `agent` and `passphrase_env`.
    fn ssh_auth(&mut self, t: &TableReader<'_, '_>, raw: &mut RawSsh) {
        let identity = t.str(self.sink, "identity_file");
        let agent = t.bool(self.sink, "agent");
        if let (Some(i), Some(a)) = (&identity, &agent)
            && a.value
        {
            let hint = format!("keep one; {} names identity_file", i.path);
            self.report(
                a,
                "both identity_file and agent = true are set",
                Some(&hint),
            );
        }
        if let Some(i) = &identity {
            let p = resolve_path(self.base_dir, &i.value);
            self.check_private_file(&p, i, Holds::PrivateKey);
            raw.identity_file = Some(p);
        }
        raw.agent = agent.map(|a| a.value);
        raw.passphrase_env = t.str(self.sink, "passphrase_env").map(|e| {
            self.check(&e, rules::env_name(&e.value), None);
            e.value
        });
    }

    /// Reports a strict policy with a `known_hosts` that is not there.
    pub(super) fn check_known_hosts(&mut self, merged: &RawSsh) {
        if let Some(k) = merged.unusable_known_hosts() {
            let message = format!(
                "{} does not exist, and host_key_policy is \"strict\": no node could be trusted",
                k.value.display()
            );
            let hint = "create it (e.g. ssh-keyscan HOST >> FILE, checking the fingerprints), \
                        or use host_key_policy = \"accept-new\" for a first contact";
            self.report(k, message, Some(hint));
        }
    }
}

impl Loader<'_, '_> {
    /// A node's settings: the inventory's, then what ssh_config says about
    /// its `address` as a `Host`, then pictl's defaults; then its jump hosts.
    pub(super) fn settle_ssh(&mut self, raw: RawSsh, address: &Located<String>) -> SshSettings {
        let config = self.ssh_config(raw.ssh_config.as_ref());
        let mut found = |rule: Result<HostEntry, Violation>| self.check(address, rule, None);
        let entry = config
            .as_deref()
            .and_then(|c| found(jump::entry(c, &address.value)))
            .unwrap_or_default();
        if raw.known_hosts.is_none() {
            self.check(
                address,
                jump::refuse_no_known_hosts(&entry, &address.value),
                None,
            );
        }
        let from_config = |pj: &String| {
            jump::parse_chain(pj).map_err(|v| Violation {
                message: format!(
                    "ssh_config's ProxyJump for {}: {}",
                    address.value, v.message
                ),
                hint: v.hint,
            })
        };
        let chain = match (&raw.proxy_jump, &entry.proxy_jump) {
            (Some(chain), _) => Some(chain.clone()),
            (None, Some(pj)) => self.check(address, from_config(pj), None),
            (None, None) => None,
        };
        let mut settings = raw.settle(&entry);
        let hops = jump::settle_hops(chain.unwrap_or_default(), &settings, config.as_deref());
        settings.proxy_jump = self.check(address, hops, None).unwrap_or_default();
        settings
    }

    /// The ssh_config the inventory names (read once per file), else
    /// `~/.ssh/config` when there is one; `None` for `"none"`. A named file
    /// that cannot be read is an error; the default one is skipped with a
    /// warning (pictl works without it).
    fn ssh_config(&mut self, choice: Option<&Located<Option<PathBuf>>>) -> Option<Rc<SshConfig>> {
        let (path, named) = match choice {
            Some(c) => (c.value.clone()?, Some(c)),
            None => (resolve_path(Path::new("/"), "~/.ssh/config"), None),
        };
        if named.is_none() && !path.exists() {
            return None;
        }
        if let Some(cached) = self.ssh_configs.get(&path) {
            return cached.clone();
        }
        let parsed = match (jump::read_config(&path), named) {
            (Ok(c), _) => Some(Rc::new(c)),
            (Err(why), Some(at)) => {
                let hint = "fix the file, or set ssh_config = \"none\"";
                self.report(at, format!("{}: {why}", path.display()), Some(hint));
                None
            }
            (Err(why), None) => {
                tracing::warn!(file = %path.display(), %why, "ssh_config not used");
                None
            }
        };
        self.ssh_configs.insert(path, parsed.clone());
        parsed
    }
}
