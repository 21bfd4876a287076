//! Reaching nodes: the [`Connector`] seam (SSH in real life), connection
//! retries for transient network errors, and the one-round-trip facts
//! gathering every command starts with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::node_lock;
use crate::facts::{self, Facts, FactsError};
use crate::inventory::{Node, Role, SecretSource};
use crate::secret::Secret;
use crate::state;
use crate::transport::{
    self, BoxFuture, RemoteCommand, SshTarget, SshTransport, SudoMode, Transport, TransportError,
};
use crate::write::Writer;

/// Opens a transport to a node.
pub trait Connector: Send + Sync {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>>;
}

/// Asks on the terminal for a key's passphrase, once per key file, when
/// stdin is a terminal; `None` (never asks) otherwise.
pub fn terminal_prompt() -> Option<transport::PassphrasePrompt> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let asked: std::sync::Mutex<BTreeMap<std::path::PathBuf, Secret>> = Default::default();
    Some(Arc::new(move |path: &std::path::Path| {
        let mut asked = asked.lock().ok()?;
        if let Some(s) = asked.get(path) {
            return Some(s.clone());
        }
        let answer =
            rpassword::prompt_password(format!("Passphrase for {}: ", path.display())).ok()?;
        let secret = Secret::new(answer);
        asked.insert(path.to_path_buf(), secret.clone());
        Some(secret)
    }))
}

/// The real connector: SSH with the node's merged settings.
#[derive(Default)]
pub struct SshConnector {
    /// Asks for an encrypted key's passphrase when its variable is unset.
    prompt: Option<transport::PassphrasePrompt>,
    /// Read-only commands accept new host keys (`accept-new`) without
    /// writing them to known_hosts.
    read_only: bool,
}

impl SshConnector {
    /// A connector that prompts on the terminal for key passphrases (once
    /// per key file), when stdin is a terminal; otherwise never prompts.
    pub fn interactive() -> Self {
        Self {
            prompt: terminal_prompt(),
            read_only: false,
        }
    }

    /// For `plan` and `status`: nothing is written, known_hosts included.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

impl Connector for SshConnector {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>> {
        Box::pin(async move {
            let s = &node.ssh;
            let mut target = SshTarget::new(
                &node.name,
                s.host_name.as_deref().unwrap_or(&node.address),
                &s.user,
                s.auth.clone(),
                &s.known_hosts,
            );
            target.port = s.port;
            target.passphrase_prompt = self.prompt.clone();
            target.connect_timeout = s.connect_timeout;
            target.policy = s.host_key_policy;
            target.record_new_keys = !self.read_only;
            target.jumps = s.proxy_jump.clone();
            target.sudo = match (&s.sudo_password, s.sudo) {
                (_, false) => SudoMode::None,
                (None, true) => SudoMode::Passwordless,
                // `sudo_passwords_available` ran before any connection.
                (Some(src), true) => {
                    sudo_password(src).map_or(SudoMode::Passwordless, SudoMode::Password)
                }
            };
            let t = SshTransport::connect(target).await?;
            Ok(Arc::new(t) as Arc<dyn Transport>)
        })
    }
}

fn sudo_password(src: &SecretSource) -> Option<Secret> {
    match src {
        SecretSource::Env(v) => std::env::var(v)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        SecretSource::File(p) => state::read_secret_file(p).ok(),
        SecretSource::Generated => None,
    }
}

/// Every configured sudo password must resolve before anything connects:
/// falling back to passwordless sudo would only fail later, less clearly.
pub fn sudo_passwords_available(nodes: &[Node]) -> Result<(), (String, String)> {
    for node in nodes {
        let Some(src) = node.ssh.sudo_password.as_ref().filter(|_| node.ssh.sudo) else {
            continue;
        };
        if sudo_password(src).is_none() {
            let why = match src {
                SecretSource::Env(v) => format!("environment variable {v} is not set"),
                SecretSource::File(p) => match state::read_secret_file(p) {
                    Err(e) => crate::error_chain(&e),
                    Ok(_) => format!("{} is unusable", p.display()),
                },
                SecretSource::Generated => "a sudo password cannot be generated".into(),
            };
            return Err((node.name.clone(), why));
        }
    }
    Ok(())
}

/// Connects, retrying twice (after 0.5 s, then 1 s) when the node looks
/// unreachable: a Pi's Wi-Fi drops packets; a wrong host key never heals.
pub async fn connect_with_retry(
    connector: &dyn Connector,
    node: &Node,
) -> Result<Arc<dyn Transport>, TransportError> {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match connector.connect(node).await {
            Err(e) if e.is_unreachable() && attempt < 3 => {
                tracing::debug!(node = %node.name, attempt, error = %e, "connect failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error("gathering facts")]
    Transport(#[from] TransportError),
    #[error("the facts script failed (exit {status}): {stderr}")]
    Script { status: i32, stderr: String },
    #[error(transparent)]
    Parse(#[from] FactsError),
    #[error("locking the node")]
    Lock(#[from] node_lock::LockError),
}

impl GatherError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, GatherError::Transport(e) | GatherError::Lock(node_lock::LockError::Transport(e)) if e.is_unreachable())
    }
}

pub(super) fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Gathers a node's facts in one round trip (servers also hand over their
/// join token and admin kubeconfig; agents never send secrets). Reads only.
pub async fn gather(t: &dyn Transport, node: &Node) -> Result<Facts, GatherError> {
    run_script(t, node, "no-record").await
}

/// [`gather`], and the node brings its hash cache up to date (`apply`).
pub async fn gather_recording(
    t: &dyn Transport,
    node: &Node,
    _w: &Writer,
) -> Result<Facts, GatherError> {
    run_script(t, node, "record").await
}

/// [`gather_recording`] under the node lock, in the same round trip: the
/// lock is then held for as long as `t`'s connection lives. A node another
/// run holds is [`GatherError::Lock`], its facts unread.
pub async fn gather_locked(
    t: &dyn Transport,
    node: &Node,
    w: &Writer,
) -> Result<Facts, GatherError> {
    let out = node_lock::run_locked(t, &facts_command(node, "record"), w).await?;
    parse(out)
}

fn facts_command(node: &Node, record: &str) -> RemoteCommand {
    let secrets = if node.role == Role::Server {
        "secrets"
    } else {
        "no-secrets"
    };
    // The image archive's name depends on the arch this run finds out:
    // every arch's is hashed (only the one that exists costs anything).
    let images = node
        .airgap_images
        .iter()
        .flat_map(|dir| crate::arch::Arch::ALL.map(|a| format!("{dir}/{}", a.airgap_asset())));
    RemoteCommand::script(facts::SCRIPT)
        .arg(secrets)
        .arg(record)
        .args(facts::paths::MANAGED)
        .args(images)
        .sudo(node.ssh.sudo)
        .timeout(Duration::from_secs(60))
}

async fn run_script(t: &dyn Transport, node: &Node, record: &str) -> Result<Facts, GatherError> {
    parse(t.exec(&facts_command(node, record)).await?)
}

fn parse(out: crate::transport::Output) -> Result<Facts, GatherError> {
    if !out.success() {
        return Err(GatherError::Script {
            status: out.status,
            stderr: out.stderr_text().trim().to_string(),
        });
    }
    Ok(Facts::parse(&out.stdout_text(), now_epoch())?)
}
