//! Plan and apply against the fake API: what each sends, and that a
//! converged playbook plans to nothing and applies nothing.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Action, ApplyError, Manifest, PlaybookPlan, apply_plan, plan_playbook};
use crate::cluster::fake::{Call, FakeApi};
use crate::write::Writer;

const NS: &str = "/api/v1/namespaces/web";
const SVC: &str = "/api/v1/namespaces/web/services/web";
const DEPLOY: &str = "/apis/apps/v1/namespaces/web/deployments/web";
const CM: &str = "/api/v1/namespaces/web/configmaps/extra";
const PARENT: &str = "/api/v1/namespaces/kube-system/secrets/pictl-applyset-web";

fn manifest(object: Value) -> Manifest {
    Manifest {
        source: "web.yaml".into(),
        object,
    }
}

/// A namespace, a Service and a Deployment, plus a ConfigMap if `extra`.
fn playbook(extra: bool) -> Vec<Manifest> {
    let mut m = vec![
        manifest(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "web" } })),
        manifest(json!({ "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "web", "namespace": "web" },
            "spec": { "ports": [{ "port": 8080 }] } })),
        manifest(json!({ "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "web" },
            "spec": { "replicas": 2, "template": { "spec": { "containers": [{ "name": "web", "image": "web:1" }] } } } })),
    ];
    if extra {
        m.push(manifest(json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "extra", "namespace": "web" }, "data": { "a": "b" } })));
    }
    m
}

fn writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method != http::Method::GET)
        .map(Call::write)
        .collect()
}

fn assert_read_only(calls: &[Call]) {
    for c in calls {
        let ok =
            c.method == http::Method::GET || (c.method == http::Method::PATCH && c.is_dry_run());
        assert!(ok, "a plan sent {} {} {:?}", c.method, c.path, c.query);
    }
}

async fn plan(api: &kube::Client, manifests: &[Manifest]) -> PlaybookPlan {
    plan_playbook(api, "web", manifests).await.expect("plan")
}

async fn apply(api: &kube::Client, plan: &PlaybookPlan) {
    let w = Writer::for_apply();
    apply_plan(api, plan, Duration::from_secs(5), &w)
        .await
        .expect("apply");
}

/// A fake API where `playbook(extra)` has been applied; calls cleared.
async fn converged(extra: bool) -> (kube::Client, FakeApi) {
    let (api, fake) = FakeApi::start();
    let p = plan(&api, &playbook(extra)).await;
    apply(&api, &p).await;
    fake.take_calls();
    (api, fake)
}

#[tokio::test]
async fn plan_of_a_fresh_playbook_reads_and_dry_runs_only() {
    let (api, fake) = FakeApi::start();
    let p = plan(&api, &playbook(false)).await;
    let calls = fake.take_calls();
    assert_read_only(&calls);
    assert!(
        calls.iter().any(|c| c.is_dry_run()),
        "the namespace is dry-run: {calls:?}"
    );
    assert!(fake.get(NS).is_none(), "a plan created the namespace");
    let PlaybookPlan::Changes(c) = &p else {
        panic!("a fresh playbook is not converged: {p}")
    };
    let created: Vec<String> = c.actions.iter().map(ToString::to_string).collect();
    assert_eq!(
        created,
        [
            "Namespace web: absent → created",
            "Service web/web: absent → created",
            "Deployment web/web: absent → created",
        ]
    );
    assert!(c.parent_before.is_some() && c.parent_after.is_none());
}

#[tokio::test]
async fn apply_sends_exactly_the_writes_the_plan_lists() {
    let (api, fake) = FakeApi::start();
    let p = plan(&api, &playbook(false)).await;
    fake.take_calls();
    apply(&api, &p).await;
    let calls = fake.take_calls();
    assert!(calls.iter().all(|c| !c.is_dry_run()), "{calls:?}");
    assert_eq!(
        writes(&calls),
        [
            format!("PATCH {PARENT}"),
            format!("PATCH {NS}"),
            format!("PATCH {SVC}"),
            format!("PATCH {DEPLOY}"),
        ]
    );
    let svc = fake.get(SVC).expect("the service was created");
    assert!(
        svc["metadata"]["labels"]["applyset.kubernetes.io/part-of"]
            .as_str()
            .is_some_and(|id| id.starts_with("applyset-")),
        "{svc}"
    );
}

#[tokio::test]
async fn a_converged_playbook_plans_to_converged_and_applies_nothing() {
    let (api, fake) = converged(false).await;
    let p = plan(&api, &playbook(false)).await;
    assert_eq!(
        p,
        PlaybookPlan::Converged {
            playbook: "web".into(),
            unchanged: 3
        }
    );
    assert!(p.changes().is_empty());
    assert_read_only(&fake.take_calls());
    apply(&api, &p).await;
    assert_eq!(fake.take_calls(), [], "a converged plan sent requests");
}

#[tokio::test]
async fn drift_is_planned_as_an_update_and_only_that_object_is_written() {
    let (api, fake) = converged(false).await;
    fake.edit(DEPLOY, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:1")
    });
    let p = plan(&api, &playbook(false)).await;
    assert_read_only(&fake.take_calls());
    let PlaybookPlan::Changes(c) = &p else {
        panic!("drift was not seen")
    };
    assert!(
        matches!(&c.actions[..], [Action::Update { object, .. }] if object.kind == "Deployment")
    );
    assert_eq!(p.unchanged(), 2);
    apply(&api, &p).await;
    assert_eq!(writes(&fake.take_calls()), [format!("PATCH {DEPLOY}")]);
    let d = fake.get(DEPLOY).expect("deployment");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:1"
    );
}

#[tokio::test]
async fn objects_that_left_the_playbook_are_pruned_by_apply_never_by_plan() {
    let (api, fake) = converged(true).await;
    // Made by hand, outside the set: never a prune candidate.
    let hand_made = "/api/v1/namespaces/web/configmaps/hand-made";
    fake.put(
        hand_made,
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "hand-made", "namespace": "web" } }),
    );
    let p = plan(&api, &playbook(false)).await;
    assert_read_only(&fake.take_calls());
    assert!(fake.get(CM).is_some(), "a plan pruned");
    assert_eq!(
        p.changes()
            .iter()
            .map(|c| format!("{}: {} → {}", c.what, c.before, c.after))
            .collect::<Vec<_>>(),
        ["ConfigMap web/extra: left the playbook → pruned"]
    );
    apply(&api, &p).await;
    // The kind left the set too: the parent forgets it after the prune.
    assert_eq!(
        writes(&fake.take_calls()),
        [format!("DELETE {CM}"), format!("PATCH {PARENT}")]
    );
    assert!(fake.get(CM).is_none() && fake.get(hand_made).is_some());
    assert!(plan(&api, &playbook(false)).await.is_converged());
}

#[tokio::test]
async fn a_set_made_by_another_tool_is_refused() {
    let (api, fake) = FakeApi::start();
    fake.put(
        PARENT,
        json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "pictl-applyset-web", "namespace": "kube-system",
            "annotations": { "applyset.kubernetes.io/tooling": "kubectl/v1.32" } } }),
    );
    let err = plan_playbook(&api, "web", &playbook(false))
        .await
        .expect_err("foreign");
    assert!(matches!(err, ApplyError::ForeignApplySet { .. }), "{err}");
}

#[tokio::test]
async fn plans_serialize_as_typed_changes() {
    let (api, _fake) = FakeApi::start();
    let p = plan(&api, &playbook(false)).await;
    let v = serde_json::to_value(&p).expect("json");
    assert_eq!(v["state"], "changes");
    assert_eq!(
        v["actions"][2],
        json!({ "action": "create",
        "object": { "kind": "Deployment", "namespace": "web", "name": "web" } })
    );
    let converged = PlaybookPlan::Converged {
        playbook: "web".into(),
        unchanged: 3,
    };
    assert_eq!(
        serde_json::to_value(&converged).expect("json"),
        json!({ "state": "converged", "playbook": "web", "unchanged": 3 })
    );
    assert_eq!(
        converged.to_string(),
        "playbook web: converged (3 unchanged)"
    );
}

fn playson() -> Vec<Manifest> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/playson");
    super::load(&dir).expect("the playson playbook")
}

#[tokio::test]
async fn the_playson_playbook_converges_and_then_plans_to_converged() {
    let (api, fake) = FakeApi::start();
    let manifests = playson();
    let first = plan_playbook(&api, "playson", &manifests)
        .await
        .expect("plan");
    assert_eq!(first.changes().len(), manifests.len(), "{first}");
    assert!(first.changes()[0].what.starts_with("Namespace "), "{first}");
    apply(&api, &first).await;
    fake.take_calls();
    let again = plan_playbook(&api, "playson", &manifests)
        .await
        .expect("plan");
    assert!(again.is_converged(), "{again}");
    assert_eq!(again.unchanged(), manifests.len());
    assert_read_only(&fake.take_calls());

    // The HPA's business (3..6) is not drift; below its minimum is.
    let deploy = "/apis/apps/v1/namespaces/playson/deployments/httpbin";
    fake.edit(deploy, |d| d["spec"]["replicas"] = json!(5));
    let scaled = plan_playbook(&api, "playson", &manifests)
        .await
        .expect("plan");
    assert!(scaled.is_converged(), "{scaled}");
    fake.edit(deploy, |d| d["spec"]["replicas"] = json!(1));
    let drift = plan_playbook(&api, "playson", &manifests)
        .await
        .expect("plan");
    assert_eq!(
        drift.to_string().lines().nth(1),
        Some("  Deployment playson/httpbin: differs → applied")
    );
    fake.take_calls();
    apply(&api, &drift).await;
    assert_eq!(writes(&fake.take_calls()), [format!("PATCH {deploy}")]);
    assert_eq!(fake.get(deploy).expect("deployment")["spec"]["replicas"], 3);
}
