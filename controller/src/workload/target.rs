//! Addressing playbook objects in the API: discovery of each kind (once
//! per run), the real namespace of an object, and how it is named for
//! people. Read-only: the API handle is used by plan and apply alike.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde::Serialize;

use super::error::ApplyError;
use super::manifests::Manifest;

/// One object in the cluster, as a plan names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    /// `None` for cluster-scoped kinds, whatever a manifest says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip)]
    pub(crate) resource: ApiResource,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl ObjectRef {
    pub(crate) fn new(resource: &ApiResource, namespace: Option<String>, name: String) -> Self {
        Self {
            kind: resource.kind.clone(),
            namespace,
            name,
            resource: resource.clone(),
        }
    }

    /// The API for this object's kind, in its namespace.
    pub(crate) fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        }
    }
}

/// Discovered kinds, keyed by `(apiVersion, kind)`.
pub(crate) type KindCache = BTreeMap<(String, String), (ApiResource, ApiCapabilities)>;

/// Where a manifest's object lives.
pub(crate) async fn resolve(
    client: &kube::Client,
    cache: &mut KindCache,
    m: &Manifest,
) -> Result<ObjectRef, ApplyError> {
    let (group, version) = m.group_version();
    let key = (m.api_version().to_string(), m.kind().to_string());
    let (ar, caps) = match cache.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let gvk = GroupVersionKind::gvk(group, version, m.kind());
            let found = kube::discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|source| ApplyError::UnknownKind {
                    what: m.describe(),
                    file: m.source.display().to_string(),
                    api_version: m.api_version().to_string(),
                    kind: m.kind().to_string(),
                    source,
                })?;
            e.insert(found)
        }
    };
    let namespace = match (&caps.scope, m.namespace()) {
        (Scope::Namespaced, Some(ns)) => Some(ns.to_string()),
        (Scope::Namespaced, None) => return Err(ApplyError::NoNamespace(m.describe())),
        (Scope::Cluster, _) => None,
    };
    Ok(ObjectRef::new(ar, namespace, m.name().to_string()))
}
