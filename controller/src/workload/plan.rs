//! Planning a playbook, read-only: every object is dry-run through
//! server-side apply (the API server itself says what would change), and
//! the ApplySet's members that left the playbook are listed as prune
//! candidates. The result is a typed [`PlaybookPlan`]; [`super::apply`]
//! writes exactly what it lists. Nothing here can write: the only PATCH
//! sent carries `dryRun=All`, and there is no DELETE.
//!
//! One field is shared on purpose: a Deployment that an HPA of the same
//! playbook scales keeps its live `spec.replicas` (clamped to the HPA's
//! range). The playbook's count is used when the Deployment is created;
//! after that, re-applying must not undo the autoscaler.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde::Serialize;
use serde_json::Value;

use super::applyset::{self, LABEL_PART_OF, PARENT_NAMESPACE, ParentState};
use super::error::{ApplyError, api_err};
use super::manifests::Manifest;
use super::prune;
use super::target::{KindCache, ObjectRef, resolve};
use crate::step::Change;

pub const FIELD_MANAGER: &str = "pictl";

/// One write a plan asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// The object does not exist: server-side apply creates it.
    Create {
        object: ObjectRef,
        #[serde(skip)]
        body: Value,
    },
    /// The object differs from the playbook: server-side apply repairs it.
    Update {
        object: ObjectRef,
        #[serde(skip)]
        body: Value,
    },
    /// A member of the ApplySet that left the playbook: deleted.
    Prune { object: ObjectRef },
}

impl Action {
    pub fn object(&self) -> &ObjectRef {
        match self {
            Action::Create { object, .. }
            | Action::Update { object, .. }
            | Action::Prune { object } => object,
        }
    }

    /// As the run report shows it.
    pub fn change(&self) -> Change {
        let (before, after) = match self {
            Action::Create { .. } => ("absent", "created"),
            Action::Update { .. } => ("differs", "applied"),
            Action::Prune { .. } => ("left the playbook", "pruned"),
        };
        Change::new(self.object().to_string(), before, after)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.change();
        write!(f, "{}: {} → {}", c.what, c.before, c.after)
    }
}

/// What applying a playbook that is not converged writes, in this order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    pub playbook: String,
    /// Objects already as the playbook says (not written).
    pub unchanged: usize,
    /// Written before any object, covering old and new kinds and
    /// namespaces, so that an interrupted apply can still prune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_before: Option<ParentState>,
    /// Applies (in playbook order, Namespaces first), then prunes.
    pub actions: Vec<Action>,
    /// Written after the prunes: the kinds and namespaces the set holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_after: Option<ParentState>,
}

/// A playbook's plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PlaybookPlan {
    /// Every object is as the playbook says, nothing is left to prune and
    /// the ApplySet parent is current: applying writes nothing.
    Converged {
        playbook: String,
        unchanged: usize,
    },
    Changes(Changes),
}

impl PlaybookPlan {
    pub fn playbook(&self) -> &str {
        match self {
            PlaybookPlan::Converged { playbook, .. } => playbook,
            PlaybookPlan::Changes(c) => &c.playbook,
        }
    }

    pub fn unchanged(&self) -> usize {
        match self {
            PlaybookPlan::Converged { unchanged, .. } => *unchanged,
            PlaybookPlan::Changes(c) => c.unchanged,
        }
    }

    pub fn is_converged(&self) -> bool {
        matches!(self, PlaybookPlan::Converged { .. })
    }

    /// The report's change list: one per object. The ApplySet parent is
    /// bookkeeping of those, listed only when it is all that changes.
    pub fn changes(&self) -> Vec<Change> {
        let PlaybookPlan::Changes(c) = self else {
            return vec![];
        };
        if c.actions.is_empty() {
            let parent = applyset::parent_name(&c.playbook);
            return vec![Change::new(
                format!("ApplySet parent Secret {PARENT_NAMESPACE}/{parent}"),
                "outdated",
                "written",
            )];
        }
        c.actions.iter().map(Action::change).collect()
    }
}

impl std::fmt::Display for PlaybookPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.playbook();
        if self.is_converged() {
            return write!(
                f,
                "playbook {name}: converged ({} unchanged)",
                self.unchanged()
            );
        }
        write!(f, "playbook {name}: {} unchanged", self.unchanged())?;
        for c in self.changes() {
            write!(f, "\n  {}: {} → {}", c.what, c.before, c.after)?;
        }
        Ok(())
    }
}

/// Plans one playbook. Read-only: GETs, LISTs and dry-run applies.
pub async fn plan_playbook(
    client: &kube::Client,
    playbook: &str,
    manifests: &[Manifest],
) -> Result<PlaybookPlan, ApplyError> {
    let parent_name = applyset::parent_name(playbook);
    let id = applyset::id(&parent_name, PARENT_NAMESPACE);
    let live_parent = read_parent(client, &parent_name).await?;

    // Resolve every object first: an unknown kind fails before anything else.
    let mut cache = KindCache::new();
    let mut targets = Vec::with_capacity(manifests.len());
    for m in manifests {
        targets.push(resolve(client, &mut cache, m).await?);
    }
    let now = ParentState {
        group_kinds: manifests.iter().map(Manifest::group_kind).collect(),
        namespaces: targets
            .iter()
            .filter_map(|t| t.namespace.clone())
            .filter(|n| n != PARENT_NAMESPACE)
            .collect(),
    };
    let union = live_parent.clone().unwrap_or_default().union(&now);

    let mut objects = plan_objects(client, &id, manifests, &targets).await?;
    let applied: BTreeSet<prune::Member> = manifests
        .iter()
        .zip(&targets)
        .map(|(m, t)| (m.group_kind(), t.namespace.clone(), t.name.clone()))
        .collect();
    let gone = &objects.missing_namespaces;
    for object in prune::candidates(client, &id, &union, gone, &applied).await? {
        objects.actions.push(Action::Prune { object });
    }

    let parent_before = (live_parent.as_ref() != Some(&union)).then(|| union.clone());
    let parent_after = (now != union).then_some(now);
    if objects.actions.is_empty() && parent_before.is_none() && parent_after.is_none() {
        return Ok(PlaybookPlan::Converged {
            playbook: playbook.to_string(),
            unchanged: objects.unchanged,
        });
    }
    Ok(PlaybookPlan::Changes(Changes {
        playbook: playbook.to_string(),
        unchanged: objects.unchanged,
        parent_before,
        actions: objects.actions,
        parent_after,
    }))
}

/// The live parent's record, refusing a set that another tool manages
/// (the ApplySet specification: never adopt it).
async fn read_parent(
    client: &kube::Client,
    parent_name: &str,
) -> Result<Option<ParentState>, ApplyError> {
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        PARENT_NAMESPACE,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let Some(live) = secrets
        .get_opt(parent_name)
        .await
        .map_err(api_err("reading the ApplySet parent"))?
    else {
        return Ok(None);
    };
    let annotations = live.metadata.annotations.unwrap_or_default();
    if let Some(tooling) = annotations
        .get(applyset::ANN_TOOLING)
        .filter(|t| !t.starts_with("pictl/"))
    {
        return Err(ApplyError::ForeignApplySet {
            parent: format!("Secret {PARENT_NAMESPACE}/{parent_name}"),
            tooling: tooling.clone(),
        });
    }
    Ok(Some(ParentState::of(&annotations)))
}

#[derive(Default)]
struct ObjectsPlan {
    actions: Vec<Action>,
    unchanged: usize,
    /// Namespaces the playbook creates: what lives in them cannot be
    /// dry-run (nor listed) before they exist.
    missing_namespaces: BTreeSet<String>,
}

/// Dry-runs every object and compares the result with the live object.
async fn plan_objects(
    client: &kube::Client,
    id: &str,
    manifests: &[Manifest],
    targets: &[ObjectRef],
) -> Result<ObjectsPlan, ApplyError> {
    // `dryRun=All`: the API server validates and answers, and keeps nothing.
    let server_side = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let scaled = autoscaled(manifests);
    let mut out = ObjectsPlan::default();
    for (m, target) in manifests.iter().zip(targets) {
        let api = target.api(client);
        let live = api
            .get_opt(&target.name)
            .await
            .map_err(api_err(format!("reading {target}")))?;
        let body = desired(m, id, live.as_ref(), &scaled);
        let object = target.clone();
        let in_missing =
            (target.namespace.as_ref()).is_some_and(|n| out.missing_namespaces.contains(n));
        if live.is_none() && m.kind() == "Namespace" {
            out.missing_namespaces.insert(target.name.clone());
        }
        if in_missing {
            out.actions.push(Action::Create { object, body });
            continue;
        }
        let result = api
            .patch(&target.name, &server_side, &Patch::Apply(&body))
            .await
            .map_err(api_err(format!("dry-running the apply of {target}")))?;
        match live {
            None => out.actions.push(Action::Create { object, body }),
            Some(l) if differs(&l, &result) => out.actions.push(Action::Update { object, body }),
            Some(_) => out.unchanged += 1,
        }
    }
    Ok(out)
}

/// What is applied for a manifest: the object, labelled as a member of the
/// set, with an autoscaled Deployment's live replica count kept.
fn desired(
    m: &Manifest,
    id: &str,
    live: Option<&DynamicObject>,
    scaled: &BTreeMap<(String, String), (i64, i64)>,
) -> Value {
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
        labels.insert(LABEL_PART_OF.to_string(), Value::String(id.to_string()));
    }
    let key = (
        m.namespace().unwrap_or_default().to_string(),
        m.name().to_string(),
    );
    if let (Some(l), Some((min, max)), "Deployment") = (live, scaled.get(&key), m.kind())
        && let Some(current) = l.data["spec"]["replicas"].as_i64()
        && let Some(spec) = obj["spec"].as_object_mut()
    {
        spec.insert("replicas".into(), Value::from(current.clamp(*min, *max)));
    }
    obj
}

/// What the object says differs, not bookkeeping (resourceVersion also
/// moves for managedFields alone).
fn differs(live: &DynamicObject, applied: &DynamicObject) -> bool {
    normalized(&serde_json::to_value(live).unwrap_or_default())
        != normalized(&serde_json::to_value(applied).unwrap_or_default())
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
            let ns = m.namespace().unwrap_or_default().to_string();
            Some(((ns, target.to_string()), (min, max)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
