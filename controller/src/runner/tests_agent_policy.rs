//! The agents' admission policy (`agent-policy`, issue 23 item 1): a fresh
//! cluster gets the ValidatingAdmissionPolicy and its binding, reported once
//! on the first server; a re-run changes nothing; a policy edited in the
//! cluster is listed by `plan` (which writes nothing) and put back by
//! `apply`.

use super::tests_relay::setup_with;
use super::*;
use crate::cluster::agent_policy::{POLICY, policy_spec};
use crate::step::StepId;

const NODES: [(&str, &str, &str); 2] = [("s1", "server", "x86_64"), ("a1", "agent", "x86_64")];

const POLICY_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/pictl-agent-node-status";
const BINDING_PATH: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/pictl-agent-node-status";

fn policy_changes(report: &RunReport, node: &str) -> Vec<String> {
    let Some(n) = report.nodes.iter().find(|n| n.name == node) else {
        return vec![];
    };
    (n.steps.iter().filter(|r| r.step == StepId::AgentPolicy))
        .flat_map(|r| r.changes.iter().map(ToString::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agents_policy_is_applied_once_kept_and_put_back_when_edited() {
    let s = setup_with(&NODES, "").await;
    let applied = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!applied.failed(), "{applied:#?}");
    assert_eq!(
        policy_changes(&applied, "s1"),
        [
            format!("ValidatingAdmissionPolicy {POLICY}: absent → only its Node's own conditions"),
            format!("ValidatingAdmissionPolicyBinding {POLICY}: absent → Deny"),
        ]
    );
    assert!(
        policy_changes(&applied, "a1").is_empty(),
        "once, on the first server"
    );
    let policy = s.api.store.get(POLICY_PATH).expect("policy applied");
    let binding = s.api.store.get(BINDING_PATH).expect("binding applied");
    assert_eq!(binding["spec"]["policyName"], POLICY);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    let user = &policy["spec"]["matchConditions"][0]["expression"];
    assert_eq!(
        user,
        "request.userInfo.username.startsWith('system:serviceaccount:kube-system:pictl-agent-')"
    );
    let text = policy["spec"]["validations"].to_string();
    for t in pictl_agent::publish::conditions::ALL {
        assert!(text.contains(&format!("'{t}'")), "{t} allowed: {text}");
    }
    let again = apply(&s.inv, &s.options(true)).await.expect("re-run");
    assert!(!again.changed(), "{again:#?}");

    // Edited or removed in the cluster: plan lists it and writes nothing;
    // apply restores it.
    s.api.store.remove(BINDING_PATH);
    let mut edited = policy.clone();
    edited["spec"]["validations"] = serde_json::json!([{"expression": "true"}]);
    s.api.store.put(POLICY_PATH, edited.clone());
    let planned = plan(&s.inv, &s.options(true)).await.expect("plan runs");
    assert_eq!(
        policy_changes(&planned, "s1"),
        [
            format!(
                "ValidatingAdmissionPolicy {POLICY}: other spec → only its Node's own conditions"
            ),
            format!("ValidatingAdmissionPolicyBinding {POLICY}: absent → Deny"),
        ]
    );
    assert_eq!(
        s.api.store.get(POLICY_PATH),
        Some(edited),
        "a plan wrote it"
    );
    assert!(s.api.store.get(BINDING_PATH).is_none(), "a plan wrote it");
    let applied = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!applied.failed(), "{applied:#?}");
    let restored = s.api.store.get(POLICY_PATH).expect("policy");
    let spec: k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicySpec =
        serde_json::from_value(restored["spec"].clone()).expect("a policy spec");
    assert_eq!(spec, policy_spec());
    assert!(s.api.store.get(BINDING_PATH).is_some(), "binding restored");
}
