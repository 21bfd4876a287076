//! The desired state of one node, built by one pure function from the
//! inventory, the node's arch and what the run found out.

use crate::agent_binary::{AgentBinary, AgentBinaryError};
use crate::facts;
use crate::inventory::{Inventory, Node, Role};
use crate::render;
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
}

/// Whether `node` is an HA server that joins the first one.
pub fn joins(inv: &Inventory, node: &Node) -> bool {
    inv.cluster.ha
        && node.role == Role::Server
        && inv
            .servers()
            .next()
            .is_some_and(|first| first.name != node.name)
}

pub fn desired(inv: &Inventory, node: &Node, i: Inputs<'_>) -> Desired {
    let role = node.role;
    // An agent's join config is known only once its server runs: the
    // agents phase fills it in from the server's token.
    let config = match (role, i.secret) {
        (Role::Server, Some(s)) => {
            let token = if joins(inv, node) {
                i.server_token.unwrap_or(s)
            } else {
                s
            };
            let config = render::server_config(inv, node, token, i.agent_secret);
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
        agent_access: None,
        k3s_settings: render::node_settings(inv, node),
    }
}
