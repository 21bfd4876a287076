//! The runner tests' face of the fake API: Nodes (Ready, with a podCIDR
//! each), Pods and a disruption budget for drains answered here, with the
//! fleet's log; every other object (the agents' ServiceAccounts, token
//! Secrets and roles) goes to the one fake API store, `cluster::fake`.
//! Every request is recorded; with a fleet, its calls join the fleet's log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::fake::{Call, Fleet};
use crate::cluster::ApiConnector;
use crate::secret::Secret;
use crate::transport::BoxFuture;

/// An API server that lists every node Ready and records each request;
/// with pods and a budget for drains.
#[derive(Clone, Default)]
pub struct FakeApi {
    pub nodes: Vec<String>,
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Node objects by name, as patched.
    pub objects: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    /// Every other object (the agents' ServiceAccounts, token Secrets and
    /// roles): the one fake API's store.
    pub store: crate::cluster::fake::FakeApi,
    /// Nodes deleted, in order.
    pub deleted: Arc<Mutex<Vec<String>>>,
    /// The `server:` of each kubeconfig a client was made from, in order.
    pub servers: Arc<Mutex<Vec<String>>>,
    /// Nodes report the version their fake K3s started with, and API calls
    /// join the fleet's log.
    pub fleet: Option<Fleet>,
    /// Pods as (namespace, name, node), all selected by budget `web/web`.
    pub pods: Arc<Mutex<Vec<(String, String, String)>>>,
    /// Every eviction is refused (a budget that can never be met).
    pub refuse_evictions: bool,
    /// `ns/name` of Pods no controller owns (the others are a ReplicaSet's).
    pub bare: Arc<Mutex<Vec<String>>>,
    /// `ns/name` of Pods with an emptyDir volume.
    pub empty_dir: Arc<Mutex<Vec<String>>>,
    /// Nodes NotReady (no kubelet) while they run the version given; an
    /// eviction of their Pods leaves them Terminating.
    pub not_ready: Arc<Mutex<BTreeMap<String, String>>>,
    /// `ns/name` of Terminating Pods and their deletionTimestamp.
    pub terminating: Arc<Mutex<BTreeMap<String, String>>>,
    /// How many Node PATCHes still find their Node written by someone else
    /// since it was read (K3s's node controller, racing pictl).
    pub races: Arc<Mutex<usize>>,
}

impl ApiConnector for FakeApi {
    fn client<'a>(
        &'a self,
        kubeconfig: &'a Secret,
    ) -> BoxFuture<'a, Result<kube::Client, crate::cluster::ApiError>> {
        let api = self.clone();
        let server = kubeconfig
            .expose()
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap_or_default()
            .to_string();
        api.servers.lock().expect("servers").push(server);
        Box::pin(async move {
            let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
                let api = api.clone();
                async move {
                    // A round trip takes time: nodes worked on together interleave.
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    let line = format!("{} {}", req.method(), req.uri());
                    api.requests.lock().expect("requests").push(line);
                    let (parts, body) = req.into_parts();
                    let body = body.collect_bytes().await.unwrap_or_default();
                    let query = parts.uri.query().unwrap_or_default().to_string();
                    let (code, answer) = api.answer(&parts.method, parts.uri.path(), &query, &body);
                    let body = serde_json::to_vec(&answer).unwrap_or_default();
                    let mut resp = http::Response::new(kube::client::Body::from(body));
                    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            Ok(kube::Client::new(svc, "default"))
        })
    }
}

/// A write's new resourceVersion.
fn bump(node: &mut serde_json::Value) {
    let rv = node["metadata"]["resourceVersion"].as_str().unwrap_or("0");
    let next = rv.parse::<u64>().unwrap_or(0) + 1;
    node["metadata"]["resourceVersion"] = serde_json::json!(next.to_string());
}

/// RFC 7386 JSON merge patch (`null` removes a key; lists are replaced).
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
        }
    }
}

impl FakeApi {
    /// A Pod as the API has it: a ReplicaSet's unless `bare`, with the
    /// emptyDir and deletionTimestamp the test gave it.
    fn pod_json(&self, ns: &str, name: &str, node: &str) -> serde_json::Value {
        let key = format!("{ns}/{name}");
        let mut pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": []}, "status": {"phase": "Running"}});
        if !self.bare.lock().expect("bare").contains(&key) {
            pod["metadata"]["ownerReferences"] = serde_json::json!([{"apiVersion": "apps/v1",
                "kind": "ReplicaSet", "name": "web", "uid": "rs-web", "controller": true}]);
        }
        if self.empty_dir.lock().expect("empty_dir").contains(&key) {
            pod["spec"]["volumes"] = serde_json::json!([{"name": "scratch", "emptyDir": {}}]);
        }
        if let Some(at) = self.terminating.lock().expect("terminating").get(&key) {
            pod["metadata"]["deletionTimestamp"] = serde_json::json!(at);
            pod["metadata"]["deletionGracePeriodSeconds"] = serde_json::json!(30);
        }
        pod
    }

    /// Whether the node is NotReady now: its kubelet is gone while it runs
    /// the version it was stopped on.
    fn down(&self, name: &str) -> bool {
        let on = self.not_ready.lock().expect("not_ready").get(name).cloned();
        let running = self
            .fleet
            .as_ref()
            .and_then(|f| f.node(name).lock().expect("node").running.clone());
        on.is_some_and(|v| running.is_none_or(|r| r == v))
    }

    /// Every node, Ready, as a Node object (patched ones as patched).
    pub fn node(&self, name: &str) -> serde_json::Value {
        let mut node = {
            let mut objects = self.objects.lock().expect("objects");
            objects
                .entry(name.to_string())
                .or_insert_with(|| {
                    // K3s gives each Node a /24 of the cluster CIDR.
                    let index = self.nodes.iter().position(|n| n == name).unwrap_or(99);
                    serde_json::json!({
                        "apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": name, "resourceVersion": "1"},
                        "spec": {"podCIDR": format!("10.42.{index}.0/24")},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
                    })
                })
                .clone()
        };
        if let Some(fleet) = &self.fleet {
            let running = fleet.node(name).lock().expect("node").running.clone();
            node["status"]["nodeInfo"] = serde_json::json!({"kubeletVersion": running.unwrap_or_default(),
                "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "",
                "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""});
        }
        let ready = if self.down(name) { "Unknown" } else { "True" };
        node["status"]["conditions"] = serde_json::json!([{"type": "Ready", "status": ready}]);
        node
    }

    fn log(&self, what: String) {
        if let Some(fleet) = &self.fleet {
            fleet
                .log
                .lock()
                .expect("log")
                .push(("api".into(), Call::Api(what)));
        }
    }

    fn answer(
        &self,
        method: &http::Method,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        if path == "/api/v1/pods" {
            let node = query.split("spec.nodeName%3D").nth(1).unwrap_or_default();
            let node = node.split('&').next().unwrap_or_default();
            let items: Vec<serde_json::Value> = self
                .pods
                .lock()
                .expect("pods")
                .iter()
                .filter(|p| p.2 == node)
                .map(|(ns, n, node)| self.pod_json(ns, n, node))
                .collect();
            return (
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
            );
        }
        if path.starts_with("/apis/policy/v1/namespaces/") {
            let pdb = serde_json::json!({"metadata": {"name": "web", "namespace": "web"},
                "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}},
                "status": {"currentHealthy": 3, "desiredHealthy": 3, "disruptionsAllowed": 0, "expectedPods": 3}});
            return (
                200,
                serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudgetList", "metadata": {}, "items": [pdb]}),
            );
        }
        if let Some(rest) = path.strip_prefix("/api/v1/namespaces/")
            && rest.split('/').nth(1) == Some("pods")
        {
            return self.pod_call(method, rest);
        }
        if !path.starts_with("/api/v1/nodes") {
            return self.other(method, path, query, body);
        }
        let Some(name) = path.strip_prefix("/api/v1/nodes/") else {
            // A deleted Node is gone from the list (its K3s is not running).
            let deleted = self.deleted.lock().expect("deleted").clone();
            let items: Vec<serde_json::Value> = (self.nodes.iter())
                .filter(|n| !deleted.contains(n))
                .map(|n| self.node(n))
                .collect();
            return (
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items}),
            );
        };
        if method == http::Method::DELETE {
            self.objects.lock().expect("objects").remove(name);
            self.deleted.lock().expect("deleted").push(name.to_string());
            return (
                200,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
        }
        let mut node = self.node(name);
        if method == http::Method::PATCH {
            let patch: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            if let Some(refused) = self.precondition(name, &mut node, &patch) {
                return refused;
            }
            match patch["spec"].get("unschedulable") {
                Some(serde_json::Value::Bool(true)) => self.log(format!("cordon {name}")),
                Some(serde_json::Value::Null) => self.log(format!("uncordon {name}")),
                _ => self.log(format!("PATCH {path}")),
            }
            merge(&mut node, &patch);
            Self::remove_member(&mut node);
            bump(&mut node);
            self.objects
                .lock()
                .expect("objects")
                .insert(name.to_string(), node.clone());
        }
        (200, node)
    }

    /// K3s's member removal controller (pkg/etcd/member_controller.go
    /// `sync`): an etcd Node asking to be removed is marked removed.
    fn remove_member(node: &mut serde_json::Value) {
        use crate::cluster::etcd_member::{REMOVE, REMOVED_NODE_NAME};
        let a = &node["metadata"]["annotations"];
        let etcd = node["metadata"]["labels"]
            .get("node-role.kubernetes.io/etcd")
            .is_some();
        if etcd && a[REMOVE] == "true" && a.get(REMOVED_NODE_NAME).is_none() {
            let member = format!(
                "{}-0a1b2c3d",
                node["metadata"]["name"].as_str().unwrap_or("")
            );
            node["metadata"]["annotations"][REMOVED_NODE_NAME] = serde_json::json!(member);
        }
    }

    /// An etcd server's Node (K3s labels those `node-role.kubernetes.io/etcd`).
    pub fn etcd_node(&self, name: &str) {
        let mut node = self.node(name);
        node["metadata"]["labels"]["node-role.kubernetes.io/etcd"] = serde_json::json!("true");
        self.objects
            .lock()
            .expect("objects")
            .insert(name.to_string(), node);
    }

    /// A patch carrying a resourceVersion other than the Node's is refused
    /// (409), as the API server refuses it; a pending race writes the Node
    /// first.
    fn precondition(
        &self,
        name: &str,
        node: &mut serde_json::Value,
        patch: &serde_json::Value,
    ) -> Option<(u16, serde_json::Value)> {
        let mut races = self.races.lock().expect("races");
        if *races > 0 {
            *races -= 1;
            bump(node);
            self.objects
                .lock()
                .expect("objects")
                .insert(name.to_string(), node.clone());
        }
        let sent = patch["metadata"]["resourceVersion"].as_str()?;
        (sent != node["metadata"]["resourceVersion"]).then(|| {
            (
                409,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "Conflict", "code": 409, "message": format!(
                    "Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again")}),
            )
        })
    }

    /// Any other object: the store's (applied, read, listed, deleted).
    fn other(
        &self,
        method: &http::Method,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let uri = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let (status, value) = self.store.respond(method, &uri, body);
        (status.as_u16(), value)
    }

    /// `NS/pods/NAME` and `NS/pods/NAME/eviction`.
    fn pod_call(&self, method: &http::Method, rest: &str) -> (u16, serde_json::Value) {
        let parts: Vec<&str> = rest.split('/').collect();
        let (ns, name) = (
            parts.first().copied().unwrap_or(""),
            parts.get(2).copied().unwrap_or(""),
        );
        let mut pods = self.pods.lock().expect("pods");
        let Some(at) = pods.iter().position(|p| p.0 == ns && p.1 == name) else {
            return (
                404,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": format!("pods \"{name}\" not found")}),
            );
        };
        if method != http::Method::POST {
            let (ns, n, node) = &pods[at];
            return (200, self.pod_json(ns, n, node));
        }
        if self.refuse_evictions {
            drop(pods);
            self.log(format!("refused {ns}/{name}"));
            return (
                429,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "TooManyRequests", "code": 429,
                "message": "Cannot evict pod as it would violate the pod's disruption budget."}),
            );
        }
        // No kubelet on a NotReady node confirms the deletion: Terminating.
        if self.down(&pods[at].2) {
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            let at = k8s_openapi::jiff::Timestamp::from_second(now + 30).unwrap_or_default();
            let mut terminating = self.terminating.lock().expect("terminating");
            terminating
                .entry(format!("{ns}/{name}"))
                .or_insert(at.to_string());
        } else {
            pods.remove(at);
        }
        drop(pods);
        self.log(format!("evict {ns}/{name}"));
        (
            201,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}),
        )
    }
}
