//! The Eviction subresource (`POST .../pods/NAME/eviction`, policy/v1
//! Eviction) and the disruption controller's PodDisruptionBudget status it
//! reads. An eviction that would take a budget below its desired healthy
//! count is refused with 429 TooManyRequests; otherwise the Pod is deleted
//! gracefully (`crate::terminate`: Terminating until its kubelet confirms)
//! and its ReplicaSet replaces it at once. A Terminating Pod is not healthy
//! for a budget, and evicting it again ignores budgets (`canIgnorePDB`).
//!
//! Sources: kubernetes pkg/registry/core/pod/storage/eviction.go (`Create`,
//! `canIgnorePDB`, `checkAndDecrement`, `createTooManyRequestsError`,
//! `getPodDisruptionBudgets`), pkg/controller/disruption/disruption.go
//! (`getExpectedPodCount`, `countHealthyPods`, `updatePdbStatus`),
//! k8s.io/component-helpers/apps/poddisruptionbudget (the DisruptionAllowed
//! condition, reasons SufficientPods / InsufficientPods).

// Its checks return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use crate::api::{Resp, json_resp, status_err};
use crate::pods::{controller_uid, pod_ready, rt, selector_empty, selector_matches};
use crate::store::{State, meta_str};
use serde_json::{Value, json};

/// A maxUnavailable/minAvailable against `total`: ints as they are,
/// percentages rounded up (intstr.GetScaledValueFromIntOrPercent, roundUp).
fn scaled(v: &Value, total: i64) -> i64 {
    if let Some(n) = v.as_i64() {
        return n;
    }
    let pct: i64 = v
        .as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (pct * total + 99) / 100
}

/// The scale of the controllers of `pods` (a Deployment's replicas for Pods
/// of its ReplicaSets), each controller counted once.
fn expected_from_controllers(st: &State, pods: &[&Value]) -> i64 {
    let mut seen: Vec<String> = Vec::new();
    let mut total = 0;
    for p in pods {
        let ns = meta_str(p, "namespace");
        let Some(rs_uid) = controller_uid(p, "ReplicaSet") else {
            continue;
        };
        let Some(rs) = st
            .list(rt("ReplicaSet"), Some(ns))
            .into_iter()
            .find(|r| meta_str(r, "uid") == rs_uid)
        else {
            continue;
        };
        let (uid, scale) = match controller_uid(rs, "Deployment").and_then(|d| {
            st.list(rt("Deployment"), Some(ns))
                .into_iter()
                .find(|x| meta_str(x, "uid") == d)
        }) {
            Some(dep) => (meta_str(dep, "uid"), &dep["spec"]["replicas"]),
            None => (rs_uid, &rs["spec"]["replicas"]),
        };
        if !seen.iter().any(|s| s == uid) {
            seen.push(uid.to_string());
            total += scale.as_i64().unwrap_or(1);
        }
    }
    total
}

/// The disruption controller's status for one budget.
fn budget_status(st: &State, pdb: &Value) -> Value {
    let sel = &pdb["spec"]["selector"];
    // policy/v1: an empty selector selects every Pod of the namespace.
    let pods: Vec<&Value> = st
        .list(rt("Pod"), Some(meta_str(pdb, "namespace")))
        .into_iter()
        .filter(|p| selector_matches(sel, &p["metadata"]["labels"]))
        .collect();
    let spec = &pdb["spec"];
    let (expected, desired) = if !spec["maxUnavailable"].is_null() {
        let expected = expected_from_controllers(st, &pods);
        let max = scaled(&spec["maxUnavailable"], expected);
        (expected, (expected - max).max(0))
    } else if spec["minAvailable"].is_i64() {
        (
            pods.len() as i64,
            spec["minAvailable"].as_i64().unwrap_or(0),
        )
    } else {
        let expected = expected_from_controllers(st, &pods);
        (expected, scaled(&spec["minAvailable"], expected))
    };
    let mut disrupted = pdb["status"]["disruptedPods"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    disrupted.retain(|name, _| pods.iter().any(|p| meta_str(p, "name") == name));
    let healthy = pods
        .iter()
        // countHealthyPods: a Terminating Pod is not healthy.
        .filter(|p| {
            pod_ready(p)
                && !crate::terminate::terminating(p)
                && !disrupted.contains_key(meta_str(p, "name"))
        })
        .count() as i64;
    let allowed = (healthy - desired).max(0);
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let old = pdb["status"]["conditions"]
        .as_array()
        .and_then(|c| c.first())
        .cloned();
    let since = match &old {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(crate::log::k8s_now()),
    };
    let mut out = json!({"observedGeneration": pdb["metadata"]["generation"],
        "disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{"type": "DisruptionAllowed", "status": status, "reason": reason,
            "message": "", "observedGeneration": pdb["metadata"]["generation"],
            "lastTransitionTime": since}]});
    if !disrupted.is_empty() {
        out["disruptedPods"] = Value::Object(disrupted);
    }
    out
}

/// Recomputes every budget's status (the disruption controller's pass).
pub fn update_budgets(st: &mut State) {
    let pdbs: Vec<Value> = st
        .list(rt("PodDisruptionBudget"), None)
        .into_iter()
        .cloned()
        .collect();
    for pdb in pdbs {
        let status = budget_status(st, &pdb);
        if pdb["status"] != status {
            let mut p = pdb.clone();
            p["status"] = status;
            if let Err(e) = st.put(rt("PodDisruptionBudget"), p) {
                crate::error!("updating PodDisruptionBudget status: {e}");
            }
        }
    }
}

fn too_many_requests(retry_after: i64, cause: String) -> Resp {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    status_err(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        details,
    )
}

fn success() -> Resp {
    json_resp(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn delete_pod(st: &mut State, ns: &str, name: &str, grace: Option<i64>, dry: bool) -> Resp {
    if dry {
        return success();
    }
    match crate::terminate::delete(st, ns, name, grace) {
        Ok(_) => {
            crate::info!("Evicted pod {ns}/{name}");
            update_budgets(st);
            success()
        }
        Err(e) => status_err(
            500,
            "InternalError",
            &format!("deleting pod: {e}"),
            Value::Null,
        ),
    }
}

/// The body must be an Eviction of the Pod the URL names.
fn check_body(body: &Value, name: &str) -> Result<(), Resp> {
    // The apiserver decodes the body with Eviction as its default kind: a
    // body without apiVersion and kind is an Eviction (kube-rs sends those).
    let kind_ok = body["kind"].as_str().is_none_or(|k| k == "Eviction")
        && body["apiVersion"]
            .as_str()
            .is_none_or(|v| matches!(v, "policy/v1" | "policy/v1beta1"));
    if !kind_ok {
        return Err(status_err(
            400,
            "BadRequest",
            "not a Eviction object",
            Value::Null,
        ));
    }
    if meta_str(body, "name") != name {
        return Err(status_err(
            400,
            "BadRequest",
            "name in URL does not match name in Eviction object",
            Value::Null,
        ));
    }
    Ok(())
}

/// The one PodDisruptionBudget selecting `pod`, if any; more than one is
/// an error the eviction subresource answers with a 500.
fn budget(st: &State, ns: &str, pod: &Value) -> Result<Option<Value>, Resp> {
    let pdbs: Vec<Value> = st
        .list(rt("PodDisruptionBudget"), Some(ns))
        .into_iter()
        .filter(|b| {
            let sel = &b["spec"]["selector"];
            !selector_empty(sel) && selector_matches(sel, &pod["metadata"]["labels"])
        })
        .cloned()
        .collect();
    match pdbs.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => Err(json_resp(
            500,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    "code": 500}),
        )),
    }
}

/// `POST /api/v1/namespaces/NS/pods/NAME/eviction`.
pub fn evict(st: &mut State, ns: &str, name: &str, body: &Value, dry: bool) -> Resp {
    if let Err(r) = check_body(body, name) {
        return r;
    }
    let dry = dry
        || body["deleteOptions"]["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All"));
    let Some(pod) = st.get(rt("Pod"), ns, name).cloned() else {
        return status_err(
            404,
            "NotFound",
            &format!("pods \"{name}\" not found"),
            json!({"name": name, "kind": "pods"}),
        );
    };
    let grace = body["deleteOptions"]["gracePeriodSeconds"].as_i64();
    // canIgnorePDB: a Pod that is not running, or already Terminating,
    // causes no disruption.
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Pending" | "Succeeded" | "Failed")
    ) || crate::terminate::terminating(&pod)
    {
        return delete_pod(st, ns, name, grace, dry);
    }
    let mut pdb = match budget(st, ns, &pod) {
        Ok(Some(pdb)) => pdb,
        Ok(None) => return delete_pod(st, ns, name, grace, dry),
        Err(r) => return r,
    };
    let pdb_name = meta_str(&pdb, "name").to_string();
    let s = &pdb["status"];
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    if !pod_ready(&pod) && n("currentHealthy") >= n("desiredHealthy") && n("desiredHealthy") > 0 {
        return delete_pod(st, ns, name, grace, dry);
    }
    if n("observedGeneration") < pdb["metadata"]["generation"].as_i64().unwrap_or(0) {
        return too_many_requests(
            10,
            format!("The disruption budget {pdb_name} is still being processed by the server."),
        );
    }
    if n("disruptionsAllowed") <= 0 {
        return too_many_requests(
            0,
            format!(
                "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                n("desiredHealthy"),
                n("currentHealthy")
            ),
        );
    }
    if dry {
        return success();
    }
    pdb["status"]["disruptionsAllowed"] = json!(n("disruptionsAllowed") - 1);
    pdb["status"]["disruptedPods"][name] = json!(crate::log::k8s_now());
    if let Err(e) = st.put(rt("PodDisruptionBudget"), pdb) {
        return status_err(
            500,
            "InternalError",
            &format!("updating budget: {e}"),
            Value::Null,
        );
    }
    delete_pod(st, ns, name, grace, false)
}
