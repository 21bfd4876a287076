//! The desired state of one node, built by one pure function from the
//! inventory, the node's arch and what the run found out.

use crate::agent_binary::{AgentBinary, AgentBinaryError};
use crate::facts;
use crate::inventory::{Inventory, Node, Role};
use crate::render::{self, Start};
use crate::secret::Secret;
use crate::step::{Desired, DesiredConfig};

/// What the run knows that a node's desired state depends on.
pub struct Inputs<'a> {
    pub version: &'a str,
    /// The release's sha256 of the binary for the node's arch.
    pub binary_sha256: String,
    /// The cluster secret (servers) — `None` only in a plan of a new cluster.
    pub secret: Option<&'a Secret>,
    /// The agents' join secret a server is configured with, if any.
    pub agent_secret: Option<&'a Secret>,
    /// The running cluster's full server token (`K10<ca-hash>::server:<secret>`):
    /// HA servers other than the first join with it, so the CA is pinned.
    pub server_token: Option<&'a Secret>,
    /// The health agent binary (`None`: disabled).
    pub agent: Option<Result<AgentBinary, AgentBinaryError>>,
    /// The agent unit's firewall drop-in ([`crate::steps::dropin`]).
    pub agent_dropin: String,
    /// How a server starts its datastore ([`super::holder::start`]).
    pub start: Start,
}

/// Whether a server starting as `start` joins a running one.
pub fn joins(start: &Start) -> bool {
    matches!(start, Start::Join(_))
}

/// Why a joining server's config is not known yet.
pub const JOIN_PENDING: &str = "join config with the cluster's full token (K10<ca-hash>: the CA pinned), read once a server runs";

/// The token an HA server joins with: the first server's full token, for
/// the cluster's secret (parsed as K3s parses it), with the CA hash that
/// makes the joiner check the CA it is given. Never the bare secret: a
/// joiner without the hash trusts whoever answers first.
pub fn join_token<'a>(server_token: Option<&'a Secret>, secret: &Secret) -> Option<&'a Secret> {
    server_token.filter(|t| {
        crate::secret::token_ca_hash(t.expose()).is_some()
            && crate::secret::token_password(t.expose()) == secret.expose()
    })
}

pub fn desired(inv: &Inventory, node: &Node, i: Inputs<'_>) -> Desired {
    let role = node.role;
    // An agent's join config is known only once its server runs: the
    // agents phase fills it in from the server's token.
    let config = match (role, i.secret) {
        (Role::Server, Some(s)) if joins(&i.start) => match join_token(i.server_token, s) {
            Some(token) => {
                let config = render::server_config_as(inv, node, &i.start, token, i.agent_secret);
                DesiredConfig::Known(Secret::new(config))
            }
            None => DesiredConfig::Pending(JOIN_PENDING),
        },
        (Role::Server, Some(s)) => {
            let config = render::server_config_as(inv, node, &i.start, s, i.agent_secret);
            DesiredConfig::Known(Secret::new(config))
        }
        (Role::Server, None) => {
            DesiredConfig::Pending("config with a newly generated cluster secret")
        }
        (Role::Agent, _) => {
            DesiredConfig::Pending("join config (token read from the server once it is installed)")
        }
    };
    Desired {
        version: i.version.to_string(),
        binary_sha256: i.binary_sha256,
        config,
        registries: render::registries(inv).map(Secret::new),
        unit_name: render::unit_name(role),
        unit_path: match role {
            Role::Server => facts::paths::SERVER_UNIT,
            Role::Agent => facts::paths::AGENT_UNIT,
        },
        unit: render::unit_file(role),
        agent: i.agent,
        agent_dropin: i.agent_dropin,
        k3s_from: Default::default(),
        agent_from: Default::default(),
        airgap: None,
        images_from: Default::default(),
        agent_access: None,
        k3s_settings: render::node_settings(inv, node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joiner_gets_only_a_full_token_for_the_clusters_secret() {
        let secret = Secret::new("pass:word");
        let full = Secret::new("K10abc::server:pass:word");
        assert_eq!(join_token(Some(&full), &secret), Some(&full));
        // No CA hash: the joiner would trust any CA it meets first.
        for refused in ["K10::server:pass:word", "pass:word", "K10abc::server:other"] {
            let t = Secret::new(refused);
            assert_eq!(join_token(Some(&t), &secret), None, "{refused}");
        }
        assert_eq!(join_token(None, &secret), None);
    }
}
