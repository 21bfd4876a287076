//! Proving who we are to a node: an OpenSSH private key file or ssh-agent.
//!
//! Keys are loaded (and decrypted) before connecting, so a passphrase prompt
//! does not eat into the connect timeout. A passphrase comes from an
//! environment variable named by the caller, else from a prompt callback the
//! caller supplies (the CLI asks on the TTY), else loading fails with a hint.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use russh::client::{Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

use super::error::TransportError;
use crate::secret::Secret;

/// Asks a human for the passphrase of the key at the given path; `None` when
/// there is nobody to ask (no TTY) or they declined. Called on a blocking
/// thread, once per connection that needs it: a caller connecting to many
/// nodes should remember the answer inside the closure.
pub type PassphrasePrompt = Arc<dyn Fn(&Path) -> Option<Secret> + Send + Sync>;

/// How to authenticate: the inventory's choice, taken as it is.
pub use crate::inventory::SshAuth as Auth;

/// A key ready to sign, or the agent to ask.
pub(crate) enum Credentials {
    Key(Arc<PrivateKey>),
    Agent,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Key(k) => write!(f, "Key({})", k.algorithm().as_str()),
            Credentials::Agent => f.write_str("Agent"),
        }
    }
}

/// Load what [`Auth`] names. May call `prompt` (blocking, on a blocking
/// thread) for an encrypted key.
pub(crate) async fn load(
    auth: &Auth,
    prompt: Option<&PassphrasePrompt>,
) -> Result<Credentials, TransportError> {
    let (path, passphrase_env) = match auth {
        Auth::Agent => return Ok(Credentials::Agent),
        Auth::Key {
            path,
            passphrase_env,
        } => (path, passphrase_env),
    };
    let key_load = |source| TransportError::KeyLoad {
        path: path.clone(),
        source,
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| key_load(e.into()))?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => return Ok(Credentials::Key(Arc::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => return Err(key_load(e)),
    }
    let from_env = passphrase_env
        .as_deref()
        .and_then(|var| std::env::var(var).ok())
        .map(Secret::new);
    let passphrase = match (from_env, prompt) {
        (Some(p), _) => p,
        (None, Some(prompt)) => {
            let prompt = Arc::clone(prompt);
            let for_prompt = path.clone();
            tokio::task::spawn_blocking(move || prompt(&for_prompt))
                .await
                .ok()
                .flatten()
                .ok_or_else(|| missing_passphrase(path, passphrase_env.as_deref()))?
        }
        (None, None) => return Err(missing_passphrase(path, passphrase_env.as_deref())),
    };
    let key = russh::keys::decode_secret_key(&text, Some(passphrase.expose())).map_err(key_load)?;
    Ok(Credentials::Key(Arc::new(key)))
}

fn missing_passphrase(path: &Path, env: Option<&str>) -> TransportError {
    let hint = match env {
        Some(var) => format!("set the environment variable {var}, or run pictl on a terminal"),
        None => "name an environment variable holding it, run pictl on a terminal, or use \
                 ssh-agent"
            .to_owned(),
    };
    TransportError::KeyPassphraseMissing {
        path: path.to_path_buf(),
        hint,
    }
}

/// Authenticate `user` on an established session.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    host: &str,
    user: &str,
    credentials: &Credentials,
) -> Result<(), TransportError> {
    let failed = |method: &str| TransportError::Auth {
        host: host.to_owned(),
        user: user.to_owned(),
        method: method.to_owned(),
    };
    let handshake = |source| TransportError::Handshake {
        host: host.to_owned(),
        source,
    };
    match credentials {
        Credentials::Key(key) => {
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(handshake)?
                    .flatten()
            } else {
                None
            };
            let result = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::clone(key), hash))
                .await
                .map_err(handshake)?;
            if result.success() {
                Ok(())
            } else {
                Err(failed("publickey: the node did not accept the key"))
            }
        }
        Credentials::Agent => {
            let mut agent = AgentClient::connect_env()
                .await
                .map_err(|source| TransportError::Agent { source })?;
            let identities = agent
                .request_identities()
                .await
                .map_err(|source| TransportError::Agent { source })?;
            let mut tried = 0;
            for identity in identities {
                let AgentIdentity::PublicKey { key, .. } = identity else {
                    continue;
                };
                tried += 1;
                let hash = if key.algorithm().is_rsa() {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(handshake)?
                        .flatten()
                } else {
                    None
                };
                // An agent refusing to sign one key is no reason not to try
                // the next one.
                if let Ok(result) = handle
                    .authenticate_publickey_with(user, key, hash, &mut agent)
                    .await
                    && result.success()
                {
                    return Ok(());
                }
            }
            Err(failed(&format!(
                "ssh-agent: none of its {tried} key(s) was accepted"
            )))
        }
    }
}
