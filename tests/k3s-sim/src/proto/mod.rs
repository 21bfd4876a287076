//! Protobuf request bodies, as kubectl's typed clients send them for built-in
//! kinds since kubectl 1.32 (`kubectl create configmap|secret|namespace|
//! deployment|service ...`, `kubectl run`), turned into the JSON object the
//! simulator stores.
//!
//! The envelope is the 4-byte magic `k8s\0` and a `runtime.Unknown` whose
//! TypeMeta names the kind and whose `raw` holds the object's message
//! (kubernetes staging/src/k8s.io/apimachinery/pkg/runtime/serializer/protobuf/
//! protobuf.go, `Serializer.Decode`; runtime/generated.proto). The messages
//! are k8s-pb's; each kind's converter moves the fields it knows into JSON
//! under their JSON names, leaving out zero values as the JSON serializer's
//! `omitempty` does. Whatever is left must be all zero (the Go encoder writes
//! every non-pointer field, set or not): a field the simulator cannot convert
//! makes the body refused, never stored without it.

use prost::Message;
use serde_json::{Map, Value, json};

mod core;
mod meta;
mod rbac;
mod workloads;

/// The media type of a protobuf body.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// A converted object, or why the body cannot be stored.
pub(crate) type Conv = Result<Value, String>;

/// The JSON body for a protobuf one: `{"apiVersion", "kind", ...}`.
pub fn to_json(body: &[u8]) -> Result<Vec<u8>, String> {
    let raw = body
        .strip_prefix(b"k8s\0")
        .ok_or("the body does not start with the protobuf magic k8s\\0")?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(raw)
        .map_err(|e| format!("not a runtime.Unknown: {e}"))?;
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err("a content encoding is not supported".into());
    }
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let inner = unknown.raw.unwrap_or_default();
    let object = convert(&api_version, &kind, &inner)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = object {
        out.extend(fields);
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| e.to_string())
}

fn convert(api_version: &str, kind: &str, raw: &[u8]) -> Conv {
    match (api_version, kind) {
        ("v1", "ConfigMap") => core::config_map(decode(raw)?),
        ("v1", "Secret") => core::secret(decode(raw)?),
        ("v1", "Namespace") => core::namespace(decode(raw)?),
        ("v1", "ServiceAccount") => core::service_account(decode(raw)?),
        ("v1", "Service") => core::service(decode(raw)?),
        ("v1", "ResourceQuota") => core::resource_quota(decode(raw)?),
        ("v1", "Pod") => workloads::pod(decode(raw)?),
        ("apps/v1", "Deployment") => workloads::deployment(decode(raw)?),
        ("policy/v1", "PodDisruptionBudget") => workloads::pod_disruption_budget(decode(raw)?),
        ("policy/v1", "Eviction") => workloads::eviction(decode(raw)?),
        ("rbac.authorization.k8s.io/v1", "Role") => rbac::role(decode(raw)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => rbac::cluster_role(decode(raw)?),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => rbac::role_binding(decode(raw)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            rbac::cluster_role_binding(decode(raw)?)
        }
        _ => Err(format!("no protobuf conversion for {api_version} {kind}")),
    }
}

fn decode<T: Message + Default>(raw: &[u8]) -> Result<T, String> {
    T::decode(raw).map_err(|e| format!("not a valid message: {e}"))
}

/// Fails unless what is left of `msg` after its converter took the fields it
/// knows encodes to zero values only.
pub(crate) fn rest<T: Message>(msg: &T, what: &str) -> Result<(), String> {
    if all_zero(&msg.encode_to_vec()) {
        Ok(())
    } else {
        Err(format!(
            "{what} has fields the simulator cannot convert from protobuf"
        ))
    }
}

/// Whether every field on the wire is a zero: varint 0, an empty string or
/// bytes, a message whose fields are all zero, fixed-width zeros.
fn all_zero(mut b: &[u8]) -> bool {
    while !b.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut b) else {
            return false;
        };
        let zero = match key & 7 {
            0 => prost::encoding::decode_varint(&mut b) == Ok(0),
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                let Some((head, tail)) = b.split_at_checked(n) else {
                    return false;
                };
                b = tail;
                head.iter().all(|x| *x == 0)
            }
            2 => {
                let Ok(len) = prost::encoding::decode_varint(&mut b) else {
                    return false;
                };
                let Some((inner, tail)) = usize::try_from(len)
                    .ok()
                    .and_then(|n| b.split_at_checked(n))
                else {
                    return false;
                };
                b = tail;
                inner.is_empty() || all_zero(inner)
            }
            _ => false,
        };
        if !zero {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
