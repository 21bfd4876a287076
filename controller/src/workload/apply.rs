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
    /// something is wrong): the whole, idempotent, apply may be retried.
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
    /// The namespace the object really lives in (`None` for cluster-scoped
    /// kinds, whatever the manifest says).
    namespace: Option<String>,
}

async fn resolve(
    client: &kube::Client,
    cache: &mut BTreeMap<(String, String), (ApiResource, ApiCapabilities)>,
    m: &Manifest,
) -> Result<Target, ApplyError> {
    let (group, version) = m.group_version();
    let key = (m.api_version().to_string(), m.kind().to_string());
    let (ar, caps) = match cache.entry(key) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
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
    let (api, namespace) = match (&caps.scope, m.namespace()) {
        (Scope::Namespaced, Some(ns)) => (
            Api::namespaced_with(client.clone(), ns, ar),
            Some(ns.to_string()),
        ),
        (Scope::Namespaced, None) => return Err(ApplyError::NoNamespace(m.describe())),
        (Scope::Cluster, _) => (Api::all_with(client.clone(), ar), None),
    };
    let what = match &namespace {
        Some(ns) => format!("{} {ns}/{}", m.kind(), m.name()),
        None => format!("{} {}", m.kind(), m.name()),
    };
    Ok(Target {
        api,
        what,
        namespace,
    })
}

/// Applies (or, with `dry_run`, plans) one playbook. With `dry_run` the
/// API server dry-runs every apply and nothing is written or deleted.
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
    // The specification: never adopt a set that another tool manages.
    if let Some(tooling) = annotation(applyset::ANN_TOOLING).filter(|t| !t.starts_with("pictl/")) {
        return Err(ApplyError::ForeignApplySet {
            parent: format!("Secret {PARENT_NAMESPACE}/{parent_name}"),
            tooling: tooling.to_string(),
        });
    }
    let before_gks = applyset::parse_list(annotation(applyset::ANN_GROUP_KINDS));
    let before_ns = applyset::parse_list(annotation(applyset::ANN_NAMESPACES));

    let mut pp = PatchParams::apply(FIELD_MANAGER).force();
    pp.dry_run = dry_run;

    // Resolve every object first: an unknown kind fails before anything is written.
    let mut cache = BTreeMap::new();
    let mut targets = Vec::with_capacity(manifests.len());
    for m in manifests {
        targets.push(resolve(client, &mut cache, m).await?);
    }
    let now_gks: BTreeSet<String> = manifests.iter().map(Manifest::group_kind).collect();
    let now_ns: BTreeSet<String> = targets
        .iter()
        .filter_map(|t| t.namespace.clone())
        .filter(|n| n != PARENT_NAMESPACE)
        .collect();
    let union_gks: BTreeSet<String> = before_gks.union(&now_gks).cloned().collect();
    let union_ns: BTreeSet<String> = before_ns.union(&now_ns).cloned().collect();

    // The parent first, covering old and new kinds, so an interrupted run can still prune.
    if !dry_run {
        let p = applyset::parent(playbook, &union_gks, &union_ns);
        secrets
            .patch(&parent_name, &pp, &Patch::Apply(&p))
            .await
            .map_err(api_err("writing the ApplySet parent"))?;
    }

    let scaled = autoscaled(manifests);
    // Objects in a namespace this playbook creates cannot be dry-run before it exists.
    let mut missing_namespaces: BTreeSet<String> = BTreeSet::new();
    let mut applied: BTreeSet<(String, Option<String>, String)> = BTreeSet::new();
    let mut deployments = Vec::new();
    for (m, target) in manifests.iter().zip(&targets) {
        let mut obj = m.object.clone();
        // `manifests::load` checked that metadata and its labels are mappings.
        let labels = obj["metadata"]
            .as_object_mut()
            .map(|md| {
                md.entry("labels")
                    .or_insert_with(|| Value::Object(Default::default()))
            })
            .and_then(Value::as_object_mut);
        if let Some(labels) = labels {
            labels.insert(LABEL_PART_OF.to_string(), Value::String(id.clone()));
        }
        applied.insert((
            m.group_kind(),
            target.namespace.clone(),
            m.name().to_string(),
        ));
        let live = target
            .api
            .get_opt(m.name())
            .await
            .map_err(api_err(format!("reading {}", target.what)))?;
        let key = (
            target.namespace.clone().unwrap_or_default(),
            m.name().to_string(),
        );
        if let (Some(l), Some((min, max)), "Deployment") = (&live, scaled.get(&key), m.kind())
            && let Some(current) = l.data["spec"]["replicas"].as_i64()
            && let Some(spec) = obj["spec"].as_object_mut()
        {
            spec.insert("replicas".into(), Value::from(current.clamp(*min, *max)));
        }
        if dry_run
            && target
                .namespace
                .as_ref()
                .is_some_and(|ns| missing_namespaces.contains(ns))
        {
            out.changes
                .push(Change::new(target.what.clone(), "absent", "created"));
            continue;
        }
        let result = target
            .api
            .patch(m.name(), &pp, &Patch::Apply(&obj))
            .await
            .map_err(api_err(format!("applying {}", target.what)))?;
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
        // The same comparison in plan and apply: what the object says, not
        // bookkeeping (resourceVersion also moves for managedFields alone).
        let changed = live.as_ref().is_none_or(|l| {
            normalized(&serde_json::to_value(l).unwrap_or_default())
                != normalized(&serde_json::to_value(&result).unwrap_or_default())
        });
        if changed {
            let (before, after) = if live.is_some() {
                ("differs", "applied")
            } else {
                ("absent", "created")
            };
            out.changes
                .push(Change::new(target.what.clone(), before, after));
        } else {
            out.unchanged += 1;
        }
    }

    // Prune: members of the set, of any kind it ever held, that left the playbook.
    for gk in &union_gks {
        let (kind, group) = gk.split_once('.').unwrap_or((gk.as_str(), ""));
        let g = match kube::discovery::group(client, group).await {
            Ok(g) => g,
            // The API group is gone, and with it every object of its kinds.
            Err(kube::Error::Discovery(_)) => continue,
            Err(e) => {
                return Err(ApplyError::Api {
                    what: format!("discovering {gk} to prune"),
                    source: e,
                });
            }
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
                // Already going away (a namespace finalizing): nothing to do.
                if o.metadata.deletion_timestamp.is_some() {
                    continue;
                }
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
        // Every old kind was listed and pruned: the parent can forget them.
        let p = applyset::parent(playbook, &now_gks, &now_ns);
        secrets
            .patch(&parent_name, &pp, &Patch::Apply(&p))
            .await
            .map_err(api_err("writing the ApplySet parent"))?;
        let deadline = Instant::now() + wait;
        for (api, name, what) in deployments {
            wait_rolled_out(&api, &name, &what, deadline, wait).await?;
        }
    }
    Ok(out)
}

/// `(namespace, deployment) → (minReplicas, maxReplicas)` of the
/// playbook's HorizontalPodAutoscalers (`manifests::load` checked min ≤ max).
fn autoscaled(manifests: &[Manifest]) -> BTreeMap<(String, String), (i64, i64)> {
    manifests
        .iter()
        .filter(|m| m.kind() == "HorizontalPodAutoscaler")
        .filter(|m| m.object["spec"]["scaleTargetRef"]["kind"] == "Deployment")
        .filter_map(|m| {
            let spec = &m.object["spec"];
            let target = spec["scaleTargetRef"]["name"].as_str()?;
            let max = spec["maxReplicas"].as_i64()?;
            let min = spec["minReplicas"].as_i64().unwrap_or(1).min(max);
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

/// Waits until a Deployment's rollout is complete, by `kubectl rollout
/// status`'s rules: the new spec observed, every replica updated, no old
/// replica left, every updated replica available.
async fn wait_rolled_out(
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
        let st = &d.data["status"];
        let int = |v: &Value| v.as_i64().unwrap_or(0);
        let want = d.data["spec"]["replicas"].as_i64().unwrap_or(1);
        let observed = st["observedGeneration"].as_i64() >= d.metadata.generation;
        let updated = int(&st["updatedReplicas"]);
        let done = observed
            && updated >= want
            && int(&st["replicas"]) <= updated
            && int(&st["availableReplicas"]) >= updated;
        if done {
            return Ok(());
        }
        let stuck = st["conditions"].as_array().into_iter().flatten().find(|c| {
            c["type"] == "Progressing"
                && c["status"] == "False"
                && c["reason"] == "ProgressDeadlineExceeded"
        });
        if let Some(c) = stuck {
            return Err(ApplyError::RolloutStuck {
                what: what.to_string(),
                message: c["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        if Instant::now() > deadline {
            return Err(ApplyError::NotRolledOut {
                what: what.to_string(),
                seconds: wait.as_secs(),
                status: format!(
                    "{updated}/{want} updated, {} available, {} total",
                    int(&st["availableReplicas"]),
                    int(&st["replicas"])
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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

    #[test]
    fn server_bookkeeping_is_ignored_when_comparing() {
        let live = serde_json::json!({
            "metadata": { "name": "a", "resourceVersion": "5", "managedFields": [1], "generation": 2 },
            "spec": { "replicas": 3 }, "status": { "readyReplicas": 3 },
        });
        let applied = serde_json::json!({
            "metadata": { "name": "a", "resourceVersion": "6", "managedFields": [1, 2], "generation": 2 },
            "spec": { "replicas": 3 }, "status": { "readyReplicas": 1 },
        });
        assert_eq!(normalized(&live), normalized(&applied));
        let changed = serde_json::json!({ "metadata": { "name": "a" }, "spec": { "replicas": 4 } });
        assert_ne!(normalized(&live), normalized(&changed));
    }
}
