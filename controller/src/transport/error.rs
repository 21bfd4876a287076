//! [`TransportError`]: everything that can go wrong talking to a node.
//!
//! Variants say what was attempted and carry the node name as data, so the
//! runner can print and classify them ([`TransportError::is_unreachable`]).
//! No variant ever holds stdin contents, passwords or passphrases.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::command::InvalidCommand;
use super::sudo::SudoSetupError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot connect to {host} at {address}")]
    Connect {
        host: String,
        address: String,
        #[source]
        source: io::Error,
    },

    #[error("connecting to {host} at {address} timed out after {after:?}")]
    ConnectTimeout {
        host: String,
        address: String,
        after: Duration,
    },

    #[error("{jump} could not open a connection to {host} at {address}")]
    JumpForward {
        host: String,
        address: String,
        /// The jump host asked, as "jump host NAME (ADDRESS:PORT)".
        jump: String,
        /// Boxed: three names already make this the largest variant.
        #[source]
        source: Box<russh::Error>,
    },

    #[error("SSH handshake with {host} failed")]
    Handshake {
        host: String,
        #[source]
        source: russh::Error,
    },

    #[error(
        "host key of {host} is unknown: {known_hosts} has no entry for {lookup}; the node offered \
         key {fingerprint} (host_key_policy is \"strict\": verify the fingerprint out of band and \
         add it, or use \"accept-new\" to trust it on first use)"
    )]
    HostKeyUnknown {
        host: String,
        lookup: String,
        known_hosts: PathBuf,
        fingerprint: String,
    },

    #[error(
        "HOST KEY OF {host} HAS CHANGED: {known_hosts}:{line} records a different key; the node \
         offered {key_type} key {fingerprint}. Someone may be intercepting the connection, or the \
         node was reinstalled; if you know it was, delete line {line} of {known_hosts} and \
         connect again"
    )]
    HostKeyChanged {
        host: String,
        known_hosts: PathBuf,
        line: usize,
        key_type: String,
        fingerprint: String,
    },

    #[error(
        "host key of {host} is revoked: the node offered {fingerprint}, marked @revoked at \
         {known_hosts}:{line}"
    )]
    HostKeyRevoked {
        host: String,
        known_hosts: PathBuf,
        line: usize,
        fingerprint: String,
    },

    #[error("cannot read known_hosts file {path}")]
    KnownHostsRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot record the host key of {host} in {path}")]
    KnownHostsWrite {
        host: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot load SSH private key {path}")]
    KeyLoad {
        path: PathBuf,
        #[source]
        source: russh::keys::Error,
    },

    #[error("SSH private key {path} is encrypted and no passphrase is available ({hint})")]
    KeyPassphraseMissing { path: PathBuf, hint: String },

    #[error("cannot use ssh-agent (SSH_AUTH_SOCK)")]
    Agent {
        #[source]
        source: russh::keys::Error,
    },

    #[error("authentication as {user} on {host} failed ({method})")]
    Auth {
        host: String,
        user: String,
        method: String,
    },

    #[error("connection to {host} was lost")]
    ConnectionLost {
        host: String,
        #[source]
        source: Option<russh::Error>,
    },

    #[error("SSH channel to {host} failed")]
    Channel {
        host: String,
        #[source]
        source: russh::Error,
    },

    #[error("{what} on {host} did not finish within {after:?} and was stopped")]
    CommandTimeout {
        host: String,
        what: String,
        after: Duration,
    },

    #[error("command for {host} is invalid")]
    InvalidCommand {
        host: String,
        #[source]
        source: InvalidCommand,
    },

    #[error("cannot run {what} as root on {host}")]
    SudoSetup {
        host: String,
        what: String,
        #[source]
        source: SudoSetupError,
    },

    /// Tried once; the transport does not send it again.
    #[error("sudo refused the password for {user} on {host}")]
    SudoPasswordRefused { host: String, user: String },

    /// A read-only run accepted the host's key without recording it: the
    /// sudo password is not sent to a host nothing vouches for.
    #[error(
        "the sudo password is not sent to {host}: its host key ({fingerprint}) is not in \
         {known_hosts}, and this read-only run accepted it without recording it; record it \
         first (`pictl apply`, or `ssh` to the node once and compare the fingerprint)"
    )]
    SudoPasswordWithheld {
        host: String,
        known_hosts: PathBuf,
        fingerprint: String,
    },

    #[error("sudo on {host} refused to run {what}: {reason}")]
    Sudo {
        host: String,
        what: String,
        reason: String,
    },

    #[error(
        "upload to {host}:{path} failed verification: expected sha256 {expected}, the node \
         computed {actual}; the target was left untouched"
    )]
    UploadVerify {
        host: String,
        path: String,
        expected: String,
        actual: String,
    },

    #[error("upload to {host}:{path} failed (exit status {status}): {stderr}")]
    Upload {
        host: String,
        path: String,
        status: i32,
        stderr: String,
    },
}

impl TransportError {
    /// The node could not be reached or the connection died: the runner
    /// reports these as `unreachable`, not as a failed step.
    pub fn is_unreachable(&self) -> bool {
        match self {
            TransportError::Connect { .. }
            | TransportError::ConnectTimeout { .. }
            | TransportError::ConnectionLost { .. }
            | TransportError::JumpForward { .. } => true,
            TransportError::Handshake { source, .. } | TransportError::Channel { source, .. } => {
                is_connection_error(source)
            }
            _ => false,
        }
    }
}

/// russh errors that mean the TCP connection (not the protocol) failed.
pub(crate) fn is_connection_error(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::IO(_)
            | russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::ConnectionTimeout
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::SendError
    )
}

/// Keep remote stderr short and printable inside an error message.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut out: String = text.lines().take(5).collect::<Vec<_>>().join(" | ");
    if out.len() > 500 {
        let mut cut = 500;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_threads_and_stay_small() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<TransportError>();
        // clippy::result_large_err draws the line at 128 bytes.
        assert!(std::mem::size_of::<TransportError>() < 128);
    }

    #[test]
    fn changed_host_key_names_file_line_and_fingerprint() {
        let e = TransportError::HostKeyChanged {
            host: "node1".into(),
            known_hosts: "/lab/known_hosts".into(),
            line: 3,
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
        };
        let msg = e.to_string();
        for part in ["node1", "/lab/known_hosts:3", "SHA256:abc", "line 3"] {
            assert!(msg.contains(part), "{msg}");
        }
        assert!(!e.is_unreachable());
    }

    #[test]
    fn connection_failures_are_unreachable() {
        let refused = TransportError::Connect {
            host: "n".into(),
            address: "a:22".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(refused.is_unreachable());
        let lost = TransportError::Channel {
            host: "n".into(),
            source: russh::Error::HUP,
        };
        assert!(lost.is_unreachable());
        let auth = TransportError::Auth {
            host: "n".into(),
            user: "u".into(),
            method: "publickey".into(),
        };
        assert!(!auth.is_unreachable());
    }

    #[test]
    fn refused_sudo_password_is_a_failure_naming_user_and_node() {
        let e = TransportError::SudoPasswordRefused {
            host: "node1".into(),
            user: "pi".into(),
        };
        assert_eq!(e.to_string(), "sudo refused the password for pi on node1");
        assert!(!e.is_unreachable());
    }

    #[test]
    fn excerpt_is_bounded() {
        let long = "x".repeat(2000);
        assert!(excerpt(long.as_bytes()).len() <= 504);
        assert_eq!(excerpt(b"  a\nb\n"), "a | b");
    }
}
