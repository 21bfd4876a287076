//! How pictl touches a node: the [`Transport`] trait and its SSH
//! implementation.
//!
//! Every side effect on a node goes through [`Transport`], so steps stay
//! testable and the rules that keep nodes safe live in one place: commands
//! are structured ([`RemoteCommand`]) and quoted by construction, secrets go
//! through stdin and never argv (a sudo password is tried once, never
//! guessed again), uploads are atomic, hash-verified and bounded in time,
//! and host keys are checked against the user's and the system's
//! known_hosts, host certificates against their `@cert-authority` lines.
//! The edge: this module knows nothing of K3s or steps; it runs commands and
//! moves files.

mod auth;
mod command;
mod error;
mod handshake;
mod hold;
pub mod known_hosts;
pub mod quote;
mod session;
mod ssh;
pub mod sudo;
mod target;
pub mod upload;

use std::future::Future;
use std::pin::Pin;

pub use auth::{Auth, PassphrasePrompt};
pub use command::{InvalidCommand, KILL_AFTER, RemoteCommand};
pub use error::TransportError;
pub use hold::Holding;
pub use known_hosts::HostKeyPolicy;
pub use ssh::SshTransport;
pub use sudo::SudoMode;
pub use target::{Jump, SshTarget};

/// The future type of [`Transport`] methods: boxed so the trait stays
/// dyn-compatible (`Arc<dyn Transport>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a finished remote command left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status; when the process was killed by a signal, minus the
    /// signal number (`-9` for KILL, `-1` for a signal without a number).
    pub status: i32,
    /// The signal name (`"KILL"`, `"TERM"`, ...) when killed by one.
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }

    /// stdout as text, invalid UTF-8 replaced (for facts and messages).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A connection to one node.
pub trait Transport: Send + Sync {
    /// Run `cmd`; a non-zero exit is an `Ok(Output)`, only failures to run
    /// it at all (or a refused sudo, or a timeout) are errors.
    fn exec<'a>(&'a self, cmd: &'a RemoteCommand) -> BoxFuture<'a, Result<Output, TransportError>>;

    /// Atomically replace `path` (absolute) with `contents` and `mode`,
    /// verified by sha256 on the node. Parent directories are created.
    fn put_file<'a>(
        &'a self,
        contents: &'a [u8],
        path: &'a str,
        mode: u32,
        sudo: bool,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Start `cmd` and keep it running for as long as this connection lives
    /// (its stdin stays open until then): what it printed before the mark
    /// `\nREADY\n` on stdout, or its output when it exited first; a timeout
    /// error (the command stopped) when neither happened `within`.
    fn hold<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        ready: &'a str,
        within: std::time::Duration,
    ) -> BoxFuture<'a, Result<Holding, TransportError>>;

    /// Network round trips so far (each exec and put is one).
    fn round_trips(&self) -> u64;
}
