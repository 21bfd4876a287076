//! Converging a playbook through the Kubernetes API: server-side apply
//! (field manager `pictl`, conflicts forced: pictl repairs drift) of every
//! object, ApplySet pruning of objects that left the playbook, and waiting
//! for Deployments to be Available. `plan` uses server-side dry runs, so
//! the API server itself says what would change.
//!
//! One field is shared on purpose: a Deployment that an HPA of the same
//! playbook scales keeps its live `spec.replicas` (clamped to the HPA's
//! range). The playbook's count is used when the Deployment is created;
//! after that, re-applying must not undo the autoscaler.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::applyset::{self, LABEL_PART_OF, PARENT_NAMESPACE};
use super::manifests::Manifest;
use crate::step::Change;

pub const FIELD_MANAGER: &str = "pictl";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{what}: the API does not serve {api_version} {kind}")]
    UnknownKind {
        what: String,
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
    #[error("{0} not Available after {1} s")]
    NotAvailable(String, u64),
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ApplyError {
    let what = what.into();
    move |source| ApplyError::Api { what, source }
}

/// What applying a playbook did (or, in a plan, would do).
#[derive(Debug, Default)]
pub struct Outcome {
    pub changes: Vec<Change>,
    /// Objects that were already as the playbook says.
    pub unchanged: usize,
}

/// The parts of an object the API server owns, removed before comparing.
fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "generation",
            "managedFields",
            "creationTimestamp",
            "uid",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

struct Target {
    api: Api<DynamicObject>,
    what: String,
}

async fn resolve(
    client: &kube::Client,
    cache: &mut BTreeMap<(String, String), (ApiResource, ApiCapabilities)>,
    m: &Manifest,
) -> Result<Target, ApplyError> {
    let (group, version) = m.group_version();
    let key = (m.api_version().to_string(), m.kind().to_string());
    if !cache.contains_key(&key) {
        let gvk = GroupVersionKind::gvk(group, version, m.kind());
        let found = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|source| ApplyError::UnknownKind {
                what: m.describe(),
                api_version: m.api_version().to_string(),
                kind: m.kind().to_string(),
                source,
            })?;
        cache.insert(key.clone(), found);
    }
    let Some((ar, caps)) = cache.get(&key) else {
        unreachable!("inserted above")
    };
    let api = match (&caps.scope, m.namespace()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
        (Scope::Namespaced, None) => return Err(ApplyError::NoNamespace(m.describe())),
        (Scope::Cluster, _) => Api::all_with(client.clone(), ar),
    };
    Ok(Target {
        api,
        what: m.describe(),
    })
}

/// Applies (or, with `dry_run`, plans) one playbook.
pub async fn apply_playbook(
    client: &kube::Client,
    playbook: &str,
    manifests: &[Manifest],
    dry_run: bool,
    wait: Duration,
) -> Result<Outcome, ApplyError> {
    let mut out = Outcome::default();
    let parent_name = applyset::parent_name(playbook);
    let id = applyset::id(&parent_name, PARENT_NAMESPACE);
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        PARENT_NAMESPACE,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let live_parent = secrets
        .get_opt(&parent_name)
        .await
        .map_err(api_err("reading the ApplySet parent"))?;
    let annotation = |k: &str| {
        live_parent
            .as_ref()
            .and_then(|p| p.metadata.annotations.as_ref())
            .and_then(|a| a.get(k))
            .map(String::as_str)
    };
    let before_gks = applyset::parse_list(annotation(applyset::ANN_GROUP_KINDS));
    let before_ns = applyset::parse_list(annotation(applyset::ANN_NAMESPACES));
    let now_gks: BTreeSet<String> = manifests.iter().map(Manifest::group_kind).collect();
    let now_ns: BTreeSet<String> = manifests
        .iter()
        .filter_map(|m| m.namespace())
        .filter(|n| *n != PARENT_NAMESPACE)
        .map(String::from)
        .collect();

    let mut pp = PatchParams::apply(FIELD_MANAGER).force();
    pp.dry_run = dry_run;

    // The parent first, covering old and new kinds, so an interrupted run can still prune.
    let union_gks: BTreeSet<String> = before_gks.union(&now_gks).cloned().collect();
    let union_ns: BTreeSet<String> = before_ns.union(&now_ns).cloned().collect();
    if !dry_run {
        let p = applyset::parent(playbook, &union_gks, &union_ns);
        secrets
            .patch(&parent_name, &pp, &Patch::Apply(&p))
            .await
            .map_err(api_err("writing the ApplySet parent"))?;
    }

    // Objects whose namespace this playbook creates cannot be dry-run before it exists.
    let mut cache = BTreeMap::new();
    let mut missing_namespaces: BTreeSet<String> = BTreeSet::new();
    let mut applied: BTreeSet<(String, Option<String>, String)> = BTreeSet::new();
    let mut deployments = Vec::new();
    let scaled = autoscaled(manifests);
    for m in manifests {
        let target = resolve(client, &mut cache, m).await?;
        let mut obj = m.object.clone();
        obj["metadata"]["labels"][LABEL_PART_OF] = Value::String(id.clone());
        applied.insert((
            m.group_kind(),
            m.namespace().map(String::from),
            m.name().to_string(),
        ));
        let live = target
            .api
            .get_opt(m.name())
            .await
            .map_err(api_err(format!("reading {}", target.what)))?;
        let key = (
            m.namespace().unwrap_or_default().to_string(),
            m.name().to_string(),
        );
        if let (Some(l), Some((min, max)), "Deployment") = (&live, scaled.get(&key), m.kind())
            && let Some(current) = l.data["spec"]["replicas"].as_i64()
        {
            obj["spec"]["replicas"] = Value::from(current.clamp(*min, *max));
        }
        if dry_run
            && m.namespace()
                .is_some_and(|ns| missing_namespaces.contains(ns))
        {
            out.changes
                .push(Change::new(target.what, "absent", "created"));
            continue;
        }
        let result = target
            .api
            .patch(m.name(), &pp, &Patch::Apply(&obj))
            .await
            .map_err(api_err(format!("applying {}", target.what)))?;
        let changed = match &live {
            None => true,
            Some(l) if dry_run => {
                normalized(&serde_json::to_value(l).unwrap_or_default())
                    != normalized(&serde_json::to_value(&result).unwrap_or_default())
            }
            Some(l) => l.metadata.resource_version != result.metadata.resource_version,
        };
        if live.is_none() && m.kind() == "Namespace" {
            missing_namespaces.insert(m.name().to_string());
        }
        if m.kind() == "Deployment" {
            deployments.push((
                target.api.clone(),
                m.name().to_string(),
                target.what.clone(),
            ));
        }
        if changed {
            let (before, after) = if live.is_some() {
                ("differs", "applied")
            } else {
                ("absent", "created")
            };
            out.changes.push(Change::new(target.what, before, after));
        } else {
            out.unchanged += 1;
        }
    }

    // Prune: members of the set, of any kind it ever held, that left the playbook.
    for gk in &union_gks {
        let (kind, group) = gk.split_once('.').unwrap_or((gk.as_str(), ""));
        let Ok(g) = kube::discovery::group(client, group).await else {
            continue;
        };
        let Some((ar, caps)) = g.recommended_kind(kind) else {
            continue;
        };
        let lp = ListParams::default().labels(&format!("{LABEL_PART_OF}={id}"));
        let apis: Vec<Api<DynamicObject>> = match caps.scope {
            Scope::Cluster => vec![Api::all_with(client.clone(), &ar)],
            Scope::Namespaced => union_ns
                .iter()
                .map(|ns| ns.as_str())
                .chain([PARENT_NAMESPACE])
                .filter(|ns| !missing_namespaces.contains(*ns))
                .map(|ns| Api::namespaced_with(client.clone(), ns, &ar))
                .collect(),
        };
        for api in apis {
            let list = match api.list(&lp).await {
                Ok(l) => l,
                // A namespace that is gone took its objects with it.
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    return Err(ApplyError::Api {
                        what: format!("listing {gk} to prune"),
                        source: e,
                    });
                }
            };
            for o in list.items {
                let name = o.metadata.name.clone().unwrap_or_default();
                let ns = o.metadata.namespace.clone();
                if applied.contains(&(gk.clone(), ns.clone(), name.clone())) {
                    continue;
                }
                let what = match &ns {
                    Some(ns) => format!("{kind} {ns}/{name}"),
                    None => format!("{kind} {name}"),
                };
                if !dry_run {
                    api.delete(&name, &DeleteParams::default())
                        .await
                        .map_err(api_err(format!("pruning {what}")))?;
                }
                out.changes
                    .push(Change::new(what, "left the playbook", "pruned"));
            }
        }
    }

    if !dry_run {
        let p = applyset::parent(playbook, &now_gks, &now_ns);
        secrets
            .patch(&parent_name, &pp, &Patch::Apply(&p))
            .await
            .map_err(api_err("writing the ApplySet parent"))?;
        let deadline = Instant::now() + wait;
        for (api, name, what) in deployments {
            wait_available(&api, &name, &what, deadline, wait).await?;
        }
    }
    Ok(out)
}

/// `(namespace, deployment) → (minReplicas, maxReplicas)` of the
/// playbook's HorizontalPodAutoscalers.
fn autoscaled(manifests: &[Manifest]) -> BTreeMap<(String, String), (i64, i64)> {
    manifests
        .iter()
        .filter(|m| m.kind() == "HorizontalPodAutoscaler")
        .filter(|m| m.object["spec"]["scaleTargetRef"]["kind"] == "Deployment")
        .filter_map(|m| {
            let spec = &m.object["spec"];
            let target = spec["scaleTargetRef"]["name"].as_str()?;
            let max = spec["maxReplicas"].as_i64()?;
            let min = spec["minReplicas"].as_i64().unwrap_or(1);
            Some((
                (
                    m.namespace().unwrap_or_default().to_string(),
                    target.to_string(),
                ),
                (min, max),
            ))
        })
        .collect()
}

async fn wait_available(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    deadline: Instant,
    wait: Duration,
) -> Result<(), ApplyError> {
    loop {
        let d = api
            .get(name)
            .await
            .map_err(api_err(format!("reading {what}")))?;
        let available = d.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        let observed = d.data["status"]["observedGeneration"].as_i64() >= d.metadata.generation;
        if available && observed {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ApplyError::NotAvailable(what.to_string(), wait.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
