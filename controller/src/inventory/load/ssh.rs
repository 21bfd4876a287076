//! `[ssh]` and `[nodes.ssh]`: read raw, merged per node, then settled into
//! [`SshSettings`] with pictl's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Loader;
use super::secret::Holds;
use crate::inventory::model::{HostKeyPolicy, SecretSource, SshAuth, SshSettings};
use crate::inventory::paths::resolve_path;
use crate::inventory::reader::{Located, TableReader};
use crate::inventory::rules;

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

    pub(super) fn settle(self) -> SshSettings {
        let user = self.user.unwrap_or_else(|| "root".to_string());
        let sudo = self.sudo.unwrap_or(user != "root");
        let auth = match self.identity_file {
            Some(path) => SshAuth::Key {
                path,
                passphrase_env: self.passphrase_env,
            },
            None => SshAuth::Agent,
        };
        SshSettings {
            port: self.port.unwrap_or(22),
            auth,
            known_hosts: self.known_hosts.map_or_else(
                || resolve_path(Path::new("/"), "~/.ssh/known_hosts"),
                |k| k.value,
            ),
            host_key_policy: self.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
            sudo,
            sudo_password: self.sudo_password,
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(10)),
            user,
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
