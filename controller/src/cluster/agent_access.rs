//! The health agents' access to the API (kube client side): for each node, a
//! ServiceAccount `kube-system/pictl-agent-<node>`, its legacy token Secret,
//! and a ClusterRole + ClusterRoleBinding `pictl-agent:<node>` allowing
//! exactly `patch` on `nodes/status` of that one Node (`resourceNames`) and
//! `create` on `events`.
//!
//! Why one ServiceAccount per node: RBAC has no "the caller's own Node"
//! (the Node authorizer does that only for kubelet credentials), and a
//! `nodes/status` patch can also change the Node's labels and annotations
//! (the status strategy keeps only the spec). One shared token would let a
//! compromised Pi relabel or mark every other Node; per-node tokens confine
//! it to its own Node. Why a legacy token Secret rather than TokenRequest:
//! the agent runs off-cluster for months and has no way to renew a bound,
//! expiring token; a Secret-backed token is revoked by deleting the Secret or
//! the ServiceAccount. Objects are server-side applied (field manager
//! `pictl`), so a re-run changes nothing.

use k8s_openapi::api::core::v1::{Secret as KSecret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use std::collections::BTreeMap;

use kube::api::{ListParams, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ClusterError;
use crate::secret::Secret;
use crate::step::Change;
use crate::write::Writer;

pub const NAMESPACE: &str = "kube-system";
const MANAGER: &str = "pictl";

/// The names of one node's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub account: String,
    pub secret: String,
    pub role: String,
}

pub fn names(node: &str) -> Names {
    Names {
        account: format!("pictl-agent-{node}"),
        secret: format!("pictl-agent-{node}-token"),
        role: format!("pictl-agent:{node}"),
    }
}

/// The only rules an agent's token has.
pub fn rules(node: &str) -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["nodes/status".into()]),
            verbs: vec!["patch".into()],
            resource_names: Some(vec![node.to_string()]),
            ..PolicyRule::default()
        },
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["events".into()]),
            verbs: vec!["create".into()],
            ..PolicyRule::default()
        },
    ]
}

fn role_ref(n: &Names) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: n.role.clone(),
    }
}

fn subjects(n: &Names) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: n.account.clone(),
        namespace: Some(NAMESPACE.into()),
        ..Subject::default()
    }]
}

fn failed(what: &str, e: kube::Error) -> ClusterError {
    ClusterError::call(what)(e)
}

/// The token and CA in `node`'s token Secret, once the token controller filled it.
pub type Token = (Secret, String);

/// The labels pictl puts on every agent object (and lists them by).
const LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/managed-by", "pictl"),
    ("app.kubernetes.io/component", "health-agent"),
];

/// [`LABELS`] as a label selector.
fn selector() -> String {
    let terms: Vec<String> = LABELS.iter().map(|(k, v)| format!("{k}={v}")).collect();
    terms.join(",")
}

/// pictl's agent objects as found, one LIST per kind: a run reads four
/// lists, not four objects per node (200 requests on a 50-node no-op).
#[derive(Default)]
pub struct Existing {
    accounts: BTreeMap<String, ServiceAccount>,
    secrets: BTreeMap<String, KSecret>,
    roles: BTreeMap<String, ClusterRole>,
    bindings: BTreeMap<String, ClusterRoleBinding>,
}

impl Existing {
    /// Lists each kind by pictl's labels. An object missing from a list
    /// (none yet, or its labels were edited) is read by name in [`plan`].
    pub async fn read(client: &kube::Client) -> Result<Self, ClusterError> {
        Ok(Self {
            accounts: labelled(&kube::Api::namespaced(client.clone(), NAMESPACE)).await?,
            secrets: labelled(&kube::Api::namespaced(client.clone(), NAMESPACE)).await?,
            roles: labelled(&kube::Api::all(client.clone())).await?,
            bindings: labelled(&kube::Api::all(client.clone())).await?,
        })
    }
}

/// The objects of one kind carrying pictl's agent labels, by name.
async fn labelled<K>(api: &kube::Api<K>) -> Result<BTreeMap<String, K>, ClusterError>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = api
        .list(&ListParams::default().labels(&selector()))
        .await
        .map_err(|e| failed(&format!("listing {}s", K::kind(&())), e))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| Some((o.meta().name.clone()?, o)))
        .collect())
}

/// `name` from the list, else read by name (absent: `None`).
async fn find<K>(
    listed: &BTreeMap<String, K>,
    api: kube::Api<K>,
    name: &str,
) -> Result<Option<K>, ClusterError>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if let Some(o) = listed.get(name) {
        return Ok(Some(o.clone()));
    }
    api.get_opt(name)
        .await
        .map_err(|e| failed(&format!("reading {}", K::kind(&())), e))
}

/// What the API lacks for `node` (read-only), and the token already there.
pub async fn plan(
    client: &kube::Client,
    existing: &Existing,
    node: &str,
) -> Result<(Vec<Change>, Option<Token>), ClusterError> {
    let n = names(node);
    let c = || client.clone();
    let mut out = Vec::new();
    let what = |kind: &str, name: &str| format!("{kind} {name}");
    let api = kube::Api::namespaced(c(), NAMESPACE);
    if find(&existing.accounts, api, &n.account).await?.is_none() {
        out.push(Change::new(
            what("ServiceAccount", &format!("{NAMESPACE}/{}", n.account)),
            "absent",
            "created",
        ));
    }
    let api = kube::Api::namespaced(c(), NAMESPACE);
    let token = match find(&existing.secrets, api, &n.secret).await? {
        Some(s) => token_in(s)?,
        None => {
            out.push(Change::new(
                what("Secret", &format!("{NAMESPACE}/{}", n.secret)),
                "absent",
                "token requested",
            ));
            None
        }
    };
    match find(&existing.roles, kube::Api::all(c()), &n.role).await? {
        None => out.push(Change::new(
            what("ClusterRole", &n.role),
            "absent",
            "patch nodes/status, create events",
        )),
        Some(r) if r.rules.as_deref() != Some(&rules(node)[..]) => out.push(Change::new(
            what("ClusterRole", &n.role),
            "other rules",
            "patch nodes/status, create events",
        )),
        Some(_) => {}
    }
    match find(&existing.bindings, kube::Api::all(c()), &n.role).await? {
        Some(b)
            if b.role_ref == role_ref(&n) && b.subjects.as_deref() == Some(&subjects(&n)[..]) => {}
        Some(_) => out.push(Change::new(
            what("ClusterRoleBinding", &n.role),
            "other subjects",
            n.account.clone(),
        )),
        None => out.push(Change::new(
            what("ClusterRoleBinding", &n.role),
            "absent",
            n.account.clone(),
        )),
    }
    Ok((out, token))
}

/// Server-side applies the four objects.
pub async fn apply(client: &kube::Client, node: &str, _w: &Writer) -> Result<(), ClusterError> {
    let n = names(node);
    let pp = PatchParams::apply(MANAGER).force();
    let sa: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let secrets: kube::Api<KSecret> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let roles: kube::Api<ClusterRole> = kube::Api::all(client.clone());
    let bindings: kube::Api<ClusterRoleBinding> = kube::Api::all(client.clone());
    let labels: serde_json::Map<String, serde_json::Value> = LABELS
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let obj = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": n.account, "namespace": NAMESPACE, "labels": labels}});
    sa.patch(&n.account, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying ServiceAccount", e))?;
    let obj = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": n.secret, "namespace": NAMESPACE, "labels": labels,
            "annotations": {"kubernetes.io/service-account.name": n.account}}});
    secrets
        .patch(&n.secret, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying Secret", e))?;
    let obj = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": n.role, "labels": labels}, "rules": rules(node)});
    roles
        .patch(&n.role, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying ClusterRole", e))?;
    let obj = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": n.role, "labels": labels}, "roleRef": role_ref(&n), "subjects": subjects(&n)});
    bindings
        .patch(&n.role, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying ClusterRoleBinding", e))?;
    Ok(())
}

/// The token and cluster CA the token controller put in the Secret, once it has.
pub async fn token(client: &kube::Client, node: &str) -> Result<Option<Token>, ClusterError> {
    let secrets: kube::Api<KSecret> = kube::Api::namespaced(client.clone(), NAMESPACE);
    match secrets
        .get_opt(&names(node).secret)
        .await
        .map_err(|e| failed("reading the token Secret", e))?
    {
        Some(s) => token_in(s),
        None => Ok(None),
    }
}

/// The token and CA a token Secret holds, if filled.
fn token_in(s: KSecret) -> Result<Option<Token>, ClusterError> {
    let data = s.data.unwrap_or_default();
    let (Some(token), Some(ca)) = (data.get("token"), data.get("ca.crt")) else {
        return Ok(None);
    };
    let unusable = |what: &str| ClusterError::Unusable(format!("the {what} is not text"));
    let token = String::from_utf8(token.0.clone()).map_err(|_| unusable("token"))?;
    let ca = String::from_utf8(ca.0.clone()).map_err(|_| unusable("CA"))?;
    Ok(Some((Secret::new(token), ca)))
}

/// Waits (up to `within`) for the token controller to fill the Secret.
pub async fn wait_token(
    client: &kube::Client,
    node: &str,
    within: std::time::Duration,
) -> Result<Token, ClusterError> {
    let start = std::time::Instant::now();
    loop {
        if let Some(t) = token(client, node).await? {
            return Ok(t);
        }
        if start.elapsed() > within {
            return Err(ClusterError::Timeout(format!(
                "the token controller did not fill Secret {NAMESPACE}/{} within {within:?}",
                names(node).secret
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Deletes `node`'s agent objects (a reset node's token stops working with
/// its ServiceAccount); what was there, as changes.
pub async fn remove(
    client: &kube::Client,
    node: &str,
    _w: &Writer,
) -> Result<Vec<Change>, ClusterError> {
    let n = names(node);
    let dp = kube::api::DeleteParams::default();
    let gone = |r: Result<_, kube::Error>, what: String| match r {
        Ok(_) => Ok(Some(Change::new(what, "present", "deleted"))),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(failed(&format!("deleting {what}"), e)),
    };
    let sa: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let secrets: kube::Api<KSecret> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let roles: kube::Api<ClusterRole> = kube::Api::all(client.clone());
    let bindings: kube::Api<ClusterRoleBinding> = kube::Api::all(client.clone());
    let mut out = Vec::new();
    out.extend(gone(
        bindings.delete(&n.role, &dp).await.map(|_| ()),
        format!("ClusterRoleBinding {}", n.role),
    )?);
    out.extend(gone(
        roles.delete(&n.role, &dp).await.map(|_| ()),
        format!("ClusterRole {}", n.role),
    )?);
    out.extend(gone(
        secrets.delete(&n.secret, &dp).await.map(|_| ()),
        format!("Secret {NAMESPACE}/{}", n.secret),
    )?);
    out.extend(gone(
        sa.delete(&n.account, &dp).await.map(|_| ()),
        format!("ServiceAccount {NAMESPACE}/{}", n.account),
    )?);
    Ok(out)
}
