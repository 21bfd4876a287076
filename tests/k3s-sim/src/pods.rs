//! Pods and ReplicaSets for Deployments: what a K3s upgrade with drain needs
//! and no more. The deployment controller keeps one ReplicaSet per pod
//! template (`<deployment>-<pod-template-hash>`, older ones scaled to 0), the
//! ReplicaSet controller creates and deletes Pods to match its replicas, the
//! scheduler binds Pending Pods to nodes that fit (`crate::schedule`), and the
//! kubelet's part is played here: a bound Pod runs, and turns Ready after its
//! readiness probe's `initialDelaySeconds` while its node is Ready. Deployment
//! and ReplicaSet status are counted from the Pods.
//!
//! Sources: kubernetes pkg/controller/deployment (sync.go `getNewReplicaSet`,
//! `calculateStatus`), pkg/controller/replicaset (replica_set.go
//! `manageReplicas`, replica_set_utils.go `calculateStatus`),
//! pkg/controller/nodelifecycle (`MarkPodsNotReady`), pkg/kubelet/prober
//! (`initialDelaySeconds`), pkg/controller/podgc (pods of deleted nodes).

use crate::store::{RESOURCES, ResourceType, State, meta_str};
use serde_json::{Value, json};

pub fn rt(kind: &str) -> &'static ResourceType {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or(&RESOURCES[0])
}

/// Whether a metav1.LabelSelector matches `labels`; an empty selector
/// matches everything (callers that want "nothing" check first).
pub fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let by_exprs = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        });
    by_labels && by_exprs
}

pub fn selector_empty(sel: &Value) -> bool {
    sel["matchLabels"].as_object().is_none_or(|m| m.is_empty())
        && sel["matchExpressions"]
            .as_array()
            .is_none_or(|m| m.is_empty())
}

pub fn node_ready(n: &Value) -> bool {
    condition_true(n, "Ready")
}

pub fn condition_true(o: &Value, ty: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == ty))
        .is_some_and(|c| c["status"] == "True")
}

pub fn pod_ready(p: &Value) -> bool {
    condition_true(p, "Ready")
}

/// The uid of the controller named in `o`'s ownerReferences, if of `kind`.
pub fn controller_uid<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["controller"] == json!(true))
        .and_then(|r| r["uid"].as_str())
}

fn owner_ref(owner: &Value) -> Value {
    json!([{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true}])
}

/// The suffix alphabet of apimachinery's `rand.String` (no vowels, no
/// look-alikes), used for generated names.
fn rand_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let uuid = crate::validate::uuid().replace('-', "");
    let bytes = hex::decode(&uuid).unwrap_or_default();
    bytes
        .iter()
        .take(n)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The pod-template-hash: the real one is FNV-32a over the template, encoded
/// with the same alphabet; a digest of the template plays that role here.
pub fn template_hash(template: &Value) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let d = sha2::Sha256::digest(template.to_string().as_bytes());
    d.iter()
        .take(10)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn put(st: &mut State, kind: &str, obj: Value) {
    if let Err(e) = st.put(rt(kind), obj) {
        crate::error!("updating {kind}: {e}");
    }
}

/// Deletes as the controllers do: a Pod gracefully (`crate::terminate`).
fn delete(st: &mut State, kind: &str, ns: &str, name: &str) {
    let done = match kind {
        "Pod" => crate::terminate::delete(st, ns, name, None).map(|_| ()),
        _ => st.delete(rt(kind), ns, name).map(|_| ()),
    };
    if let Err(e) = done {
        crate::error!("deleting {kind} {ns}/{name}: {e}");
    }
}

fn new_replica_set(dep: &Value, hash: &str) -> Value {
    let name = format!("{}-{hash}", meta_str(dep, "name"));
    let mut template = dep["spec"]["template"].clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = dep["spec"]["selector"].clone();
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let mut labels = dep["spec"]["template"]["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(hash);
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
            "name": name, "namespace": meta_str(dep, "namespace"), "labels": labels,
            "uid": crate::validate::uuid(), "generation": 1,
            "creationTimestamp": crate::log::k8s_now(),
            "annotations": {"deployment.kubernetes.io/revision": "1",
                "deployment.kubernetes.io/desired-replicas": dep["spec"]["replicas"]},
            "ownerReferences": owner_ref(dep)},
        "spec": {"replicas": 0, "selector": selector, "template": template},
        "status": {"replicas": 0, "observedGeneration": 1}})
}

/// The deployment controller: one ReplicaSet per template, the current one
/// at the Deployment's replicas, older ones at 0.
fn sync_deployment(st: &mut State, dep: &Value) {
    let ns = meta_str(dep, "namespace").to_string();
    let uid = meta_str(dep, "uid").to_string();
    let hash = template_hash(&dep["spec"]["template"]);
    let current = format!("{}-{hash}", meta_str(dep, "name"));
    if st.get(rt("ReplicaSet"), &ns, &current).is_none() {
        crate::info!(
            "Deployment {ns}/{}: new ReplicaSet {current}",
            meta_str(dep, "name")
        );
        put(st, "ReplicaSet", new_replica_set(dep, &hash));
    }
    let replicas = dep["spec"]["replicas"].as_i64().unwrap_or(1);
    let owned: Vec<Value> = st
        .list(rt("ReplicaSet"), Some(&ns))
        .into_iter()
        .filter(|r| controller_uid(r, "Deployment") == Some(uid.as_str()))
        .cloned()
        .collect();
    for mut rs in owned {
        let want = if meta_str(&rs, "name") == current {
            replicas
        } else {
            0
        };
        if rs["spec"]["replicas"].as_i64() != Some(want) {
            rs["spec"]["replicas"] = json!(want);
            rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                json!(replicas);
            let generation = rs["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            rs["metadata"]["generation"] = json!(generation);
            put(st, "ReplicaSet", rs);
        }
    }
}

fn new_pod(rs: &Value) -> Value {
    let template = &rs["spec"]["template"];
    let mut spec = template["spec"].clone();
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("serviceAccountName", json!("default")),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
    ] {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
    // The DefaultTolerationSeconds admission plugin.
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerations.iter().any(|t| t["key"] == key) {
            tolerations.push(json!({"key": key, "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = json!(tolerations);
    let generate = format!("{}-", meta_str(rs, "name"));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": format!("{generate}{}", rand_suffix(5)), "generateName": generate,
            "namespace": meta_str(rs, "namespace"), "labels": template["metadata"]["labels"],
            "uid": crate::validate::uuid(), "creationTimestamp": crate::log::k8s_now(),
            "ownerReferences": owner_ref(rs)},
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "Burstable"}})
}

/// The ReplicaSet controller: as many live Pods as replicas; surplus Pods
/// go unscheduled ones first, then the newest (controller.ActivePods order).
fn sync_replica_set(st: &mut State, rs: &Value) {
    let ns = meta_str(rs, "namespace").to_string();
    let uid = meta_str(rs, "uid");
    // FilterActivePods: a Terminating Pod is already replaced.
    let mut pods: Vec<Value> = st
        .list(rt("Pod"), Some(&ns))
        .into_iter()
        .filter(|p| controller_uid(p, "ReplicaSet") == Some(uid))
        .filter(|p| !crate::terminate::terminating(p))
        .cloned()
        .collect();
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    if pods.len() < want {
        for _ in pods.len()..want {
            let pod = new_pod(rs);
            crate::info!(
                "ReplicaSet {ns}/{}: created pod {}",
                meta_str(rs, "name"),
                meta_str(&pod, "name")
            );
            put(st, "Pod", pod);
        }
    } else if pods.len() > want {
        pods.sort_by_key(|p| {
            (
                !p["spec"]["nodeName"].is_null(),
                std::cmp::Reverse(meta_str(p, "creationTimestamp").to_string()),
            )
        });
        for p in &pods[..pods.len() - want] {
            delete(st, "Pod", &ns, meta_str(p, "name"));
        }
    }
}

/// Seconds since a Kubernetes timestamp.
fn since(ts: &Value) -> Option<i64> {
    let t = crate::log::parse_k8s_time(ts.as_str()?)?;
    Some(time::OffsetDateTime::now_utc().unix_timestamp() - t)
}

fn readiness_delay(pod: &Value) -> i64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["readinessProbe"]["initialDelaySeconds"].as_i64())
        .max()
        .unwrap_or(0)
}

fn cond(ty: &str, ok: bool, since: &Value) -> Value {
    json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastProbeTime": null,
        "lastTransitionTime": since})
}

/// The kubelet's and node lifecycle controller's view of a bound Pod: it
/// runs once bound, is Ready after its readiness delay while its node is
/// Ready, and NotReady while the node is not.
fn pod_status(pod: &Value, node: Option<&Value>) -> Value {
    let mut status = pod["status"].clone();
    let start = status["startTime"].clone();
    let start = if start.is_null() {
        json!(crate::log::k8s_now())
    } else {
        start
    };
    let ready = node.is_some_and(node_ready) && since(&start).unwrap_or(0) >= readiness_delay(pod);
    let was_ready = pod_ready(pod);
    let changed_at = if ready == was_ready {
        pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| start.clone())
    } else {
        json!(crate::log::k8s_now())
    };
    status["phase"] = json!("Running");
    status["startTime"] = start.clone();
    status["conditions"] = json!([
        cond("PodReadyToStartContainers", true, &start),
        cond("Initialized", true, &start),
        cond("Ready", ready, &changed_at),
        cond("ContainersReady", ready, &changed_at),
        cond("PodScheduled", true, &start),
    ]);
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": c["image"],
            "ready": ready, "started": true, "restartCount": 0,
            "containerID": format!("containerd://{}", meta_str(pod, "uid").replace('-', "")),
            "state": {"running": {"startedAt": start}}})
        })
        .collect();
    status["containerStatuses"] = json!(statuses);
    if let Some(n) = node {
        let ip = n["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
            .map(|x| x["address"].clone())
            .unwrap_or(Value::Null);
        status["hostIP"] = ip.clone();
        status["hostIPs"] = json!([{"ip": ip}]);
        if status["podIP"].is_null() {
            let cidr = n["spec"]["podCIDR"].as_str().unwrap_or("10.42.0.0/24");
            let base = cidr.trim_end_matches(".0/24");
            let host = 2
                + (hex::decode(&meta_str(pod, "uid")[..2])
                    .unwrap_or_default()
                    .first()
                    .copied()
                    .unwrap_or(0)
                    % 250);
            status["podIP"] = json!(format!("{base}.{host}"));
            status["podIPs"] = json!([{"ip": status["podIP"]}]);
        }
    }
    status
}

/// Binds Pending Pods and keeps bound Pods' status, then counts ReplicaSet
/// and Deployment status from them.
fn sync_pods(st: &mut State) {
    let nodes: Vec<Value> = st.list(rt("Node"), None).into_iter().cloned().collect();
    let pods: Vec<Value> = st.list(rt("Pod"), None).into_iter().cloned().collect();
    for pod in pods {
        let mut p = pod.clone();
        match p["spec"]["nodeName"].as_str() {
            None => match crate::schedule::pick(st, &nodes, &pod) {
                Ok(node) => {
                    crate::info!(
                        "Successfully assigned {}/{} to {node}",
                        meta_str(&pod, "namespace"),
                        meta_str(&pod, "name")
                    );
                    p["spec"]["nodeName"] = json!(node);
                    let n = nodes.iter().find(|n| meta_str(n, "name") == node);
                    p["status"] = pod_status(&p, n);
                }
                Err(why) => {
                    p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": why, "lastProbeTime": null,
                        "lastTransitionTime": pod["status"]["conditions"][0]["lastTransitionTime"]
                            .as_str().map_or_else(|| json!(crate::log::k8s_now()), |t| json!(t))}]);
                }
            },
            Some(node) => {
                let n = nodes.iter().find(|n| meta_str(n, "name") == node);
                p["status"] = pod_status(&p, n);
            }
        }
        if p != pod {
            put(st, "Pod", p);
        }
    }
}

fn replica_set_status(st: &mut State, rs: &Value) {
    let uid = meta_str(rs, "uid");
    let pods: Vec<&Value> = st
        .list(rt("Pod"), Some(meta_str(rs, "namespace")))
        .into_iter()
        .filter(|p| controller_uid(p, "ReplicaSet") == Some(uid))
        .filter(|p| !crate::terminate::terminating(p))
        .collect();
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let mut status = json!({"replicas": pods.len(), "fullyLabeledReplicas": pods.len(),
        "observedGeneration": rs["metadata"]["generation"]});
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(ready);
    }
    if rs["status"] != status {
        let mut r = rs.clone();
        r["status"] = status;
        put(st, "ReplicaSet", r);
    }
}

/// (replicas, updated, ready) of a Deployment, counted from its ReplicaSets'
/// Pods; the current ReplicaSet's name.
pub fn deployment_counts(st: &State, dep: &Value) -> (i64, i64, i64, String) {
    let ns = meta_str(dep, "namespace");
    let uid = meta_str(dep, "uid");
    let current = format!(
        "{}-{}",
        meta_str(dep, "name"),
        template_hash(&dep["spec"]["template"])
    );
    let (mut total, mut updated, mut ready) = (0, 0, 0);
    for rs in st.list(rt("ReplicaSet"), Some(ns)) {
        if controller_uid(rs, "Deployment") != Some(uid) {
            continue;
        }
        let n = |k: &str| rs["status"][k].as_i64().unwrap_or(0);
        total += n("replicas");
        ready += n("readyReplicas");
        if meta_str(rs, "name") == current {
            updated += n("replicas");
        }
    }
    (total, updated, ready, current)
}

/// One pass of the deployment, ReplicaSet, scheduler, kubelet and garbage
/// collector parts the simulator has.
pub fn reconcile(st: &mut State) {
    collect_garbage(st);
    crate::terminate::finish(st);
    let deps: Vec<Value> = st
        .list(rt("Deployment"), None)
        .into_iter()
        .cloned()
        .collect();
    for dep in &deps {
        sync_deployment(st, dep);
    }
    let sets: Vec<Value> = st
        .list(rt("ReplicaSet"), None)
        .into_iter()
        .cloned()
        .collect();
    for rs in &sets {
        sync_replica_set(st, rs);
    }
    sync_pods(st);
    let sets: Vec<Value> = st
        .list(rt("ReplicaSet"), None)
        .into_iter()
        .cloned()
        .collect();
    for rs in &sets {
        replica_set_status(st, rs);
    }
    crate::eviction::update_budgets(st);
}

/// Dependents whose owner is gone (the garbage collector), and Pods bound
/// to a Node that no longer exists (pkg/controller/podgc).
fn collect_garbage(st: &mut State) {
    let mut gone: Vec<(&str, String, String)> = Vec::new();
    for (kind, owner_kind) in [("ReplicaSet", "Deployment"), ("Pod", "ReplicaSet")] {
        for o in st.list(rt(kind), None) {
            let Some(uid) = controller_uid(o, owner_kind) else {
                continue;
            };
            if crate::terminate::terminating(o) {
                continue;
            }
            let ns = meta_str(o, "namespace");
            let owners = st.list(rt(owner_kind), Some(ns));
            if !owners.iter().any(|w| meta_str(w, "uid") == uid) {
                gone.push((kind, ns.to_string(), meta_str(o, "name").to_string()));
            }
        }
    }
    for p in st.list(rt("Pod"), None) {
        if let Some(node) = p["spec"]["nodeName"].as_str()
            && st.get(rt("Node"), "", node).is_none()
        {
            // podgc's gcOrphaned deletes with grace 0.
            gone.push((
                "PodOfGoneNode",
                meta_str(p, "namespace").to_string(),
                meta_str(p, "name").to_string(),
            ));
        }
    }
    for (kind, ns, name) in gone {
        let shown = kind.strip_suffix("OfGoneNode").unwrap_or(kind);
        crate::info!("Garbage collecting {shown} {ns}/{name}");
        match kind {
            "PodOfGoneNode" => {
                if let Err(e) = crate::terminate::delete(st, &ns, &name, Some(0)) {
                    crate::error!("deleting Pod {ns}/{name}: {e}");
                }
            }
            _ => delete(st, kind, &ns, &name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "httpbin", "tier": "web"});
        assert!(selector_matches(
            &json!({"matchLabels": {"app": "httpbin"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"app": "other"}}),
            &labels
        ));
        let expr = |op: &str, v: &[&str]| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": v}]});
        assert!(selector_matches(&expr("In", &["web", "db"]), &labels));
        assert!(!selector_matches(&expr("NotIn", &["web"]), &labels));
        assert!(selector_matches(&expr("Exists", &[]), &labels));
        assert!(!selector_matches(&expr("DoesNotExist", &[]), &labels));
        assert!(selector_empty(&json!({})));
    }

    #[test]
    fn a_pod_is_ready_after_its_probe_delay_on_a_ready_node_only() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.42.1.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let pod = |delay: i64, started: i64| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            json!({"metadata": {"uid": "abcd-ef"}, "spec": {"nodeName": "n1", "containers": [
                {"name": "c", "image": "i", "readinessProbe": {"initialDelaySeconds": delay}}]},
                "status": {"startTime": crate::log::format_k8s_time(now - started)}})
        };
        let ready = |p: &Value, n: Option<&Value>| {
            let mut p = p.clone();
            p["status"] = pod_status(&p, n);
            pod_ready(&p)
        };
        assert!(!ready(&pod(5, 1), Some(&node)));
        assert!(ready(&pod(5, 6), Some(&node)));
        let mut down = node.clone();
        down["status"]["conditions"][0]["status"] = json!("Unknown");
        assert!(!ready(&pod(5, 6), Some(&down)));
        assert!(!ready(&pod(0, 0), None));
    }
}
