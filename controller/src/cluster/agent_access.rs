//! The health agents' access to the API (kube client side): for each node, a
//! ServiceAccount `kube-system/pictl-agent-<node>`, its legacy token Secret,
//! a ClusterRole + ClusterRoleBinding `pictl-agent:<node>` allowing exactly
//! `patch` on `nodes/status` of that one Node (`resourceNames`), and a Role +
//! RoleBinding `pictl-agent:<node>` in `default` allowing `create` on
//! `events` there, the one namespace the agent posts them to (events are
//! namespaced: a ClusterRole would let a node's token write events into
//! every namespace, `kube-system`'s included).
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
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use std::collections::BTreeMap;

use kube::api::{ListParams, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ClusterError;
use crate::secret::Secret;
use crate::step::Change;
use crate::write::Writer;

pub const NAMESPACE: &str = "kube-system";
/// Where the agent posts its events (`pictl_agent::publish`), the one
/// namespace its token may create them in.
pub const EVENTS_NAMESPACE: &str = "default";
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

/// The only cluster-wide rule an agent's token has: its own Node's status.
pub fn node_rules(node: &str) -> Vec<PolicyRule> {
    vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["nodes/status".into()]),
        verbs: vec!["patch".into()],
        resource_names: Some(vec![node.to_string()]),
        ..PolicyRule::default()
    }]
}

/// The only rule it has in [`EVENTS_NAMESPACE`].
pub fn event_rules() -> Vec<PolicyRule> {
    vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["events".into()]),
        verbs: vec!["create".into()],
        ..PolicyRule::default()
    }]
}

fn role_ref(n: &Names, kind: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
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

/// pictl's agent objects as found, one LIST per kind: a run reads six
/// lists, not six objects per node (300 requests on a 50-node no-op).
#[derive(Default)]
pub struct Existing {
    accounts: BTreeMap<String, ServiceAccount>,
    secrets: BTreeMap<String, KSecret>,
    roles: BTreeMap<String, ClusterRole>,
    bindings: BTreeMap<String, ClusterRoleBinding>,
    event_roles: BTreeMap<String, Role>,
    event_bindings: BTreeMap<String, RoleBinding>,
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
            event_roles: labelled(&kube::Api::namespaced(client.clone(), EVENTS_NAMESPACE)).await?,
            event_bindings: labelled(&kube::Api::namespaced(client.clone(), EVENTS_NAMESPACE))
                .await?,
        })
    }
}

impl Existing {
    /// The nodes whose agent objects were found: every object's name
    /// gives its node back ([`names`]).
    pub fn nodes(&self) -> std::collections::BTreeSet<String> {
        let accounts = self.accounts.keys().map(|a| a.strip_prefix("pictl-agent-"));
        let secrets = (self.secrets.keys()).map(|s| {
            s.strip_prefix("pictl-agent-")
                .and_then(|s| s.strip_suffix("-token"))
        });
        let roles = (self.roles.keys().chain(self.bindings.keys()))
            .chain(self.event_roles.keys().chain(self.event_bindings.keys()))
            .map(|r| r.strip_prefix("pictl-agent:"));
        accounts
            .chain(secrets)
            .chain(roles)
            .flatten()
            .map(String::from)
            .collect()
    }

    /// What removing `node`'s objects deletes, as found (read-only).
    pub fn leftovers(&self, node: &str) -> Vec<Change> {
        let n = names(node);
        let found = [
            self.event_bindings.contains_key(&n.role),
            self.event_roles.contains_key(&n.role),
            self.bindings.contains_key(&n.role),
            self.roles.contains_key(&n.role),
            self.secrets.contains_key(&n.secret),
            self.accounts.contains_key(&n.account),
        ];
        (found.into_iter().zip(described(&n)))
            .filter(|(found, _)| *found)
            .map(|(_, what)| Change::new(what, "present", "deleted"))
            .collect()
    }
}

/// A node's six agent objects as changes name them, in the order they are
/// removed (bindings before what they bind): the plan and the removal say
/// the same.
fn described(n: &Names) -> [String; 6] {
    let ns = EVENTS_NAMESPACE;
    [
        format!("RoleBinding {ns}/{}", n.role),
        format!("Role {ns}/{}", n.role),
        format!("ClusterRoleBinding {}", n.role),
        format!("ClusterRole {}", n.role),
        format!("Secret {NAMESPACE}/{}", n.secret),
        format!("ServiceAccount {NAMESPACE}/{}", n.account),
    ]
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
    out.extend(rbac(client, existing, node, &n).await?);
    Ok((out, token))
}

/// What the four RBAC objects lack (read-only).
async fn rbac(
    client: &kube::Client,
    existing: &Existing,
    node: &str,
    n: &Names,
) -> Result<Vec<Change>, ClusterError> {
    let (c, ns) = (|| client.clone(), EVENTS_NAMESPACE);
    let role = find(&existing.roles, kube::Api::all(c()), &n.role).await?;
    let binding = find(&existing.bindings, kube::Api::all(c()), &n.role).await?;
    let event_role = find(
        &existing.event_roles,
        kube::Api::namespaced(c(), ns),
        &n.role,
    )
    .await?;
    let api = kube::Api::namespaced(c(), ns);
    let event_binding = find(&existing.event_bindings, api, &n.role).await?;
    let in_ns = format!("{ns}/{}", n.role);
    let (nodes_to, events_to) = ("patch nodes/status", format!("create events in {ns}"));
    Ok([
        rules_drift(
            "ClusterRole",
            &n.role,
            role.map(|r| r.rules),
            &node_rules(node),
            nodes_to,
        ),
        binding_drift(
            "ClusterRoleBinding",
            &n.role,
            binding.map(|b| (b.role_ref, b.subjects)),
            n,
            "ClusterRole",
        ),
        rules_drift(
            "Role",
            &in_ns,
            event_role.map(|r| r.rules),
            &event_rules(),
            &events_to,
        ),
        binding_drift(
            "RoleBinding",
            &in_ns,
            event_binding.map(|b| (b.role_ref, b.subjects)),
            n,
            "Role",
        ),
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// A role absent or with other rules than `want`.
fn rules_drift(
    kind: &str,
    name: &str,
    found: Option<Option<Vec<PolicyRule>>>,
    want: &[PolicyRule],
    says: &str,
) -> Option<Change> {
    let was = match found {
        None => "absent",
        Some(rules) if rules.as_deref() != Some(want) => "other rules",
        Some(_) => return None,
    };
    Some(Change::new(format!("{kind} {name}"), was, says))
}

/// A binding absent or binding another role or subject than `n`'s.
fn binding_drift(
    kind: &str,
    name: &str,
    found: Option<(RoleRef, Option<Vec<Subject>>)>,
    n: &Names,
    role_kind: &str,
) -> Option<Change> {
    let was = match found {
        None => "absent",
        Some((r, s)) if r != role_ref(n, role_kind) || s.as_deref() != Some(&subjects(n)[..]) => {
            "other subjects"
        }
        Some(_) => return None,
    };
    Some(Change::new(
        format!("{kind} {name}"),
        was,
        n.account.clone(),
    ))
}

/// Server-side applies the six objects.
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
    let rbac = "rbac.authorization.k8s.io/v1";
    let obj = json!({"apiVersion": rbac, "kind": "ClusterRole",
        "metadata": {"name": n.role, "labels": labels}, "rules": node_rules(node)});
    roles
        .patch(&n.role, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying ClusterRole", e))?;
    let obj = json!({"apiVersion": rbac, "kind": "ClusterRoleBinding",
        "metadata": {"name": n.role, "labels": labels},
        "roleRef": role_ref(&n, "ClusterRole"), "subjects": subjects(&n)});
    bindings
        .patch(&n.role, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying ClusterRoleBinding", e))?;
    apply_event_access(client, &n, &labels).await
}

/// The Role and RoleBinding that let `n`'s token create events in
/// [`EVENTS_NAMESPACE`] and nowhere else.
async fn apply_event_access(
    client: &kube::Client,
    n: &Names,
    labels: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ClusterError> {
    let pp = PatchParams::apply(MANAGER).force();
    let ns = EVENTS_NAMESPACE;
    let roles: kube::Api<Role> = kube::Api::namespaced(client.clone(), ns);
    let bindings: kube::Api<RoleBinding> = kube::Api::namespaced(client.clone(), ns);
    let rbac = "rbac.authorization.k8s.io/v1";
    let obj = json!({"apiVersion": rbac, "kind": "Role",
        "metadata": {"name": n.role, "namespace": ns, "labels": labels}, "rules": event_rules()});
    roles
        .patch(&n.role, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying Role", e))?;
    let obj = json!({"apiVersion": rbac, "kind": "RoleBinding",
        "metadata": {"name": n.role, "namespace": ns, "labels": labels},
        "roleRef": role_ref(n, "Role"), "subjects": subjects(n)});
    bindings
        .patch(&n.role, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| failed("applying RoleBinding", e))?;
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
    let ns = EVENTS_NAMESPACE;
    let event_roles: kube::Api<Role> = kube::Api::namespaced(client.clone(), ns);
    let event_bindings: kube::Api<RoleBinding> = kube::Api::namespaced(client.clone(), ns);
    let [rb, r, crb, cr, secret, account] = described(&n);
    let mut out = Vec::new();
    let event_binding = event_bindings.delete(&n.role, &dp).await;
    out.extend(gone(event_binding.map(|_| ()), rb)?);
    out.extend(gone(event_roles.delete(&n.role, &dp).await.map(|_| ()), r)?);
    out.extend(gone(bindings.delete(&n.role, &dp).await.map(|_| ()), crb)?);
    out.extend(gone(roles.delete(&n.role, &dp).await.map(|_| ()), cr)?);
    out.extend(gone(
        secrets.delete(&n.secret, &dp).await.map(|_| ()),
        secret,
    )?);
    out.extend(gone(sa.delete(&n.account, &dp).await.map(|_| ()), account)?);
    Ok(out)
}
