//! The cluster secret: adopted from a running server rather than replaced
//! (a lost state directory must not break the cluster), refused when the
//! inventory's differs from the running one. Deciding reads only; what a
//! decision records or generates is written by [`SecretPlan::settle`].

use super::error::RunError;
use crate::facts::Facts;
use crate::inventory::{Inventory, SecretSource};
use crate::secret::Secret;
use crate::state;
use crate::write::Writer;

/// Where a secret of this run comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlan {
    /// None: the cluster runs without one (or a plan before it has one).
    Without,
    /// This one, already recorded where it belongs.
    Use(Secret),
    /// This one (adopted from a running server), recorded in the state
    /// directory's file of that name.
    Record(Secret, &'static str),
    /// A new one, generated once into the state directory's file.
    Generate(&'static str),
}

impl SecretPlan {
    /// The secret as a plan sees it (`None` until one is generated).
    pub fn planned(&self) -> Option<Secret> {
        match self {
            SecretPlan::Use(s) | SecretPlan::Record(s, _) => Some(s.clone()),
            SecretPlan::Without | SecretPlan::Generate(_) => None,
        }
    }

    /// The secret, recorded or generated as decided.
    pub fn settle(&self, inv: &Inventory, w: &Writer) -> Result<Option<Secret>, RunError> {
        match self {
            SecretPlan::Record(s, name) => state::record_secret(inv, name, s, w)?,
            SecretPlan::Generate(name) => return Ok(Some(state::generated(inv, name, w)?)),
            SecretPlan::Use(_) | SecretPlan::Without => {}
        }
        Ok(self.planned())
    }
}

/// The `<secret>` of a `K10<ca-hash>::<user>:<secret>` token (server or node).
fn secret_of(token: &Secret) -> &str {
    crate::secret::token_password(token.expose())
}

/// The cluster secret to configure servers with. A running server's
/// secret wins over generating a new one (a lost state directory must not
/// break the cluster), and a configured secret that differs from the
/// running one is an error: K3s cannot change it by a restart.
pub fn cluster_secret(
    inv: &Inventory,
    server: Option<(&str, &Facts)>,
) -> Result<SecretPlan, RunError> {
    let running = server.and_then(|(name, f)| {
        f.server_token
            .as_ref()
            .map(|t| (name, Secret::new(secret_of(t))))
    });
    let configured = match (state::configured_secret(inv)?, running) {
        (Some(c), running) => (c, running),
        (None, Some((_, s))) => return Ok(SecretPlan::Record(s, "token")),
        (None, None) => return Ok(SecretPlan::Generate("token")),
    };
    if let (c, Some((name, s))) = &configured
        && s != c
    {
        let source = match &inv.cluster.token {
            SecretSource::Env(v) => format!("${v}"),
            SecretSource::File(p) => p.display().to_string(),
            SecretSource::Generated => inv.cluster.state_dir.join("token").display().to_string(),
        };
        return Err(RunError::TokenMismatch {
            server: name.to_string(),
            from: source,
        });
    }
    Ok(SecretPlan::Use(configured.0))
}

/// The agents' join secret. A server that has an agent token keeps it (and
/// the state directory records it); a server that runs without one keeps
/// running without one (agents join with the server token, and nothing
/// restarts) unless the inventory says `add_agent_token = true`; a new
/// cluster gets one, generated once into the state directory, so agents
/// never hold the server token.
pub fn agent_secret(inv: &Inventory, server: Option<&Facts>) -> Result<SecretPlan, RunError> {
    let running = server.and_then(|f| f.agent_token.as_ref());
    // `agent_token = { env | file }`: that one, given to a server that runs
    // without one (a restart); a server running another is refused.
    if let Some(configured) = state::configured_agent_secret(inv)? {
        if running.is_some_and(|r| secret_of(r) != configured.expose()) {
            let from = match &inv.cluster.agent_token {
                SecretSource::Env(v) => format!("${v}"),
                SecretSource::File(p) => p.display().to_string(),
                SecretSource::Generated => String::new(),
            };
            return Err(RunError::AgentTokenMismatch { from });
        }
        return Ok(SecretPlan::Use(configured));
    }
    let recorded = state::recorded(inv, "agent-token")?;
    let server_token = server.and_then(|f| f.server_token.as_ref());
    Ok(match (running, server_token, recorded) {
        (Some(running), _, None) => {
            SecretPlan::Record(Secret::new(secret_of(running)), "agent-token")
        }
        (Some(running), _, Some(_)) => SecretPlan::Use(Secret::new(secret_of(running))),
        (None, Some(_), _) if !inv.cluster.add_agent_token => SecretPlan::Without,
        (None, Some(_), Some(s)) => SecretPlan::Use(s),
        (None, Some(_), None) => SecretPlan::Generate("agent-token"),
        (None, None, Some(s)) => SecretPlan::Use(s),
        (None, None, None) => SecretPlan::Generate("agent-token"),
    })
}
