//! ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in 1.30):
//! every write that reaches storage through the API is judged by the stored
//! policies and their bindings, as the apiserver's validating admission
//! plugin does (staging/src/k8s.io/apiserver/pkg/admission/plugin/policy/
//! validating/dispatcher.go `Dispatch`, validator.go `Validate`). It runs
//! where the registry's store runs `createValidation`/`updateValidation`
//! (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go
//! `Create`, `Update`): after the strategy's PrepareForUpdate (so a Node
//! status patch is judged with the old spec put back) and after the object's
//! own validation; a dry run is judged too.
//!
//! The request being served is a task-local [`Request`] that
//! [`crate::api::Api::handle`] sets: writes made by the simulator's own
//! controllers (heartbeats, the node lifecycle, Deployments) are not API
//! requests and are not admitted. In K3s those pass admission as
//! `system:node:*` or controller identities, which no policy pictl writes
//! matches. Expressions are CEL (the `cel` crate), evaluated on the objects
//! as JSON: unlike the apiserver, nothing is type-checked against the
//! OpenAPI schemas (an expression the apiserver refuses to compile against
//! a Node is evaluated here as written).

mod eval;
mod matching;
#[cfg(test)]
mod tests;

use crate::api::{Resp, status_err};
use crate::auth::User;
use crate::store::{ResourceType, State, find, meta_str};
use serde_json::{Value, json};

/// What the API request being served asks, as admission's `Attributes`.
#[derive(Debug, Clone)]
pub struct Request {
    pub user: User,
    pub rt: &'static ResourceType,
    pub subresource: Option<String>,
    pub namespace: String,
    pub name: String,
    pub dry_run: bool,
}

tokio::task_local! {
    /// The API request this task serves, set around its handler.
    pub static REQUEST: Request;
}

/// `CREATE`, `UPDATE` or `DELETE`, as admission names the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

fn policies_rt() -> Option<&'static ResourceType> {
    find(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
    )
}

fn bindings_rt() -> Option<&'static ResourceType> {
    find(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
    )
}

/// Judges a write of `rt` (`old` → `new`) made by the request this task
/// serves, if any: `Err` is the apiserver's refusal (a ready response, as
/// every handler's error here).
#[allow(clippy::result_large_err)]
pub fn admit(
    st: &State,
    rt: &'static ResourceType,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Result<(), Resp> {
    let Ok(req) = REQUEST.try_with(Request::clone) else {
        return Ok(());
    };
    if req.rt.plural != rt.plural || req.rt.group != rt.group {
        return Ok(());
    }
    let op = match (old, new) {
        (None, _) => Operation::Create,
        (Some(_), Some(_)) => Operation::Update,
        (Some(_), None) => Operation::Delete,
    };
    let name = new.or(old).map(|o| meta_str(o, "name")).unwrap_or("");
    let attrs = Attributes {
        req: &req,
        op,
        name: if name.is_empty() { &req.name } else { name },
    };
    match dispatch(st, &attrs, old, new) {
        None => Ok(()),
        Some(denied) => Err(refusal(&attrs, &denied)),
    }
}

/// One request's attributes as policies see them.
pub struct Attributes<'a> {
    pub req: &'a Request,
    pub op: Operation,
    pub name: &'a str,
}

/// The first denial: the policy, the binding (none for a policy that
/// could not be configured), why, and its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub policy: String,
    pub binding: Option<String>,
    pub message: String,
    pub reason: String,
}

/// dispatcher.go `Dispatch`: each policy whose matchConstraints match, each
/// of its bindings whose matchResources match; the first denial wins.
fn dispatch(
    st: &State,
    a: &Attributes<'_>,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Option<Denied> {
    let (prt, brt) = (policies_rt()?, bindings_rt()?);
    let bindings = st.list(brt, None);
    for policy in st.list(prt, None) {
        let pname = meta_str(policy, "name").to_string();
        let spec = &policy["spec"];
        if !matching::matches(st, &spec["matchConstraints"], a, old, new) {
            continue;
        }
        let fail = spec["failurePolicy"].as_str() != Some("Ignore");
        for binding in &bindings {
            let bspec = &binding["spec"];
            if bspec["policyName"].as_str() != Some(pname.as_str()) {
                continue;
            }
            let resources = &bspec["matchResources"];
            if resources.is_object() && !matching::matches(st, resources, a, old, new) {
                continue;
            }
            let denies = strs(&bspec["validationActions"]).contains(&"Deny");
            let Some((message, reason)) = eval::validate(spec, a, old, new, fail) else {
                continue;
            };
            if !denies {
                continue;
            }
            return Some(Denied {
                policy: pname,
                binding: Some(meta_str(binding, "name").to_string()),
                message,
                reason,
            });
        }
    }
    None
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `reasonToCode` (dispatcher.go's helper): the HTTP status of a reason.
fn code(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// The refusal as `Dispatch` builds it: admission.NewForbidden's message
/// (`<resource> "<name>" is forbidden: <why>`, apimachinery's `NewForbidden`)
/// with the policy's reason (Invalid when the validation names none) and
/// its code, the policy's message as the one cause.
fn refusal(a: &Attributes<'_>, d: &Denied) -> Resp {
    let why = match &d.binding {
        Some(b) => format!(
            "ValidatingAdmissionPolicy '{}' with binding '{b}' denied request: {}",
            d.policy, d.message
        ),
        None => format!(
            "ValidatingAdmissionPolicy '{}' denied request: {}",
            d.policy, d.message
        ),
    };
    let rt = a.req.rt;
    status_err(
        code(&d.reason),
        &d.reason,
        &format!("{} \"{}\" is forbidden: {why}", rt.qualified(), a.name),
        json!({"name": a.name, "group": rt.group, "kind": rt.plural,
            "causes": [{"message": why}]}),
    )
}

/// The apiserver's defaults for a policy and a binding
/// (pkg/apis/admissionregistration/v1/defaults.go: `failurePolicy` Fail,
/// `matchPolicy` Equivalent, empty namespace and object selectors, each
/// rule's `scope` `*`), so what a client applies without them reads back
/// with them.
pub fn defaults(rt: &ResourceType, obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    match rt.kind {
        "ValidatingAdmissionPolicy" => {
            if spec["failurePolicy"].is_null() {
                spec["failurePolicy"] = json!("Fail");
            }
            match_defaults(&mut spec["matchConstraints"]);
        }
        "ValidatingAdmissionPolicyBinding" if spec["matchResources"].is_object() => {
            match_defaults(&mut spec["matchResources"]);
        }
        _ => {}
    }
}

fn match_defaults(m: &mut Value) {
    if !m.is_object() {
        return;
    }
    if m["matchPolicy"].is_null() {
        m["matchPolicy"] = json!("Equivalent");
    }
    for sel in ["namespaceSelector", "objectSelector"] {
        if m[sel].is_null() {
            m[sel] = json!({});
        }
    }
    for rules in ["resourceRules", "excludeResourceRules"] {
        for r in m[rules].as_array_mut().into_iter().flatten() {
            if r.is_object() && r["scope"].is_null() {
                r["scope"] = json!("*");
            }
        }
    }
}
