//! The cluster secret: adopted from a running server rather than replaced
//! (a lost state directory must not break the cluster), refused when the
//! inventory's differs from the running one.

use super::error::RunError;
use crate::facts::Facts;
use crate::inventory::{Inventory, SecretSource};
use crate::secret::Secret;
use crate::state;
use crate::write::Writer;

/// The `<secret>` of a `K10<ca-hash>::<user>:<secret>` token (server or node).
fn secret_of(token: &Secret) -> &str {
    crate::secret::token_password(token.expose())
}

/// The cluster secret to configure servers with. A running server's
/// secret wins over generating a new one (a lost state directory must not
/// break the cluster), and a configured secret that differs from the
/// running one is an error: K3s cannot change it by a restart.
/// With a [`Writer`] (apply), a secret that is adopted or generated is
/// recorded in the state directory; without one nothing is written.
pub fn cluster_secret(
    inv: &Inventory,
    server: Option<(&str, &Facts)>,
    record: Option<&Writer>,
) -> Result<Option<Secret>, RunError> {
    let running = server.and_then(|(name, f)| {
        f.server_token
            .as_ref()
            .map(|t| (name, Secret::new(secret_of(t))))
    });
    let generated_path = inv.cluster.state_dir.join("token");
    let configured = match &inv.cluster.token {
        SecretSource::Generated if !generated_path.exists() => {
            return match (running, record) {
                (Some((_, s)), Some(_)) => {
                    state::record_secret(inv, "token", &s)?;
                    Ok(Some(s))
                }
                (Some((_, s)), None) => Ok(Some(s)),
                (None, Some(_)) => Ok(Some(state::cluster_secret(inv)?)),
                (None, None) => Ok(None),
            };
        }
        _ => state::cluster_secret(inv)?,
    };
    if let Some((name, s)) = running
        && s != configured
    {
        let source = match &inv.cluster.token {
            SecretSource::Env(v) => format!("${v}"),
            SecretSource::File(p) => p.display().to_string(),
            SecretSource::Generated => generated_path.display().to_string(),
        };
        return Err(RunError::TokenMismatch {
            server: name.to_string(),
            from: source,
        });
    }
    Ok(Some(configured))
}

/// The agents' join secret. A server that has an agent token keeps it (and
/// the state directory records it); a server that runs without one keeps
/// running without one (agents join with the server token, and nothing
/// restarts); a new cluster gets one, generated once into the state
/// directory, so agents never hold the server token.
pub fn agent_secret(
    inv: &Inventory,
    server: Option<&Facts>,
    record: Option<&Writer>,
) -> Result<Option<Secret>, RunError> {
    let path = inv.cluster.state_dir.join("agent-token");
    match (
        server.and_then(|f| f.agent_token.as_ref()),
        server.and_then(|f| f.server_token.as_ref()),
    ) {
        (Some(running), _) => {
            let s = Secret::new(secret_of(running));
            if record.is_some() && !path.exists() {
                state::record_secret(inv, "agent-token", &s)?;
            }
            Ok(Some(s))
        }
        (None, Some(_)) => Ok(None),
        (None, None) => match record {
            Some(_) => Ok(Some(state::agent_secret(inv)?)),
            None if path.exists() => Ok(Some(state::read_secret_file(&path)?)),
            None => Ok(None),
        },
    }
}
