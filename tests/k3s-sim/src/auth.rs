//! Authentication on the API port, as the apiserver's union authenticator
//! (staging/src/k8s.io/apiserver/pkg/authentication/request/union) runs it for
//! K3s: a client certificate from the cluster CA first (x509; the only one the
//! simulator issues is the admin's, CN=system:admin, O=system:masters), then a
//! bearer token. Tokens are legacy ServiceAccount token Secrets
//! (pkg/serviceaccount/legacy.go `Validate`): the Secret must exist with that
//! token, and its ServiceAccount with the UID the Secret names. Anything else,
//! or no credentials, is 401 (the anonymous user K3s disables).

use crate::store::{State, find};
use base64::Engine;
use serde_json::Value;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// The admin client certificate: group system:masters, never checked by RBAC.
    Admin,
    ServiceAccount {
        namespace: String,
        name: String,
    },
}

impl User {
    pub fn name(&self) -> String {
        match self {
            User::Admin => "system:admin".into(),
            User::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
        }
    }

    /// pkg/serviceaccount/util.go `MakeGroupNames`, plus system:authenticated.
    pub fn groups(&self) -> Vec<String> {
        match self {
            User::Admin => vec!["system:masters".into(), "system:authenticated".into()],
            User::ServiceAccount { namespace, .. } => vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The ServiceAccount a token belongs to, when a token Secret holds it.
pub fn service_account(st: &State, token: &str) -> Option<User> {
    let secrets = find("", "v1", "secrets")?;
    let sas = find("", "v1", "serviceaccounts")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let holds = |s: &&Value| {
        s["type"] == crate::tokens::TOKEN_TYPE
            && s["data"]["token"]
                .as_str()
                .and_then(|t| b64.decode(t).ok())
                .is_some_and(|t| t == token.as_bytes())
    };
    let secret = st.list(secrets, None).into_iter().find(holds)?;
    let ns = secret["metadata"]["namespace"].as_str()?;
    let ann = &secret["metadata"]["annotations"];
    let name = ann[crate::tokens::SA_NAME].as_str()?;
    let sa = st.get(sas, ns, name)?;
    let uid = ann[crate::tokens::SA_UID].as_str().unwrap_or("");
    (sa["metadata"]["uid"].as_str() == Some(uid)).then(|| User::ServiceAccount {
        namespace: ns.to_string(),
        name: name.to_string(),
    })
}

/// Authenticates a request: the certificate, else the bearer token.
pub fn authenticate(
    st: &State,
    has_client_cert: bool,
    authorization: Option<&str>,
) -> Option<User> {
    if has_client_cert {
        return Some(User::Admin);
    }
    service_account(st, bearer(authorization)?)
}
