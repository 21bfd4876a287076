//! Nodes as K3s registers them (labels, roles, addresses, nodeInfo, Lease
//! heartbeats, K3s's node-password secret) and the two controllers the simulator
//! needs: the node lifecycle monitor (Ready -> Unknown after the grace period without
//! heartbeat, back to Ready when heartbeats resume; the conditions themselves are
//! node_conditions.rs's) and the Deployment status controller.
//!
//! Deployment status is counted from its Pods (`crate::pods`): Available=True
//! when availableReplicas >= replicas - maxUnavailable.

use crate::node_conditions;
use crate::store::{RESOURCES, ResourceType, State, Store, meta_str};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn rt(kind: &str) -> &'static ResourceType {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or(&RESOURCES[0])
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    pub internal_ip: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
    pub os_image: String,
    pub kernel_version: String,
    pub kubelet_version: String,
    /// The registering node's own arch (a kubelet labels its node with its
    /// GOARCH): in a mixed cluster it is not the server's. Empty from an
    /// older agent, which then gets the server's.
    #[serde(default)]
    pub arch: String,
    pub server: bool,
    /// A server running embedded etcd.
    #[serde(default)]
    pub etcd: bool,
    /// Its etcd member's name (`<node>-<8 hex>`), empty but on etcd servers.
    #[serde(default)]
    pub etcd_name: String,
    pub password: String,
}

pub struct Cluster {
    pub store: Store,
    /// Last heartbeat and last Lease renewal per node.
    pub heartbeats: Mutex<HashMap<String, (Instant, Option<Instant>)>>,
    pub grace: Duration,
    pub secrets: Vec<String>,
    /// The server's data dir: its CA signs the agents' kubelet certificates.
    pub data_dir: std::path::PathBuf,
}

pub fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn parse_taint(t: &str) -> Option<Value> {
    let (kv, effect) = t.rsplit_once(':')?;
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") || key.is_empty() {
        return None;
    }
    let mut v = json!({"key": key, "effect": effect});
    if let Some(val) = value {
        v["value"] = json!(val);
    }
    Some(v)
}

pub fn validate_taints(taints: &[String]) -> anyhow::Result<()> {
    for t in taints {
        if parse_taint(t).is_none() {
            anyhow::bail!(
                "invalid node-taint {t:?}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
            );
        }
    }
    Ok(())
}

/// The labels a (re)registering node ends up with: what it had, K3s's
/// well-known ones, the roles, then the node's own `node-label`s.
fn registered_labels(node: &Value, info: &NodeInfo, arch: &str) -> serde_json::Map<String, Value> {
    let mut labels = serde_json::Map::new();
    if let Some(old) = node["metadata"]["labels"].as_object() {
        labels = old.clone();
    }
    for (k, v) in [
        ("beta.kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/hostname", info.name.as_str()),
        ("node.kubernetes.io/instance-type", "k3s"),
        ("beta.kubernetes.io/instance-type", "k3s"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    if info.server {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            json!("true"),
        );
        labels.insert("node-role.kubernetes.io/master".into(), json!("true"));
    }
    // pkg/etcd/metadata_controller.go / member_controller.go: etcd members carry
    // the etcd role (kubectl's ROLES control-plane,etcd,master).
    if info.etcd {
        labels.insert("node-role.kubernetes.io/etcd".into(), json!("true"));
    }
    for (k, v) in &info.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels
}

/// The status a registering kubelet posts, keeping the Node's conditions.
fn registered_status(node: &Value, info: &NodeInfo, arch: &str) -> Value {
    let conditions = node["status"]["conditions"].clone();
    json!({
        "addresses": [{"type": "InternalIP", "address": info.internal_ip}, {"type": "Hostname", "address": info.hostname}],
        "conditions": conditions,
        "capacity": {"cpu": "4", "memory": "3882924Ki", "pods": "110", "ephemeral-storage": "30000000Ki"},
        "allocatable": {"cpu": "4", "memory": "3882924Ki", "pods": "110", "ephemeral-storage": "29000000Ki"},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": arch, "operatingSystem": "linux", "osImage": info.os_image,
            "kernelVersion": info.kernel_version, "kubeletVersion": info.kubelet_version,
            "kubeProxyVersion": info.kubelet_version,
            "containerRuntimeVersion": "containerd://2.0.5-k3s1",
            "machineID": "", "systemUUID": "", "bootID": "",
        },
    })
}

pub enum RegisterError {
    PasswordRejected,
    Invalid(String),
    Store(anyhow::Error),
}

impl Cluster {
    pub fn register(&self, info: &NodeInfo) -> Result<(), RegisterError> {
        if info.name.is_empty()
            || !info
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(RegisterError::Invalid(format!(
                "invalid node name {:?}",
                info.name
            )));
        }
        let mut st = self.store.lock();
        let secret_name = crate::node_password::check(&mut st, info)?;
        let node_rt = rt("Node");
        let existing = st.get(node_rt, "", &info.name).cloned();
        let mut node = existing.clone().unwrap_or_else(|| {
            let n = st.list(node_rt, None).len();
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": info.name, "uid": crate::validate::uuid(), "creationTimestamp": crate::log::k8s_now()},
                "spec": {"podCIDR": format!("10.42.{n}.0/24"), "podCIDRs": [format!("10.42.{n}.0/24")],
                    "providerID": format!("k3s://{}", info.name)}})
        });
        let arch = if info.arch.is_empty() {
            arch()
        } else {
            info.arch.as_str()
        };
        node["metadata"]["labels"] = Value::Object(registered_labels(&node, info, arch));
        node["metadata"]["annotations"]["k3s.io/internal-ip"] = json!(info.internal_ip);
        node["metadata"]["annotations"]["k3s.io/hostname"] = json!(info.hostname);
        node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = json!("0");
        crate::members::annotate(&mut node, info);
        // Taints are the kubelet's --register-with-taints: applied when the Node is
        // created, never on a later start. Labels (above) are patched on every start
        // and never removed (pkg/agent/run.go updateMutableLabels).
        if existing.is_none() {
            let taints: Vec<Value> = info.taints.iter().filter_map(|t| parse_taint(t)).collect();
            if !taints.is_empty() {
                node["spec"]["taints"] = json!(taints);
            }
        }
        if !node_conditions::kubelet_posted(&node) {
            // The kubelet posts its conditions; Ready again lifts the
            // lifecycle controller's unreachable taint.
            node_conditions::set_ready(&mut node, true);
        }
        node["status"] = registered_status(&node, info, arch);
        let (stored, _) = st.put(node_rt, node).map_err(RegisterError::Store)?;
        crate::node_password::owned_by_node(&mut st, &secret_name, &stored)?;
        drop(st);
        self.heartbeat(&info.name).map_err(RegisterError::Store)?;
        Ok(())
    }

    /// Returns Ok(false) when the node is unknown (deleted): the agent re-registers.
    pub fn heartbeat(&self, name: &str) -> anyhow::Result<bool> {
        let now = Instant::now();
        let mut st = self.store.lock();
        let node_rt = rt("Node");
        let Some(node) = st.get(node_rt, "", name).cloned() else {
            return Ok(false);
        };
        let renew_lease = {
            let mut hb = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
            let entry = hb.entry(name.to_string()).or_insert((now, None));
            entry.0 = now;
            if entry
                .1
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
            {
                entry.1 = Some(now);
                true
            } else {
                false
            }
        };
        if !node_conditions::is_ready(&node) {
            let mut n = node.clone();
            node_conditions::set_ready(&mut n, true);
            st.put(node_rt, n)?;
            crate::info!("Node {name} is Ready again (heartbeat resumed)");
        }
        if renew_lease {
            let lease_rt = rt("Lease");
            let existing = st.get(lease_rt, "kube-node-lease", name).cloned();
            let micro = format!("{}.000000Z", crate::log::k8s_now().trim_end_matches('Z'));
            let mut lease = existing.unwrap_or_else(|| {
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
                    "name": name, "namespace": "kube-node-lease", "uid": crate::validate::uuid(),
                    "creationTimestamp": crate::log::k8s_now(),
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}]},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}})
            });
            lease["spec"]["renewTime"] = json!(micro);
            st.put(lease_rt, lease)?;
        }
        Ok(true)
    }

    /// One pass of the node lifecycle and Deployment controllers.
    pub fn reconcile(&self) {
        let now = Instant::now();
        let mut st = self.store.lock();
        let node_rt = rt("Node");
        let names: Vec<String> = st
            .list(node_rt, None)
            .iter()
            .map(|n| meta_str(n, "name").to_string())
            .collect();
        for name in names {
            let last = {
                let mut hb = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
                // A node never heard from since this server started gets a full grace period.
                hb.entry(name.clone()).or_insert((now, None)).0
            };
            if now.duration_since(last) <= self.grace {
                continue;
            }
            let Some(mut node) = st.get(node_rt, "", &name).cloned() else {
                continue;
            };
            if node_conditions::is_ready(&node) {
                node_conditions::set_ready(&mut node, false);
                crate::info!(
                    "Node {name} is NotReady: no heartbeat for {:?}",
                    now.duration_since(last)
                );
                if let Err(e) = st.put(node_rt, node) {
                    crate::error!("updating node {name}: {e}");
                }
            }
        }
        collect_garbage(&mut st);
        crate::schedule::taint_unschedulable(&mut st);
        crate::pods::reconcile(&mut st);
        update_deployments(&mut st);
        crate::quota::update_quotas(&mut st);
        crate::autoscale::update_autoscalers(&mut st);
    }
}

/// The garbage collector's part the simulator needs: a node-password secret whose
/// owning Node is gone (or was re-created with another uid) is deleted.
fn collect_garbage(st: &mut State) {
    let secret_rt = rt("Secret");
    let node_rt = rt("Node");
    let orphans: Vec<String> = st
        .list(secret_rt, Some("kube-system"))
        .iter()
        .filter(|s| {
            s["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r["kind"] == "Node"
                            && st
                                .get(node_rt, "", r["name"].as_str().unwrap_or_default())
                                .is_none_or(|n| n["metadata"]["uid"] != r["uid"])
                    })
                })
        })
        .map(|s| meta_str(s, "name").to_string())
        .collect();
    for name in orphans {
        match st.delete(secret_rt, "kube-system", &name) {
            Ok(_) => crate::info!("Deleted secret kube-system/{name}: its owner Node is gone"),
            Err(e) => crate::error!("deleting secret kube-system/{name}: {e}"),
        }
    }
}

/// The label keys the kubelet lets a node set on itself
/// (k8s.io/kubernetes pkg/kubelet/apis/well_known_labels.go), sorted as it prints them.
const KUBELET_LABELS: [&str; 11] = [
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or("")
}

fn under(ns: &str, domain: &str) -> bool {
    ns == domain || ns.ends_with(&format!(".{domain}"))
}

/// The kubelet's `--node-labels` check (cmd/kubelet/app/options/options.go
/// `ValidateKubeletFlags`): labels in the kubernetes.io or k8s.io namespaces must be
/// on its allowed list, so `node-role.kubernetes.io/*` is refused. The error is the
/// kubelet's, wrapped as cmd/kubelet/app/server.go does.
pub fn validate_kubelet_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    let unknown: Vec<&str> = labels
        .keys()
        .map(String::as_str)
        .filter(|k| {
            let ns = label_namespace(k);
            (under(ns, "kubernetes.io") || under(ns, "k8s.io"))
                && !KUBELET_LABELS.contains(k)
                && !KUBELET_LABEL_NAMESPACES.iter().any(|a| under(ns, a))
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!(
        "failed to validate kubelet flags: unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix ({}) or be in the specifically allowed set ({})",
        unknown.join(" "),
        KUBELET_LABEL_NAMESPACES.join(", "),
        KUBELET_LABELS.join(", ")
    ))
}

pub fn tolerated(taint: &Value, tolerations: &[Value]) -> bool {
    tolerations.iter().any(|t| {
        let key_ok = match t["key"].as_str() {
            None | Some("") => t["operator"] == "Exists",
            Some(k) => k == taint["key"].as_str().unwrap_or(""),
        };
        let value_ok = t["operator"] == "Exists"
            || t["value"] == taint["value"]
            || (t["value"].is_null() && taint["value"].is_null());
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        key_ok && value_ok && effect_ok
    })
}

fn max_unavailable(dep: &Value, replicas: i64) -> i64 {
    let strategy = &dep["spec"]["strategy"];
    if strategy["type"].as_str().unwrap_or("RollingUpdate") != "RollingUpdate" || replicas == 0 {
        return 0;
    }
    let mu = &strategy["rollingUpdate"]["maxUnavailable"];
    if let Some(n) = mu.as_i64() {
        return n.min(replicas);
    }
    let pct = mu
        .as_str()
        .unwrap_or("25%")
        .trim_end_matches('%')
        .parse::<i64>()
        .unwrap_or(25);
    (replicas * pct / 100).min(replicas)
}

fn condition(old: &Value, ty: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    let prev = old["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == ty))
        .cloned();
    match prev {
        Some(p) if p["status"] == status && p["reason"] == reason => p,
        Some(p) if p["status"] == status => {
            let mut c = p.clone();
            c["reason"] = json!(reason);
            c["message"] = json!(message);
            c["lastUpdateTime"] = json!(now);
            c
        }
        _ => json!({"type": ty, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}),
    }
}

fn update_deployments(st: &mut State) {
    let dep_rt = rt("Deployment");
    let deps: Vec<Value> = st.list(dep_rt, None).into_iter().cloned().collect();
    let now = crate::log::k8s_now();
    for dep in deps {
        let replicas = dep["spec"]["replicas"].as_i64().unwrap_or(1);
        let (total, updated, available, rs) = crate::pods::deployment_counts(st, &dep);
        let min_ok = available >= replicas - max_unavailable(&dep, replicas);
        let mut conditions = vec![if min_ok {
            condition(
                &dep,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now,
            )
        } else {
            condition(
                &dep,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now,
            )
        }];
        conditions.push(
            if available == replicas && updated == replicas && total == replicas {
                condition(
                    &dep,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                    &now,
                )
            } else {
                condition(
                    &dep,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs}\" is progressing."),
                    &now,
                )
            },
        );
        let mut status = json!({"observedGeneration": dep["metadata"]["generation"], "replicas": total,
            "updatedReplicas": updated, "conditions": conditions});
        if available > 0 {
            status["readyReplicas"] = json!(available);
            status["availableReplicas"] = json!(available);
        }
        if replicas - available > 0 {
            status["unavailableReplicas"] = json!(replicas - available);
        }
        if dep["status"] != status {
            let mut d = dep.clone();
            d["status"] = status;
            if let Err(e) = st.put(dep_rt, d) {
                crate::error!("updating deployment status: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_refuses_reserved_labels_only() {
        let set = |ks: &[&str]| -> BTreeMap<String, String> {
            ks.iter()
                .map(|k| (k.to_string(), "x".to_string()))
                .collect()
        };
        for ok in [
            "topology.kubernetes.io/zone",
            "node.kubernetes.io/pool",
            "a.node.kubernetes.io/b",
            "kubelet.kubernetes.io/x",
            "pictl.io/pool",
            "plain",
            "kubernetes.io/arch",
        ] {
            assert!(validate_kubelet_labels(&set(&[ok])).is_ok(), "{ok}");
        }
        let err = validate_kubelet_labels(&set(&[
            "node-role.kubernetes.io/worker",
            "app.kubernetes.io/name",
            "example.k8s.io/x",
        ]))
        .expect_err("reserved");
        assert!(
            err.contains("labels specified with --node-labels: [app.kubernetes.io/name example.k8s.io/x node-role.kubernetes.io/worker]"),
            "{err}"
        );
    }

    #[test]
    fn taints_parse_like_kubectl() {
        assert!(
            validate_taints(&["dedicated=gpu:NoSchedule".into(), "k:NoExecute".into()]).is_ok()
        );
        assert!(validate_taints(&["k=v".into()]).is_err());
    }

    #[test]
    fn max_unavailable_defaults_to_a_quarter_rounded_down() {
        let plain = json!({"spec": {"replicas": 3, "template": {"spec": {}}}});
        assert_eq!(max_unavailable(&plain, 3), 0);
        assert_eq!(
            max_unavailable(
                &json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 1}}}}),
                3
            ),
            1
        );
    }
}
