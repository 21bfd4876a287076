//! Taking over a node that K3s's install.sh (or a person) set up: import
//! what its unit's `ExecStart`, its `.service.env` and a foreign
//! config.yaml tell K3s, compare it with what pictl would write, and say
//! whether pictl's files would change how K3s runs. Pure: facts bring the
//! files' text, the `k3s-adopt` step acts on the verdict.

pub mod carried;
pub mod compare;
pub mod env;
pub mod exec;
pub mod import;
mod view;

use std::collections::BTreeMap;

use crate::secret::Secret;

pub use compare::{NodeView, Verdict};
pub use import::{Imported, Value};

/// The text of a K3s install pictl did not write, as found on the node.
/// All three may hold the token (`--token` in ExecStart, `K3S_TOKEN`,
/// `token:`), so they are kept as secrets: never in a log or a Debug dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The role's unit file (`/etc/systemd/system/k3s.service`, …).
    pub unit: Secret,
    /// Its `.service.env`, when present.
    pub env: Option<Secret>,
    /// `/etc/rancher/k3s/config.yaml` when present and not pictl's.
    pub config: Option<Secret>,
}

/// What adopting the node means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub imported: Imported,
    pub verdict: Verdict,
    /// The `.service.env` without the variables pictl moves into config.yaml.
    pub env_rest: Option<Secret>,
}

/// The settings of a config.yaml text, typed by K3s's flags.
pub fn config_keys(config: &str, server: bool) -> BTreeMap<String, Value> {
    let command = if server { "server" } else { "agent" };
    let exec = ["k3s".to_string(), command.to_string()];
    import::import(&exec, &BTreeMap::new(), Some(config)).keys
}

/// Compares `found` with pictl's `desired` config.yaml text for the node.
pub fn assess(found: &Foreign, desired: &str, view: NodeView<'_>) -> Assessment {
    let exec = exec::exec_start(found.unit.expose()).unwrap_or_default();
    let vars = found
        .env
        .as_ref()
        .map(|e| env::parse(e.expose()))
        .unwrap_or_default();
    let imported = import::import(&exec, &vars, found.config.as_ref().map(Secret::expose));
    let server = imported.command == "server";
    let verdict = compare::compare(&imported, &config_keys(desired, server), view);
    let used: Vec<&str> = imported.env_used.iter().map(String::as_str).collect();
    let env_rest = found
        .env
        .as_ref()
        .map(|text| Secret::new(env::without(text.expose(), &used)));
    Assessment {
        imported,
        verdict,
        env_rest,
    }
}
