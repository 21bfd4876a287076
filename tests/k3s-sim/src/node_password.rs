//! K3s's node password (pkg/nodepassword): the first registration of a node
//! name stores a hash of its password in the `<name>.node-password.k3s`
//! Secret in kube-system; a later registration with another password is
//! refused. The Secret is owned by its Node, so the garbage collector
//! removes it with the Node (pkg/nodepassword/controller.go onChangeNode).

use crate::nodes::{NodeInfo, RegisterError};
use crate::store::{RESOURCES, ResourceType, State};
use serde_json::{Value, json};

fn secret_rt() -> &'static ResourceType {
    RESOURCES
        .iter()
        .find(|r| r.kind == "Secret")
        .unwrap_or(&RESOURCES[0])
}

fn password_hash(p: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(p.as_bytes()))
}

/// Checks `info`'s password against the stored hash, or stores it on the
/// name's first registration; the Secret's name.
pub fn check(st: &mut State, info: &NodeInfo) -> Result<String, RegisterError> {
    use base64::Engine;
    let secret_name = format!("{}.node-password.k3s", info.name);
    let hash = password_hash(&info.password);
    match st.get(secret_rt(), "kube-system", &secret_name) {
        Some(s) => {
            let stored = s["data"]["hash"]
                .as_str()
                .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
                .unwrap_or_default();
            if stored != hash.as_bytes() {
                return Err(RegisterError::PasswordRejected);
            }
        }
        None => {
            let s = json!({"apiVersion": "v1", "kind": "Secret", "type": "k3s.cattle.io/node-password",
                "metadata": {"name": secret_name, "namespace": "kube-system",
                    "uid": crate::validate::uuid(), "creationTimestamp": crate::log::k8s_now()},
                "immutable": true,
                "data": {"hash": base64::engine::general_purpose::STANDARD.encode(&hash)}});
            st.put(secret_rt(), s).map_err(RegisterError::Store)?;
        }
    }
    Ok(secret_name)
}

/// Makes the stored Node the owner of its node-password Secret.
pub fn owned_by_node(st: &mut State, secret_name: &str, node: &Value) -> Result<(), RegisterError> {
    let owner = json!({"apiVersion": "v1", "kind": "Node", "name": node["metadata"]["name"],
        "uid": node["metadata"]["uid"]});
    if let Some(mut secret) = st.get(secret_rt(), "kube-system", secret_name).cloned()
        && secret["metadata"]["ownerReferences"] != json!([owner])
    {
        crate::info!("Adding node OwnerReference to node-password secret {secret_name}");
        secret["metadata"]["ownerReferences"] = json!([owner]);
        st.put(secret_rt(), secret).map_err(RegisterError::Store)?;
    }
    Ok(())
}
