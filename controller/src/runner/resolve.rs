//! A run reads every secret the inventory names by its source (secret K3s
//! settings, registry credentials) once, before any node is contacted:
//! an unset variable or an open file stops the run with nothing touched,
//! naming the setting, never the value.

use super::RunError;
use crate::inventory::{Inventory, K3sSettings, K3sValue, SecretSetting};
use crate::state;

/// `inv` with every secret setting's value in place of its source.
pub fn resolved(inv: &Inventory) -> Result<Inventory, RunError> {
    let mut out = inv.clone();
    settings(&mut out.cluster.server_config, "[cluster] server_config")?;
    settings(&mut out.cluster.agent_config, "[cluster] agent_config")?;
    for node in &mut out.nodes {
        let at = format!("node {} k3s_config", node.name);
        settings(&mut node.k3s_config, &at)?;
    }
    if let Some(r) = &mut out.registries {
        for (at, s) in r.secrets_mut() {
            read(s, &format!("[registries.configs] {at}"))?;
        }
    }
    Ok(out)
}

fn settings(map: &mut K3sSettings, at: &str) -> Result<(), RunError> {
    for (key, value) in map.iter_mut() {
        if let K3sValue::Secret(s) = value {
            read(s, &format!("{at} {key}"))?;
        }
    }
    Ok(())
}

fn read(s: &mut SecretSetting, what: &str) -> Result<(), RunError> {
    if let SecretSetting::From(source) = s {
        let value = state::read_source(source, "secret setting").map_err(|source| {
            RunError::SettingSecret {
                what: what.to_string(),
                source,
            }
        })?;
        *s = SecretSetting::Value(value);
    }
    Ok(())
}
