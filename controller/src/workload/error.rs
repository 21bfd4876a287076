//! What can go wrong while planning or applying a playbook, and which of
//! those failures are worth retrying (a hiccup, not an answer).

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{what} (in {file}): the API does not serve {api_version} {kind}")]
    UnknownKind {
        what: String,
        file: String,
        api_version: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}: a namespaced object needs metadata.namespace in the playbook")]
    NoNamespace(String),
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what} did not finish rolling out within {seconds} s ({status})")]
    NotRolledOut {
        what: String,
        seconds: u64,
        status: String,
    },
    #[error("{what}: the rollout is stuck: {message}")]
    RolloutStuck { what: String, message: String },
    #[error(
        "{parent} belongs to another tool ({tooling}); pictl will not adopt or prune its objects"
    )]
    ForeignApplySet { parent: String, tooling: String },
}

impl ApplyError {
    /// A network or server hiccup (not an answer from the API server that
    /// something is wrong): the whole, idempotent, plan or apply may be retried.
    pub fn is_transient(&self) -> bool {
        let source = match self {
            ApplyError::Api { source, .. } | ApplyError::UnknownKind { source, .. } => source,
            _ => return false,
        };
        match source {
            kube::Error::Api(s) => s.code == 429 || s.code >= 500,
            kube::Error::HyperError(_) | kube::Error::Service(_) => true,
            _ => false,
        }
    }
}

pub(crate) fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ApplyError {
    let what = what.into();
    move |source| ApplyError::Api { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> ApplyError {
        let status: kube::core::Status =
            serde_json::from_value(serde_json::json!({ "code": code, "message": "m" }))
                .expect("status");
        ApplyError::Api {
            what: "applying x".into(),
            source: kube::Error::Api(Box::new(status)),
        }
    }

    #[test]
    fn only_server_hiccups_are_retried() {
        assert!(api_error(503).is_transient());
        assert!(api_error(429).is_transient());
        assert!(
            !api_error(409).is_transient(),
            "a conflict is an answer, not a hiccup"
        );
        assert!(!api_error(422).is_transient());
        assert!(!ApplyError::NoNamespace("x".into()).is_transient());
    }
}
