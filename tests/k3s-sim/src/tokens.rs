//! Legacy ServiceAccount token Secrets, as kubernetes' token controller
//! (pkg/controller/serviceaccount/tokens_controller.go) fills them: a Secret
//! of type `kubernetes.io/service-account-token` annotated with
//! `kubernetes.io/service-account.name` gets, once its ServiceAccount exists,
//! the ServiceAccount's UID annotation and `data.token` (a JWT with the
//! legacy claims of pkg/serviceaccount/legacy.go), `data.ca.crt` and
//! `data.namespace`. The annotation is required at creation
//! (pkg/apis/core/validation/validation.go `ValidateSecret`). The signature is
//! random bytes: tokens are checked against the stored Secret (see `auth`),
//! which is what the apiserver's legacy validator also requires.

use crate::api::Invalid;
use crate::store::{Store, find};
use base64::Engine;
use serde_json::{Value, json};

pub const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
pub const SA_NAME: &str = "kubernetes.io/service-account.name";
pub const SA_UID: &str = "kubernetes.io/service-account.uid";

pub fn validate_secret(obj: &Value, e: &mut Vec<Invalid>) {
    if obj["type"] == TOKEN_TYPE
        && obj["metadata"]["annotations"][SA_NAME]
            .as_str()
            .unwrap_or("")
            .is_empty()
    {
        crate::validate::err(
            e,
            &format!("metadata.annotations[{SA_NAME}]"),
            "FieldValueRequired",
            "Required value".into(),
        );
    }
}

fn jwt(ns: &str, secret: &str, sa: &str, uid: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let kid: [u8; 16] = rand::random();
    let header = json!({"alg": "RS256", "kid": hex::encode(kid)});
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
    });
    let sig: Vec<u8> = (0..256).map(|_| rand::random::<u8>()).collect();
    format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string()),
        b64.encode(sig)
    )
}

/// Fills every token Secret whose ServiceAccount exists and that has no token.
pub fn reconcile(store: &Store, ca_pem: &str) {
    let (Some(secrets), Some(sas)) = (find("", "v1", "secrets"), find("", "v1", "serviceaccounts"))
    else {
        return;
    };
    let mut st = store.lock();
    let todo: Vec<Value> = st
        .list(secrets, None)
        .into_iter()
        .filter(|s| s["type"] == TOKEN_TYPE && s["data"]["token"].is_null())
        .cloned()
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    for mut s in todo {
        let ns = s["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = s["metadata"]["name"].as_str().unwrap_or("").to_string();
        let sa_name = s["metadata"]["annotations"][SA_NAME]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(uid) = st
            .get(sas, &ns, &sa_name)
            .and_then(|sa| sa["metadata"]["uid"].as_str())
            .map(str::to_string)
        else {
            continue;
        };
        s["metadata"]["annotations"][SA_UID] = json!(uid);
        s["data"]["token"] = json!(b64.encode(jwt(&ns, &name, &sa_name, &uid)));
        s["data"]["ca.crt"] = json!(b64.encode(ca_pem));
        s["data"]["namespace"] = json!(b64.encode(&ns));
        if let Err(e) = st.put(secrets, s) {
            crate::error!("filling token secret {ns}/{name}: {e}");
        }
    }
}
