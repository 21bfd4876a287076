//! The admission rows of the README, one test each, on a store in memory.

use super::*;
use crate::store::Store;

fn rt(plural: &str) -> &'static ResourceType {
    crate::store::RESOURCES
        .iter()
        .find(|r| r.plural == plural)
        .expect("served")
}

fn agent() -> User {
    User::ServiceAccount {
        namespace: "kube-system".into(),
        name: "pictl-agent-node2".into(),
    }
}

fn request(user: User, plural: &str, sub: Option<&str>, name: &str) -> Request {
    Request {
        user,
        rt: rt(plural),
        subresource: sub.map(String::from),
        namespace: String::new(),
        name: name.into(),
        dry_run: false,
    }
}

fn node(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node2", "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

/// A store of its own under the temp dir.
fn store() -> Store {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("k3s-sim-admission-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    Store::open(dir.join("state.db")).expect("store")
}

/// The JSON body of an answer.
fn body_json(resp: Resp) -> Value {
    match resp.into_body() {
        crate::http::Body::Full(Some(b)) => serde_json::from_slice(&b).expect("json"),
        _ => Value::Null,
    }
}

/// A store holding `policy` bound by a binding named `b` (Deny).
fn store_with(policy: Value, actions: Value) -> Store {
    let store = store();
    {
        let mut st = store.lock();
        let mut p = json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "p"}, "spec": policy});
        defaults(rt("validatingadmissionpolicies"), &mut p);
        st.put(rt("validatingadmissionpolicies"), p).expect("put");
        let b = json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "b"},
            "spec": {"policyName": "p", "validationActions": actions}});
        st.put(rt("validatingadmissionpolicybindings"), b)
            .expect("put");
    }
    store
}

fn status_policy(extra: Value) -> Value {
    let mut p = json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["UPDATE"], "resources": ["nodes/status"]}]},
        "validations": [{"expression": "object.metadata.labels == oldObject.metadata.labels",
            "message": "labels are not yours"}]});
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

/// What `admit` answers for `req` writing `old` → `new`: the status code.
fn judge(store: &Store, req: Request, old: Option<&Value>, new: Option<&Value>) -> u16 {
    let rt = req.rt;
    let rt_status = |r: Result<(), Resp>| r.err().map_or(200, |r| r.status().as_u16());
    let st = store.lock();
    let fut = REQUEST.scope(req, async { rt_status(admit(&st, rt, old, new)) });
    futures_lite(fut)
}

/// Runs a future that never waits (admission is synchronous).
fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn refused_message(store: &Store, req: Request, old: &Value, new: &Value) -> Value {
    let rt = req.rt;
    let st = store.lock();
    let resp =
        futures_lite(REQUEST.scope(req, async { admit(&st, rt, Some(old), Some(new)).err() }));
    let resp = resp.expect("refused");
    body_json(resp)
}

#[test]
fn a_status_patch_that_fails_a_validation_is_422_with_the_apiservers_message() {
    let store = store_with(status_policy(json!({})), json!(["Deny"]));
    let (old, new) = (node(json!({"a": "1"})), node(json!({"a": "2"})));
    let req = request(agent(), "nodes", Some("status"), "node2");
    let body = refused_message(&store, req, &old, &new);
    assert_eq!(body["code"], 422);
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["message"],
        "nodes \"node2\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: labels are not yours"
    );
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "ValidatingAdmissionPolicy 'p' with binding 'b' denied request: labels are not yours"
    );
    let req = request(agent(), "nodes", Some("status"), "node2");
    assert_eq!(judge(&store, req, Some(&old), Some(&old)), 200);
}

#[test]
fn rules_match_operation_group_version_resource_subresource_and_names() {
    let store = store_with(status_policy(json!({})), json!(["Deny"]));
    let (old, new) = (node(json!({"a": "1"})), node(json!({"a": "2"})));
    // `nodes/status` is not `nodes`: a rule for the subresource leaves the main resource alone.
    let req = request(agent(), "nodes", None, "node2");
    assert_eq!(judge(&store, req, Some(&old), Some(&new)), 200);
    // CREATE is not UPDATE.
    let req = request(agent(), "nodes", Some("status"), "node2");
    assert_eq!(judge(&store, req, None, Some(&new)), 200);
    for (resources, names, want) in [
        (json!(["nodes/*"]), json!([]), 422),
        (json!(["*/status"]), json!([]), 422),
        (json!(["*"]), json!([]), 200),
        (json!(["*/*"]), json!(["node2"]), 422),
        (json!(["*/*"]), json!(["node1"]), 200),
    ] {
        let p = status_policy(json!({"matchConstraints": {"resourceRules": [{
            "apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"],
            "resources": resources, "resourceNames": names}]}}));
        let store = store_with(p, json!(["Deny"]));
        let req = request(agent(), "nodes", Some("status"), "node2");
        let got = judge(&store, req, Some(&old), Some(&new));
        assert_eq!(got, want, "{resources} {names}");
    }
    let excluded = status_policy(json!({"matchConstraints": {
        "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes/status"]}],
        "excludeResourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["nodes/status"], "resourceNames": ["node2"]}]}}));
    let store = store_with(excluded, json!(["Deny"]));
    let req = request(agent(), "nodes", Some("status"), "node2");
    assert_eq!(judge(&store, req, Some(&old), Some(&new)), 200);
}

#[test]
fn match_conditions_see_the_request_and_its_user() {
    let cond = |expr: &str| {
        status_policy(json!({"matchConditions": [{"name": "who", "expression": expr}]}))
    };
    let (old, new) = (node(json!({"a": "1"})), node(json!({"a": "2"})));
    let agents =
        "request.userInfo.username.startsWith('system:serviceaccount:kube-system:pictl-agent-')";
    for (expr, user, want) in [
        (agents, agent(), 422),
        (agents, User::Admin, 200),
        (
            "'system:masters' in request.userInfo.groups",
            User::Admin,
            422,
        ),
        (
            "request.operation == 'UPDATE' && request.subResource == 'status' && request.name == 'node2' && request.resource.resource == 'nodes'",
            agent(),
            422,
        ),
        ("request.namespace == 'x'", agent(), 200),
    ] {
        let store = store_with(cond(expr), json!(["Deny"]));
        let req = request(user.clone(), "nodes", Some("status"), "node2");
        assert_eq!(
            judge(&store, req, Some(&old), Some(&new)),
            want,
            "{expr} {user:?}"
        );
    }
}

#[test]
fn messages_reasons_failure_policy_and_validation_actions() {
    let (old, new) = (node(json!({"a": "1"})), node(json!({"a": "2"})));
    let req = || request(agent(), "nodes", Some("status"), "node2");
    // messageExpression, then message, then the expression itself.
    let v = json!({"validations": [{"expression": "false", "message": "m",
        "messageExpression": "'label a is ' + object.metadata.labels.a", "reason": "Forbidden"}]});
    let store = store_with(status_policy(v), json!(["Deny"]));
    let body = refused_message(&store, req(), &old, &new);
    assert_eq!(body["code"], 403);
    assert_eq!(body["reason"], "Forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("denied request: label a is 2")
    );
    let v = json!({"validations": [{"expression": " 1 == 2 "}]});
    let store = store_with(status_policy(v), json!(["Deny"]));
    let body = refused_message(&store, req(), &old, &new);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("denied request: failed expression: 1 == 2")
    );
    // An error: denied under Fail (the default), admitted under Ignore.
    let broken = json!({"validations": [{"expression": "object.metadata.nothere == 1"}]});
    let store = store_with(status_policy(broken.clone()), json!(["Deny"]));
    let body = refused_message(&store, req(), &old, &new);
    let m = body["message"].as_str().unwrap_or("").to_string();
    assert!(
        m.contains("expression 'object.metadata.nothere == 1' resulted in error"),
        "{m}"
    );
    let mut ignore = status_policy(broken);
    ignore["failurePolicy"] = json!("Ignore");
    let store = store_with(ignore, json!(["Deny"]));
    assert_eq!(judge(&store, req(), Some(&old), Some(&new)), 200);
    // Warn and Audit do not refuse; a policy without a binding does nothing.
    let store = store_with(status_policy(json!({})), json!(["Warn", "Audit"]));
    assert_eq!(judge(&store, req(), Some(&old), Some(&new)), 200);
    let store = store_with(status_policy(json!({})), json!(["Deny"]));
    store
        .lock()
        .delete(rt("validatingadmissionpolicybindings"), "", "b")
        .expect("delete");
    assert_eq!(judge(&store, req(), Some(&old), Some(&new)), 200);
}

#[test]
fn variables_old_object_and_deletes() {
    let (old, new) = (node(json!({"a": "1"})), node(json!({"a": "2"})));
    let p = json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["DELETE", "CREATE"], "resources": ["nodes"]}]},
        "variables": [{"name": "gone", "expression": "object == null"},
            {"name": "kept", "expression": "variables.gone && oldObject.metadata.labels.a == '1'"}],
        "validations": [{"expression": "!variables.kept"}]});
    let store = store_with(p, json!(["Deny"]));
    let req = || request(User::Admin, "nodes", None, "node2");
    assert_eq!(judge(&store, req(), Some(&old), None), 422);
    assert_eq!(judge(&store, req(), Some(&new), None), 200);
    assert_eq!(judge(&store, req(), None, Some(&new)), 200);
}

#[test]
fn the_apiserver_defaults_fill_what_a_client_left_out() {
    let mut p =
        json!({"spec": {"matchConstraints": {"resourceRules": [{"resources": ["nodes"]}]}}});
    defaults(rt("validatingadmissionpolicies"), &mut p);
    assert_eq!(p["spec"]["failurePolicy"], "Fail");
    let m = &p["spec"]["matchConstraints"];
    assert_eq!(m["matchPolicy"], "Equivalent");
    assert_eq!(m["namespaceSelector"], json!({}));
    assert_eq!(m["objectSelector"], json!({}));
    assert_eq!(m["resourceRules"][0]["scope"], "*");
}
