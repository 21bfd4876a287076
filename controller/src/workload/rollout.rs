//! Waiting for a Deployment that an apply wrote to finish rolling out, by
//! `kubectl rollout status`'s rules. Read-only polling.

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::error::{ApplyError, api_err};

/// Waits until a Deployment's rollout is complete: the new spec observed,
/// every replica updated, no old replica left, every updated replica
/// available. Fails early when the Deployment reports it is stuck.
pub(crate) async fn wait_rolled_out(
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
