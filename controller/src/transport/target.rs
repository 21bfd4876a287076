//! [`SshTarget`]: everything needed to reach one node, with the defaults
//! pictl connects with. Plain data: the session that uses it is
//! [`super::ssh`], the handshake that reads its known_hosts settings is
//! [`super::handshake`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::auth::{Auth, PassphrasePrompt};
use super::known_hosts::{self, HostKeyPolicy};
use super::sudo::SudoMode;
/// A jump host on the way to the node: the inventory's, taken as it is.
pub use crate::inventory::JumpHost as Jump;

/// The slowest link an upload is expected to survive (a Pi on poor Wi-Fi):
/// its deadline grows by one second per this many bytes.
pub const MIN_UPLOAD_RATE: u64 = 256 * 1024;

/// Everything needed to reach one node.
#[derive(Clone)]
pub struct SshTarget {
    /// Node name, used in messages.
    pub name: String,
    /// Address or DNS name to connect to; also the known_hosts lookup name.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    /// Asked for an encrypted key's passphrase when the environment does not
    /// provide it.
    pub passphrase_prompt: Option<PassphrasePrompt>,
    /// The user's known_hosts file: read first, and the one new keys are
    /// recorded in.
    pub known_hosts: PathBuf,
    /// Read after `known_hosts` (a key found in either counts), never
    /// written; [`known_hosts::SYSTEM_KNOWN_HOSTS`] by default.
    pub system_known_hosts: Option<PathBuf>,
    pub policy: HostKeyPolicy,
    /// With `AcceptNew`: write a newly accepted key to `known_hosts`
    /// (false for read-only commands such as `plan`: accepted, not recorded).
    pub record_new_keys: bool,
    /// With `AcceptNew`: the only new key to accept, by its SHA256
    /// fingerprint (the one the user confirmed); any other new key is
    /// unknown, as under `Strict`.
    pub confirmed_new_key: Option<String>,
    pub sudo: SudoMode,
    /// Bound on TCP connect + handshake + authentication.
    pub connect_timeout: Duration,
    /// Send a keepalive after this much silence; three unanswered ones drop
    /// the connection (so a dead node surfaces as unreachable, not a hang).
    pub keepalive: Duration,
    /// Bound on one upload on top of the time its bytes need at
    /// [`MIN_UPLOAD_RATE`]: a node that stops reading (but still answers
    /// keepalives) fails the upload instead of hanging the run.
    pub upload_timeout: Duration,
    /// Local deadline of a command that sets no `timeout` of its own.
    pub untimed_deadline: Duration,
    /// Jump hosts to go through, first hop first (none: straight over TCP).
    /// Each is checked under `policy` against its own known_hosts file.
    pub jumps: Vec<Jump>,
}

impl SshTarget {
    /// A target with the defaults: port 22, strict host keys, no sudo,
    /// 10 s connect timeout, 15 s keepalive, uploads bounded by 60 s plus
    /// their transfer time at [`MIN_UPLOAD_RATE`], commands without a
    /// timeout stopped after 10 minutes.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        user: impl Into<String>,
        auth: Auth,
        known_hosts: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            auth,
            passphrase_prompt: None,
            known_hosts: known_hosts.into(),
            system_known_hosts: Some(PathBuf::from(known_hosts::SYSTEM_KNOWN_HOSTS)),
            policy: HostKeyPolicy::Strict,
            record_new_keys: true,
            confirmed_new_key: None,
            sudo: SudoMode::None,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            upload_timeout: Duration::from_secs(60),
            untimed_deadline: Duration::from_secs(600),
            jumps: Vec::new(),
        }
    }
}

impl fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTarget")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("auth", &self.auth)
            .field("passphrase_prompt", &self.passphrase_prompt.is_some())
            .field("known_hosts", &self.known_hosts)
            .field("system_known_hosts", &self.system_known_hosts)
            .field("policy", &self.policy)
            .field("sudo", &self.sudo)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive", &self.keepalive)
            .field("upload_timeout", &self.upload_timeout)
            .field("untimed_deadline", &self.untimed_deadline)
            .field("jumps", &self.jumps)
            .finish()
    }
}
