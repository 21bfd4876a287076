//! Applying a playbook's plan: exactly the writes [`PlaybookPlan`] lists
//! (server-side apply with field manager `pictl`, conflicts forced since
//! pictl repairs drift; prunes; the ApplySet parent), then waiting for the
//! Deployments it wrote to roll out. Deciding what to write is
//! [`super::plan`]'s job; nothing here reads the cluster to decide.

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;

use super::applyset::{self, PARENT_NAMESPACE, ParentState};
use super::error::{ApplyError, api_err};
use super::plan::{Action, FIELD_MANAGER, PlaybookPlan};
use super::rollout::wait_rolled_out;
use crate::write::Writer;

/// Writes what `plan` lists; a converged plan writes nothing. Safe to run
/// again after a failure: applies are idempotent and a prune of an object
/// already gone succeeds.
pub async fn apply_plan(
    client: &kube::Client,
    plan: &PlaybookPlan,
    wait: Duration,
    w: &Writer,
) -> Result<(), ApplyError> {
    let PlaybookPlan::Changes(c) = plan else {
        return Ok(());
    };
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    if let Some(state) = &c.parent_before {
        write_parent(client, &c.playbook, state, w).await?;
    }
    let mut deployments = Vec::new();
    for action in &c.actions {
        let object = action.object();
        let api = object.api(client);
        match action {
            Action::Create { body, .. } | Action::Update { body, .. } => {
                api.patch(&object.name, &pp, &Patch::Apply(body))
                    .await
                    .map_err(api_err(format!("applying {object}")))?;
                if object.kind == "Deployment" {
                    deployments.push((api, object));
                }
            }
            Action::Prune { .. } => prune(&api, &object.name, &object.to_string(), w).await?,
        }
    }
    if let Some(state) = &c.parent_after {
        write_parent(client, &c.playbook, state, w).await?;
    }
    let deadline = Instant::now() + wait;
    for (api, object) in deployments {
        wait_rolled_out(&api, &object.name, &object.to_string(), deadline, wait).await?;
    }
    Ok(())
}

async fn write_parent(
    client: &kube::Client,
    playbook: &str,
    state: &ParentState,
    _: &Writer,
) -> Result<(), ApplyError> {
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        PARENT_NAMESPACE,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let parent = applyset::parent(playbook, state);
    secrets
        .patch(
            &applyset::parent_name(playbook),
            &pp,
            &Patch::Apply(&parent),
        )
        .await
        .map_err(api_err("writing the ApplySet parent"))?;
    Ok(())
}

async fn prune(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    _: &Writer,
) -> Result<(), ApplyError> {
    match api.delete(name, &DeleteParams::default()).await {
        // Already gone (a retried apply, or someone else): what the plan wanted.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other
            .map(|_| ())
            .map_err(api_err(format!("pruning {what}"))),
    }
}
