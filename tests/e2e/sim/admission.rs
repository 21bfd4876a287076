//! Host-side simulator case for ValidatingAdmissionPolicy: a status patch
//! by a ServiceAccount changes the Node's labels while no policy stands in
//! the way (the status strategy resets only the spec), and a policy bound
//! with `Deny` refuses it as the apiserver does, judged by kubectl's own
//! rendering of the refusal. See "Admission" in tests/k3s-sim/README.md.

use super::health::{AGENT_RBAC, CONDITION, SMP, curl, token_of};
use super::*;

/// A policy and binding of the shape pictl writes, small: the agents'
/// status patches may change neither labels nor other conditions.
const POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: agent-status}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [UPDATE], resources: [nodes/status]}
  matchConditions:
  - name: agents
    expression: "request.userInfo.username.startsWith('system:serviceaccount:kube-system:pictl-agent-')"
  validations:
  - expression: "has(object.metadata.labels) == has(oldObject.metadata.labels) && (!has(object.metadata.labels) || object.metadata.labels == oldObject.metadata.labels)"
    message: "an agent may not change its Node's labels"
  - expression: "oldObject.status.conditions.all(o, o.type == 'RootDiskPressure' || object.status.conditions.exists(c, c == o))"
    messageExpression: "'an agent may change only its own conditions, not those of ' + request.name"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: agent-status-binding}
spec:
  policyName: agent-status
  validationActions: [Deny]
"#;

/// kubectl's `patch --subresource` reads the object first.
const READER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: status-reader}
rules:
- {apiGroups: [""], resources: [nodes/status], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: status-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: status-reader}
subjects:
- {kind: ServiceAccount, name: pictl-agent-node1, namespace: kube-system}
"#;

const LABEL: &str = r#"{"metadata":{"labels":{"node-restriction.kubernetes.io/x":"y"}}}"#;

fn labels(sim: &Sim) -> serde_json::Value {
    json(&sim.k(&["get", "node", "node1", "-o", "json"]))["metadata"]["labels"].clone()
}

pub fn validating_admission_policies_refuse_status_patches_like_the_apiserver() {
    let sim = Sim::start("", &["--node-name", "node1"]);
    let out = sim.apply(AGENT_RBAC, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = token_of(&sim);
    let path = "/api/v1/nodes/node1/status";

    // Without a policy a status patch changes metadata too.
    let (code, body) = curl(&sim, &token, "PATCH", path, SMP, LABEL);
    assert_eq!(code, 200, "{body}");
    assert_eq!(labels(&sim)["node-restriction.kubernetes.io/x"], "y");
    sim.k(&[
        "label",
        "node",
        "node1",
        "node-restriction.kubernetes.io/x-",
    ]);

    let out = sim.apply(&format!("{POLICY}---{READER}"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Discovery serves the kinds; the apiserver's defaults are filled in.
    let got = json(&sim.k(&[
        "get",
        "validatingadmissionpolicies",
        "agent-status",
        "-o",
        "json",
    ]));
    assert_eq!(got["spec"]["failurePolicy"], "Fail");
    assert_eq!(got["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
    let names = sim.k(&["get", "validatingadmissionpolicybindings", "-o", "name"]);
    assert!(names.contains("agent-status-binding"), "{names}");

    // kubectl with the agent's token: refused, and kubectl words it as the
    // apiserver's 422 with one cause.
    let kc = sim.path("sa-admission.kubeconfig");
    std::fs::write(&kc, format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: '{}', certificate-authority: '{}'}}}}]\nusers: [{{name: u, user: {{token: '{token}'}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
        sim.url(), sim.path("data/server/tls/server-ca.crt").display())).expect("kubeconfig");
    let as_agent = |args: &[&str]| kubectl_with(&kc, &sim.path("kcache-sa-admission"), args);
    let out = as_agent(&[
        "patch",
        "node",
        "node1",
        "--subresource=status",
        "--type=merge",
        "-p",
        LABEL,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(
        err.contains("The nodes \"node1\" is invalid: : ValidatingAdmissionPolicy 'agent-status' with binding 'agent-status-binding' denied request: an agent may not change its Node's labels"),
        "{err}"
    );
    assert!(
        labels(&sim)["node-restriction.kubernetes.io/x"].is_null(),
        "the Node is unchanged"
    );
    let (code, body) = curl(&sim, &token, "PATCH", path, SMP, LABEL);
    let status = json(&body);
    assert_eq!(
        (code, &status["reason"]),
        (422, &serde_json::json!("Invalid")),
        "{body}"
    );
    assert_eq!(
        status["message"],
        "nodes \"node1\" is forbidden: ValidatingAdmissionPolicy 'agent-status' with binding 'agent-status-binding' denied request: an agent may not change its Node's labels"
    );

    // Another condition: the messageExpression's words.
    let ready =
        r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Spoofed"}]}}"#;
    let (code, body) = curl(&sim, &token, "PATCH", path, SMP, ready);
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(
            "denied request: an agent may change only its own conditions, not those of node1"
        ),
        "{body}"
    );

    // Its own condition passes; the admin (not matched) may still relabel.
    let (code, body) = curl(&sim, &token, "PATCH", path, SMP, CONDITION);
    assert_eq!(code, 200, "{body}");
    sim.k(&[
        "patch",
        "node",
        "node1",
        "--subresource=status",
        "--type=merge",
        "-p",
        LABEL,
    ]);
    assert_eq!(labels(&sim)["node-restriction.kubernetes.io/x"], "y");
    sim.k(&[
        "label",
        "node",
        "node1",
        "node-restriction.kubernetes.io/x-",
    ]);

    // Without its binding the policy refuses nothing.
    sim.k(&[
        "delete",
        "validatingadmissionpolicybinding",
        "agent-status-binding",
    ]);
    let (code, body) = curl(&sim, &token, "PATCH", path, SMP, LABEL);
    assert_eq!(code, 200, "{body}");
}
