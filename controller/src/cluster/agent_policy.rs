//! What confines the health agents' tokens to their Node's conditions (kube
//! client side): one ValidatingAdmissionPolicy and its binding, both named
//! [`POLICY`]. RBAC can only say "patch `nodes/status` of this Node", and on
//! a real API server such a patch also changes the Node's labels and
//! annotations (the status strategy resets only the spec; NodeRestriction
//! binds kubelets, not ServiceAccounts). So root on one Pi could give its
//! Node `node-restriction.kubernetes.io/*` or control-plane labels, or
//! re-point `pictl.dev/agent-metrics`. The policy (GA in Kubernetes 1.30)
//! lets a `pictl-agent-*` ServiceAccount change only `status.conditions`
//! entries of the agent's own types
//! ([`pictl_agent::publish::conditions::ALL`]), on its own Node: metadata's
//! labels, annotations, owner references and finalizers, every other status
//! field and every other condition stay as they were.
//!
//! The expressions are written for the API server's typed CEL (a Node's
//! fields are struct fields there, so they are compared one by one with
//! `has()`, never iterated as a map). The spec carries the API server's
//! defaults, so what is read back equals what is applied and a converged
//! cluster plans nothing.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams};

use super::ClusterError;
use super::agent_access::{NAMESPACE, names};
use crate::step::Change;
use crate::write::Writer;

/// The policy's and the binding's name.
pub const POLICY: &str = "pictl-agent-node-status";
const MANAGER: &str = "pictl";

/// The prefix of every agent's user name ([`names`]'s accounts).
fn user_prefix() -> String {
    let account = names("").account;
    format!("system:serviceaccount:{NAMESPACE}:{account}")
}

/// NodeStatus's fields other than `conditions` (k8s.io/api core/v1, 1.33).
const OTHER_STATUS: [&str; 12] = [
    "capacity",
    "allocatable",
    "phase",
    "addresses",
    "daemonEndpoints",
    "nodeInfo",
    "images",
    "volumesInUse",
    "volumesAttached",
    "config",
    "runtimeHandlers",
    "features",
];

/// `path` (under `object.`/`oldObject.`) is present in both or neither, and equal.
fn unchanged(path: &str) -> String {
    format!(
        "(has(object.{path}) == has(oldObject.{path}) && (!has(object.{path}) || object.{path} == oldObject.{path}))"
    )
}

fn validation(expression: String, message: &str) -> Validation {
    Validation {
        expression,
        message: Some(message.into()),
        ..Validation::default()
    }
}

/// The agent's condition types as a CEL list.
fn own_types() -> String {
    let quoted: Vec<String> = (pictl_agent::publish::conditions::ALL.iter())
        .map(|t| format!("'{t}'"))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn validations() -> Vec<Validation> {
    let mut out = vec![validation(
        format!(
            "request.userInfo.username == '{}' + request.name",
            user_prefix()
        ),
        "a health agent may write only its own Node",
    )];
    for field in ["labels", "annotations", "ownerReferences", "finalizers"] {
        let message = format!("a health agent may not change its Node's metadata.{field}");
        out.push(validation(
            unchanged(&format!("metadata.{field}")),
            &message,
        ));
    }
    let status: Vec<String> = (OTHER_STATUS.iter())
        .map(|f| unchanged(&format!("status.{f}")))
        .collect();
    out.push(validation(
        status.join(" && "),
        "a health agent may change only its Node's status.conditions",
    ));
    let types = own_types();
    out.push(validation(
        format!(
            "!has(oldObject.status.conditions) || oldObject.status.conditions.all(o, o.type in {types} || (has(object.status.conditions) && object.status.conditions.exists(c, c == o)))"
        ),
        "a health agent may not change or remove another component's Node conditions",
    ));
    out.push(validation(
        format!(
            "!has(object.status.conditions) || object.status.conditions.all(c, c.type in {types} || (has(oldObject.status.conditions) && oldObject.status.conditions.exists(o, o == c)))"
        ),
        &format!(
            "a health agent may add only conditions of its own types {}",
            pictl_agent::publish::conditions::ALL.join(", ")
        ),
    ));
    out
}

/// The policy's spec, with the API server's defaults spelled out.
pub fn policy_spec() -> ValidatingAdmissionPolicySpec {
    let strs = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    ValidatingAdmissionPolicySpec {
        failure_policy: Some("Fail".into()),
        match_constraints: Some(MatchResources {
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(LabelSelector::default()),
            object_selector: Some(LabelSelector::default()),
            resource_rules: Some(vec![NamedRuleWithOperations {
                api_groups: strs(&[""]),
                api_versions: strs(&["v1"]),
                operations: strs(&["UPDATE"]),
                resources: strs(&["nodes", "nodes/status"]),
                scope: Some("*".into()),
                ..NamedRuleWithOperations::default()
            }]),
            ..MatchResources::default()
        }),
        match_conditions: Some(vec![MatchCondition {
            name: "pictl-health-agents".into(),
            expression: format!("request.userInfo.username.startsWith('{}')", user_prefix()),
        }]),
        validations: Some(validations()),
        ..ValidatingAdmissionPolicySpec::default()
    }
}

pub fn binding_spec() -> ValidatingAdmissionPolicyBindingSpec {
    ValidatingAdmissionPolicyBindingSpec {
        policy_name: Some(POLICY.into()),
        validation_actions: Some(vec!["Deny".into()]),
        ..ValidatingAdmissionPolicyBindingSpec::default()
    }
}

fn failed(what: &str) -> impl FnOnce(kube::Error) -> ClusterError {
    ClusterError::call(what)
}

/// The policy and its binding as the API holds them (read-only).
async fn current(
    client: &kube::Client,
) -> Result<
    (
        Option<ValidatingAdmissionPolicy>,
        Option<ValidatingAdmissionPolicyBinding>,
    ),
    ClusterError,
> {
    let policies: kube::Api<ValidatingAdmissionPolicy> = kube::Api::all(client.clone());
    let bindings: kube::Api<ValidatingAdmissionPolicyBinding> = kube::Api::all(client.clone());
    let policy = (policies.get_opt(POLICY).await)
        .map_err(failed("reading the agents' ValidatingAdmissionPolicy"))?;
    let binding = (bindings.get_opt(POLICY).await).map_err(failed(
        "reading the agents' ValidatingAdmissionPolicyBinding",
    ))?;
    Ok((policy, binding))
}

/// What the two objects lack (read-only): absent, or another spec.
pub async fn plan(client: &kube::Client) -> Result<Vec<Change>, ClusterError> {
    let (policy, binding) = current(client).await?;
    let says = "only its Node's own conditions";
    Ok([
        drift(
            "ValidatingAdmissionPolicy",
            policy.map(|p| p.spec == Some(policy_spec())),
            says,
        ),
        drift(
            "ValidatingAdmissionPolicyBinding",
            binding.map(|b| b.spec == Some(binding_spec())),
            "Deny",
        ),
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// `found`: `None` absent, `Some(same)` present.
fn drift(kind: &str, found: Option<bool>, says: &str) -> Option<Change> {
    let was = match found {
        None => "absent",
        Some(false) => "other spec",
        Some(true) => return None,
    };
    Some(Change::new(format!("{kind} {POLICY}"), was, says))
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        name: Some(POLICY.into()),
        labels: Some(
            [
                ("app.kubernetes.io/managed-by", "pictl"),
                ("app.kubernetes.io/component", "health-agent"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
        ..ObjectMeta::default()
    }
}

/// Server-side applies the policy, then its binding.
pub async fn apply(client: &kube::Client, _w: &Writer) -> Result<(), ClusterError> {
    let pp = PatchParams::apply(MANAGER).force();
    let policies: kube::Api<ValidatingAdmissionPolicy> = kube::Api::all(client.clone());
    let bindings: kube::Api<ValidatingAdmissionPolicyBinding> = kube::Api::all(client.clone());
    let policy = ValidatingAdmissionPolicy {
        metadata: meta(),
        spec: Some(policy_spec()),
        status: None,
    };
    policies
        .patch(POLICY, &pp, &Patch::Apply(&policy))
        .await
        .map_err(failed("applying the agents' ValidatingAdmissionPolicy"))?;
    let binding = ValidatingAdmissionPolicyBinding {
        metadata: meta(),
        spec: Some(binding_spec()),
    };
    bindings
        .patch(POLICY, &pp, &Patch::Apply(&binding))
        .await
        .map_err(failed(
            "applying the agents' ValidatingAdmissionPolicyBinding",
        ))?;
    Ok(())
}

/// With agents disabled, what is left of the two objects (read-only).
pub async fn leftovers(client: &kube::Client) -> Result<Vec<Change>, ClusterError> {
    let (policy, binding) = current(client).await?;
    let gone = |kind: &str| Change::new(format!("{kind} {POLICY}"), "present", "removed");
    Ok([
        binding.map(|_| gone("ValidatingAdmissionPolicyBinding")),
        policy.map(|_| gone("ValidatingAdmissionPolicy")),
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// Deletes the binding, then the policy (either already gone is fine).
pub async fn remove(client: &kube::Client, _w: &Writer) -> Result<(), ClusterError> {
    let policies: kube::Api<ValidatingAdmissionPolicy> = kube::Api::all(client.clone());
    let bindings: kube::Api<ValidatingAdmissionPolicyBinding> = kube::Api::all(client.clone());
    let dp = DeleteParams::default();
    let absent = |r: Result<_, kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(|_| ()),
    };
    absent(bindings.delete(POLICY, &dp).await.map(|_| ())).map_err(failed(
        "removing the agents' ValidatingAdmissionPolicyBinding",
    ))?;
    absent(policies.delete(POLICY, &dp).await.map(|_| ()))
        .map_err(failed("removing the agents' ValidatingAdmissionPolicy"))?;
    Ok(())
}
