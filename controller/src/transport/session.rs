//! Opening the SSH session to a node: over TCP, or through its jump hosts
//! (OpenSSH's `ProxyJump`), one session per hop, each next session run over
//! a `direct-tcpip` channel of the one before.
//!
//! Every hop is a full SSH session of its own: its host key is checked
//! against known_hosts under the node's policy before anything is sent, it
//! authenticates with its own user and key, and the connect timeout applies
//! to each hop. Errors name the hop ("jump host bastion (10.0.0.9:22)").
//! The edge: the trust decisions are [`super::handshake`]'s, proving who we
//! are is [`super::auth`]'s; what runs on the node is [`super::ssh`]'s.

use std::sync::{Arc, Mutex};

use russh::client::{self, Handle};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::auth;
use super::error::TransportError;
use super::handshake::{CheckError, HostKeyCheck, client_config, load_known_hosts};
use super::known_hosts::{self, HostKeyPolicy};
use super::target::{Jump, SshTarget};

/// An authenticated session whose host key was checked.
pub(super) type Session = Handle<HostKeyCheck>;

/// The node's session and the jump hosts' it runs through (kept open as
/// long as the node's: dropping one ends every session after it).
pub(super) struct Chain {
    pub(super) jumps: Vec<Session>,
    pub(super) node: Session,
    /// The fingerprint of the node's key, when a read-only run accepted it
    /// without recording it.
    pub(super) unrecorded: Option<String>,
}

/// Connects to each jump host in turn, then to the node through the last.
pub(super) async fn connect(target: &SshTarget) -> Result<Chain, TransportError> {
    let mut jumps: Vec<Session> = Vec::new();
    let mut via_name = String::new();
    for jump in &target.jumps {
        let hop = hop_target(target, jump);
        let via = jumps.last().map(|s| (s, via_name.as_str()));
        let (session, _) = open(&hop, via).await?;
        via_name = hop.name;
        jumps.push(session);
    }
    let via = jumps.last().map(|s| (s, via_name.as_str()));
    let (node, unrecorded) = open(target, via).await?;
    Ok(Chain {
        jumps,
        node,
        unrecorded,
    })
}

/// A jump host as a target: named for messages, checked under the node's
/// policy and known_hosts settings, never given sudo.
fn hop_target(node: &SshTarget, jump: &Jump) -> SshTarget {
    let name = format!("jump host {} ({}:{})", jump.name, jump.address, jump.port);
    let mut t = SshTarget::new(
        name,
        &jump.address,
        &jump.user,
        jump.auth.clone(),
        &jump.known_hosts,
    );
    t.port = jump.port;
    t.passphrase_prompt = node.passphrase_prompt.clone();
    t.system_known_hosts = node.system_known_hosts.clone();
    // A key the user confirmed is the node's: a new jump host key is not.
    t.policy = match node.confirmed_new_key {
        Some(_) => HostKeyPolicy::Strict,
        None => node.policy,
    };
    t.record_new_keys = node.record_new_keys;
    t.connect_timeout = node.connect_timeout;
    t.keepalive = node.keepalive;
    t
}

/// One session, within the target's connect timeout: the stream (TCP, or a
/// channel of `via`), the host-key check, authentication.
async fn open(
    target: &SshTarget,
    via: Option<(&Session, &str)>,
) -> Result<(Session, Option<String>), TransportError> {
    let credentials = auth::load(&target.auth, target.passphrase_prompt.as_ref()).await?;
    let lookup = known_hosts::lookup_name(&target.address, target.port);
    let known = load_known_hosts(target)?;
    let config = Arc::new(client_config(target, &known, &lookup));
    let unrecorded = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        host: target.name.clone(),
        lookup,
        principal: target.address.to_ascii_lowercase(),
        path: target.known_hosts.clone(),
        policy: target.policy,
        record: target.record_new_keys,
        confirmed: target.confirmed_new_key.clone(),
        known,
        unrecorded: unrecorded.clone(),
    };
    let address = format!("{}:{}", target.address, target.port);
    let session = async {
        let stream = stream(target, via, &address).await?;
        let mut handle = client::connect_stream(config, stream, check)
            .await
            .map_err(|e| match e {
                CheckError::Rejected(e) => *e,
                CheckError::Ssh(source) => TransportError::Handshake {
                    host: target.name.clone(),
                    source,
                },
            })?;
        auth::authenticate(&mut handle, &target.name, &target.user, &credentials).await?;
        Ok(handle)
    };
    let handle = tokio::time::timeout(target.connect_timeout, session)
        .await
        .map_err(|_| TransportError::ConnectTimeout {
            host: target.name.clone(),
            address,
            after: target.connect_timeout,
        })??;
    let unrecorded = unrecorded.lock().unwrap_or_else(|e| e.into_inner()).take();
    Ok((handle, unrecorded))
}

/// What an SSH session can run over.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A TCP connection to the target, or a `direct-tcpip` channel to it
/// opened by the jump host before it.
async fn stream(
    target: &SshTarget,
    via: Option<(&Session, &str)>,
    address: &str,
) -> Result<Box<dyn Stream>, TransportError> {
    let Some((jump, jump_name)) = via else {
        let tcp = TcpStream::connect((target.address.as_str(), target.port))
            .await
            .map_err(|source| TransportError::Connect {
                host: target.name.clone(),
                address: address.to_owned(),
                source,
            })?;
        // Commands are small request/response exchanges: Nagle plus
        // delayed ACKs would add tens of milliseconds to each.
        let _ = tcp.set_nodelay(true);
        return Ok(Box::new(tcp));
    };
    let channel = jump
        .channel_open_direct_tcpip(
            target.address.clone(),
            u32::from(target.port),
            "127.0.0.1",
            0,
        )
        .await
        .map_err(|source| TransportError::JumpForward {
            host: target.name.clone(),
            address: address.to_owned(),
            jump: jump_name.to_owned(),
            source: Box::new(source),
        })?;
    Ok(Box::new(channel.into_stream()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jump() -> Jump {
        Jump {
            name: "bastion".into(),
            address: "10.0.0.9".into(),
            port: 2222,
            user: "admin".into(),
            auth: auth::Auth::Agent,
            known_hosts: "/hop/known_hosts".into(),
        }
    }

    #[test]
    fn a_hop_is_checked_with_its_own_known_hosts_under_the_nodes_policy() {
        let mut node = SshTarget::new("n", "10.0.0.2", "pi", auth::Auth::Agent, "/kh");
        node.policy = HostKeyPolicy::AcceptNew;
        node.record_new_keys = false;
        let hop = hop_target(&node, &jump());
        assert_eq!(hop.name, "jump host bastion (10.0.0.9:2222)");
        assert_eq!((hop.address.as_str(), hop.port), ("10.0.0.9", 2222));
        assert_eq!(hop.user, "admin");
        assert_eq!(
            hop.known_hosts,
            std::path::PathBuf::from("/hop/known_hosts")
        );
        assert_eq!(hop.policy, HostKeyPolicy::AcceptNew);
        assert!(
            !hop.record_new_keys,
            "a read-only run records no hop key either"
        );
        assert!(matches!(hop.sudo, super::super::SudoMode::None));
    }

    #[test]
    fn a_key_confirmed_for_the_node_does_not_let_a_new_hop_key_in() {
        let mut node = SshTarget::new("n", "10.0.0.2", "pi", auth::Auth::Agent, "/kh");
        node.policy = HostKeyPolicy::AcceptNew;
        node.confirmed_new_key = Some("SHA256:node".into());
        let hop = hop_target(&node, &jump());
        assert_eq!(hop.policy, HostKeyPolicy::Strict);
        assert_eq!(hop.confirmed_new_key, None);
    }
}
