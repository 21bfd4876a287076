//! Cordon, drain and uncordon through the Kubernetes API, as `kubectl
//! drain` does: `spec.unschedulable` on the Node (with an annotation saying
//! pictl set it, so a node the user cordoned is never uncordoned by pictl),
//! then every Pod of the node evicted through the Eviction API, skipping
//! DaemonSet and mirror Pods, retrying while a PodDisruptionBudget refuses
//! (429) until the drain timeout, and waiting for the evicted Pods to go.
//! Every call that changes the cluster takes the run's [`Writer`].

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node as KNode, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, EvictParams, ListParams};
use serde_json::json;

use super::ClusterError;
use super::nodes::{self, CORDONED_ANNOTATION};
use crate::error_chain;
use crate::write::Writer;

/// How often a refused eviction is retried (kubectl drain: 5 s).
const RETRY: Duration = Duration::from_secs(1);

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

/// `namespace/name` of each Pod on `node` that a drain evicts.
pub async fn pods_to_evict(
    client: &kube::Client,
    node: &str,
) -> Result<Vec<(String, String)>, kube::Error> {
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods = api.list(&lp).await?;
    Ok(pods
        .items
        .iter()
        .filter(|p| evictable(p))
        .map(|p| {
            (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect())
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

/// Evicts every Pod of `node` that a drain evicts and waits until they
/// are gone; the Pods evicted.
pub async fn drain(
    client: &kube::Client,
    node: &str,
    timeout: Duration,
    _w: &Writer,
) -> Result<Vec<String>, DrainError> {
    let deadline = Instant::now() + timeout;
    let pods = pods_to_evict(client, node)
        .await
        .map_err(api_err(format!("listing the pods of {node}")))?;
    for p in &pods {
        evict(client, node, p, deadline, timeout).await?;
    }
    let names: Vec<String> = pods.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    loop {
        let left: Vec<String> = pods_to_evict(client, node)
            .await
            .map_err(api_err(format!("listing the pods of {node}")))?
            .into_iter()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .filter(|n| names.contains(n))
            .collect();
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
