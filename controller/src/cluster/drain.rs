//! Cordon, drain and uncordon through the Kubernetes API, as `kubectl
//! drain` does: `spec.unschedulable` on the Node (with an annotation saying
//! pictl set it, so a node the user cordoned is never uncordoned by pictl),
//! then every Pod of the node evicted through the Eviction API, skipping
//! DaemonSet and mirror Pods, retrying while a PodDisruptionBudget refuses
//! (429) until the drain timeout, and waiting for the evicted Pods to go.
//! As `kubectl drain` without `--force --delete-emptydir-data`, a Pod that
//! nothing would recreate (no controller) or that holds `emptyDir` data
//! stops the drain before anything is evicted, unless the run forces it;
//! a Pod left Terminating on a NotReady node (no kubelet to confirm) counts
//! as gone after its grace period, as `--skip-wait-for-delete-timeout`.
//! Every call that changes the cluster takes the run's [`Writer`].

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node as KNode, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, EvictParams, ListParams};
use serde_json::json;

use super::ClusterError;
use super::nodes::{self, CORDONED_ANNOTATION, NodeState};
use crate::error_chain;
use crate::write::Writer;

/// How often a refused eviction is retried (kubectl drain: 5 s).
const RETRY: Duration = Duration::from_secs(1);

/// How long past its deletionTimestamp (the eviction plus the Pod's grace
/// period) a Pod on a NotReady node is waited for before it counts as gone.
const SKIP_WAIT_AFTER: i64 = 10;

/// Why evicting a Pod would lose something: what kubectl drain refuses
/// without `--force` (no controller) or `--delete-emptydir-data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// No ownerReference with `controller: true`: nothing recreates it.
    NoController,
    /// An `emptyDir` volume, deleted with the Pod.
    EmptyDir,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loss::NoController => "no controller",
            Loss::EmptyDir => "emptyDir data",
        })
    }
}

/// A Pod a drain evicts, and what evicting it would lose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainPod {
    pub namespace: String,
    pub name: String,
    pub losses: Vec<Loss>,
}

impl std::fmt::Display for DrainPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.losses.is_empty() {
            let why: Vec<String> = self.losses.iter().map(Loss::to_string).collect();
            write!(f, " ({})", why.join(", "))?;
        }
        Ok(())
    }
}

/// The Pods of `pods` that stop a drain unless it is forced, listed.
pub fn blocking(pods: &[DrainPod]) -> Option<String> {
    let names: Vec<String> = pods
        .iter()
        .filter(|p| !p.losses.is_empty())
        .map(DrainPod::to_string)
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(
        "drain of {node} timed out after {} s: evicting pod {pod} is refused by PodDisruptionBudget {budget}",
        timeout.as_secs()
    )]
    Blocked {
        node: String,
        pod: String,
        /// `namespace/name (needs N healthy pods, has M)`, or why unknown.
        budget: String,
        timeout: Duration,
    },
    #[error("drain of {node} timed out after {} s waiting for pods to terminate: {pods}", timeout.as_secs())]
    Terminating {
        node: String,
        pods: String,
        timeout: Duration,
    },
    #[error(
        "drain of {node} refused before evicting anything: evicting {pods} would lose them for good (no controller recreates a bare Pod; emptyDir data is deleted with its Pod); move or delete them, or pass --drain-force (kubectl drain's --force --delete-emptydir-data)"
    )]
    WouldLose { node: String, pods: String },
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

fn api_err(what: String) -> impl FnOnce(kube::Error) -> DrainError {
    move |source| DrainError::Api { what, source }
}

/// Cordons the Node, recording first that pictl does (a crash between
/// leaves a record of a schedulable Node, which nothing acts on); the Node
/// as written.
pub async fn cordon(
    client: &kube::Client,
    live: &KNode,
    w: &Writer,
) -> Result<KNode, ClusterError> {
    let name = live.metadata.name.as_deref().unwrap_or_default();
    super::cordons::record(client, name, w).await?;
    let patch = |_: &KNode| json!({"spec": {"unschedulable": true}});
    nodes::patch(client, live, "cordoning", patch, w).await
}

/// Uncordons the Node, then drops pictl's record (only for nodes pictl
/// cordoned), and an older pictl's annotation with it.
pub async fn uncordon(
    client: &kube::Client,
    live: &KNode,
    w: &Writer,
) -> Result<KNode, ClusterError> {
    let patch = |n: &KNode| match nodes::annotation(n, CORDONED_ANNOTATION) {
        Some(_) => json!({"metadata": {"annotations": {CORDONED_ANNOTATION: null}},
            "spec": {"unschedulable": null}}),
        None => json!({"spec": {"unschedulable": null}}),
    };
    let node = nodes::patch(client, live, "uncordoning", patch, w).await?;
    let name = live.metadata.name.as_deref().unwrap_or_default();
    super::cordons::forget(client, name, w).await?;
    Ok(node)
}

/// What evicting `p` would lose (kubectl's staging/src/k8s.io/kubectl/pkg/
/// drain/filters.go: `unreplicatedFilter`, `localStorageFilter`); nothing
/// for a Pod already being deleted.
fn losses(p: &Pod) -> Vec<Loss> {
    if p.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let controlled = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true));
    let empty_dir = p
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
    let mut out = Vec::new();
    if !controlled {
        out.push(Loss::NoController);
    }
    if empty_dir {
        out.push(Loss::EmptyDir);
    }
    out
}

/// Pods kubectl drain evicts: not DaemonSet-managed, not mirror Pods, not
/// finished.
fn evictable(p: &Pod) -> bool {
    let daemon = p.metadata.owner_references.as_ref().is_some_and(|o| {
        o.iter()
            .any(|r| r.controller == Some(true) && r.kind == "DaemonSet")
    });
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !daemon && !mirror && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The Pods on `node` that a drain evicts, as the API has them.
async fn evictable_pods(client: &kube::Client, node: &str) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods = api.list(&lp).await?;
    Ok(pods.items.into_iter().filter(evictable).collect())
}

/// Each Pod on `node` that a drain evicts, with what evicting it loses.
pub async fn pods_to_evict(
    client: &kube::Client,
    node: &str,
) -> Result<Vec<DrainPod>, kube::Error> {
    Ok(evictable_pods(client, node)
        .await?
        .iter()
        .map(|p| DrainPod {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            losses: losses(p),
        })
        .collect())
}

/// What `pictl plan` says a drain of these Pods does.
pub fn preview(pods: &[DrainPod], force: bool) -> String {
    match blocking(pods) {
        Some(lost) if !force => format!(
            "drain refused: {lost} would be lost (--drain-force evicts them), uncordoned, not upgraded; the rollout stops"
        ),
        _ if pods.is_empty() => "drained (no pods to evict)".to_string(),
        _ => {
            let names: Vec<String> = pods.iter().map(DrainPod::to_string).collect();
            format!("drained (evicts {})", names.join(", "))
        }
    }
}

/// Whether an evicted Pod counts as gone though the API still has it:
/// its node is NotReady, so no kubelet will confirm the deletion, and its
/// deletionTimestamp (the eviction plus its grace period) is more than
/// [`SKIP_WAIT_AFTER`] seconds past, as `kubectl drain
/// --skip-wait-for-delete-timeout` skips it (kubectl's
/// staging/src/k8s.io/kubectl/pkg/drain/filters.go, `shouldSkipPod`; the
/// apiserver never removes such a Pod without its kubelet).
fn left_for_gone(p: &Pod, node_ready: bool, now: i64) -> bool {
    let Some(deleted) = &p.metadata.deletion_timestamp else {
        return false;
    };
    !node_ready && now - deleted.0.as_second() > SKIP_WAIT_AFTER
}

fn selects(sel: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty());
    !empty && by_labels && by_exprs
}

/// The budget covering the pod, as `namespace/name (needs N healthy pods,
/// has M)`: found by selector, as the apiserver does, since a refusal's
/// Status details do not reach the client.
async fn blocking_budget(client: &kube::Client, ns: &str, pod: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let labels = match pods.get(pod).await {
        Ok(p) => p.metadata.labels.unwrap_or_default(),
        Err(e) => return format!("(unknown: reading pod {ns}/{pod}: {})", error_chain(&e)),
    };
    let list = match budgets.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => return format!("(unknown: listing budgets in {ns}: {})", error_chain(&e)),
    };
    let found: Vec<String> = list
        .items
        .iter()
        .filter(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| selects(s, &labels))
        })
        .map(|b| {
            let name = b.metadata.name.clone().unwrap_or_default();
            match &b.status {
                Some(s) => format!(
                    "{ns}/{name} (needs {} healthy pods, has {})",
                    s.desired_healthy, s.current_healthy
                ),
                None => format!("{ns}/{name}"),
            }
        })
        .collect();
    if found.is_empty() {
        format!("(none found in {ns} any more)")
    } else {
        found.join(", ")
    }
}

/// Evicts one Pod, retrying while a budget refuses, until `deadline`.
async fn evict(
    client: &kube::Client,
    node: &str,
    (ns, pod): &(String, String),
    deadline: Instant,
    timeout: Duration,
) -> Result<(), DrainError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    loop {
        match api.evict(pod, &EvictParams::default()).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 429 => {
                tracing::info!(pod = %format!("{ns}/{pod}"), "eviction refused: {}", e.message);
                if Instant::now() + RETRY > deadline {
                    return Err(DrainError::Blocked {
                        node: node.to_string(),
                        pod: format!("{ns}/{pod}"),
                        budget: blocking_budget(client, ns, pod).await,
                        timeout,
                    });
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(api_err(format!("evicting pod {ns}/{pod} from {node}"))(e)),
        }
    }
}

/// The evicted Pods (`names`) still on `node`, less those left
/// Terminating on a NotReady node.
async fn still_there(
    client: &kube::Client,
    node: &str,
    names: &[String],
) -> Result<Vec<String>, DrainError> {
    let pods = evictable_pods(client, node)
        .await
        .map_err(api_err(format!("listing the pods of {node}")))?;
    let ready = match super::nodes::get(client, node).await {
        Ok(n) => n.as_ref().is_none_or(|n| NodeState::of(n).ready),
        Err(e) => {
            tracing::debug!("reading node {node}: {}", error_chain(&e));
            true
        }
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut left = Vec::new();
    for p in &pods {
        let name = format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default()
        );
        if !names.contains(&name) {
            continue;
        }
        if left_for_gone(p, ready, now) {
            tracing::warn!(
                "pod {name} is still terminating on {node}, which is NotReady: counted as gone"
            );
        } else {
            left.push(name);
        }
    }
    Ok(left)
}

/// Evicts every Pod of `node` that a drain evicts and waits until they
/// are gone; the Pods evicted. Pods whose eviction would lose them
/// ([`Loss`]) stop it before any eviction, unless `force`.
pub async fn drain(
    client: &kube::Client,
    node: &str,
    timeout: Duration,
    force: bool,
    _w: &Writer,
) -> Result<Vec<String>, DrainError> {
    let deadline = Instant::now() + timeout;
    let pods = pods_to_evict(client, node)
        .await
        .map_err(api_err(format!("listing the pods of {node}")))?;
    if let Some(pods) = blocking(&pods).filter(|_| !force) {
        return Err(DrainError::WouldLose {
            node: node.to_string(),
            pods,
        });
    }
    let pods: Vec<(String, String)> = pods.into_iter().map(|p| (p.namespace, p.name)).collect();
    for p in &pods {
        evict(client, node, p, deadline, timeout).await?;
    }
    let names: Vec<String> = pods.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    loop {
        let left = still_there(client, node, &names).await?;
        if left.is_empty() {
            return Ok(names);
        }
        if Instant::now() > deadline {
            return Err(DrainError::Terminating {
                node: node.to_string(),
                pods: left.join(", "),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("pod")
    }

    #[test]
    fn bare_pods_and_emptydir_data_would_be_lost_terminating_ones_not() {
        let owned = serde_json::json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web", "uid": "u", "controller": true}]);
        let bare = pod(serde_json::json!({"metadata": {"name": "b"}}));
        assert_eq!(losses(&bare), [Loss::NoController]);
        let scratch = pod(
            serde_json::json!({"metadata": {"name": "s", "ownerReferences": owned},
            "spec": {"containers": [], "volumes": [{"name": "x", "emptyDir": {}}]}}),
        );
        assert_eq!(losses(&scratch), [Loss::EmptyDir]);
        let going = pod(serde_json::json!({"metadata": {"name": "g",
            "deletionTimestamp": "2025-01-01T00:00:00Z"}}));
        assert!(losses(&going).is_empty());
    }

    #[test]
    fn only_a_pod_terminating_past_its_grace_on_a_not_ready_node_counts_as_gone() {
        let at =
            |s: &str| pod(serde_json::json!({"metadata": {"name": "p", "deletionTimestamp": s}}));
        let deleted = at("2025-01-01T00:00:00Z");
        let then: i64 = "2025-01-01T00:00:00Z"
            .parse::<k8s_openapi::jiff::Timestamp>()
            .expect("time")
            .as_second();
        assert!(!left_for_gone(&deleted, false, then + SKIP_WAIT_AFTER));
        assert!(left_for_gone(&deleted, false, then + SKIP_WAIT_AFTER + 1));
        assert!(
            !left_for_gone(&deleted, true, then + 3600),
            "a Ready kubelet finishes it"
        );
        let alive = pod(serde_json::json!({"metadata": {"name": "p"}}));
        assert!(!left_for_gone(&alive, false, then + 3600));
    }

    #[test]
    fn an_empty_selector_covers_nothing_and_expressions_count() {
        let labels = [("app".to_string(), "web".to_string())].into();
        assert!(!selects(&LabelSelector::default(), &labels));
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        assert!(selects(&sel, &labels));
        let other = LabelSelector {
            match_labels: Some([("app".to_string(), "db".to_string())].into()),
            ..Default::default()
        };
        assert!(!selects(&other, &labels));
    }
}
