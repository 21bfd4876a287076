//! The one fake Kubernetes API of the tests: kube's own client over
//! `tower_test::mock`, answered from an in-memory store of objects by
//! path, with discovery and every request recorded so that a test can say
//! what was, and was not, sent. The workload's tests talk to it directly;
//! the runner's fake (`runner/fake_api.rs`) answers Nodes, Pods and
//! evictions itself and hands every other object to this store.
//! Server-side apply here replaces the object (no merging, no defaults):
//! enough for pictl, which always applies whole objects; a token Secret is
//! filled at once, as K3s's token controller fills it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// One request, as the server saw it (query decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
}

impl Call {
    pub fn is_dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }

    /// `PATCH /api/v1/…` (writes only: what a test compares).
    pub fn write(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// `(group, version, plural, kind, namespaced)` served by the fake.
#[rustfmt::skip]
const KINDS: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "namespaces", "Namespace", false),
    ("", "v1", "secrets", "Secret", true),
    ("", "v1", "serviceaccounts", "ServiceAccount", true),
    ("", "v1", "services", "Service", true),
    ("", "v1", "configmaps", "ConfigMap", true),
    ("", "v1", "limitranges", "LimitRange", true),
    ("", "v1", "resourcequotas", "ResourceQuota", true),
    ("apps", "v1", "deployments", "Deployment", true),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", true),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", false),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", false),
];

#[derive(Default)]
struct Store {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    version: u64,
}

/// The fake's state; the client returned with it talks to it.
#[derive(Clone, Default)]
pub struct FakeApi {
    store: Arc<Mutex<Store>>,
}

impl FakeApi {
    /// A client and the fake behind it (needs a tokio runtime).
    pub fn start() -> (kube::Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                send.send_response(server.answer(req).await);
            }
        });
        (kube::Client::new(service, "default"), fake)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every request since the last call, oldest first.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.store().calls)
    }

    /// Changes a stored object in place (drift made by someone else).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut store = self.store();
        let obj = store
            .objects
            .get_mut(path)
            .expect("no such object in the fake");
        f(obj);
    }

    /// Stores an object as if someone else had made it.
    pub fn put(&self, path: &str, obj: Value) {
        self.store().objects.insert(path.to_string(), obj);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.store().objects.get(path).cloned()
    }

    /// Removes an object as if someone else had deleted it.
    pub fn remove(&self, path: &str) -> Option<Value> {
        self.store().objects.remove(path)
    }

    /// One request, recorded and answered (`uri`: path and query).
    pub fn respond(&self, method: &Method, uri: &str, body: &[u8]) -> (StatusCode, Value) {
        let url = reqwest::Url::parse(&format!("http://fake{uri}")).expect("uri");
        let call = Call {
            method: method.clone(),
            path: url.path().to_string(),
            query: url.query_pairs().into_owned().collect(),
        };
        self.store().calls.push(call.clone());
        match (call.method.clone(), discovery(&call.path)) {
            (Method::GET, Some(doc)) => (StatusCode::OK, doc),
            (Method::GET, None) => self.read(&call),
            (Method::PATCH, _) => self.apply(&call, body),
            (Method::DELETE, _) => self.delete(&call.path),
            _ => not_found(),
        }
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        let (status, value) = self.respond(&parts.method, &parts.uri.to_string(), &body);
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(value.to_string().into_bytes()))
            .expect("response")
    }

    fn read(&self, call: &Call) -> (StatusCode, Value) {
        let store = self.store();
        if let Some(obj) = store.objects.get(&call.path) {
            return (StatusCode::OK, obj.clone());
        }
        let plural = call.path.rsplit('/').next().unwrap_or_default();
        if !KINDS.iter().any(|k| k.2 == plural) {
            return not_found();
        }
        let selector = call.query.get("labelSelector").cloned().unwrap_or_default();
        let items: Vec<Value> = (store.objects.iter())
            .filter(|(path, _)| {
                path.rsplit_once('/')
                    .is_some_and(|(dir, _)| dir == call.path)
            })
            .map(|(_, o)| o.clone())
            .filter(|o| matches(o, &selector))
            .collect();
        let list = json!({ "apiVersion": "v1", "kind": "List", "metadata": {}, "items": items });
        (StatusCode::OK, list)
    }

    fn apply(&self, call: &Call, body: &[u8]) -> (StatusCode, Value) {
        let mut obj: Value = serde_json::from_slice(body).expect("an applied object is JSON");
        let mut store = self.store();
        store.version += 1;
        let existed = store.objects.contains_key(&call.path);
        obj["metadata"]["resourceVersion"] = json!(store.version.to_string());
        if obj["type"] == "kubernetes.io/service-account-token" {
            use base64::Engine;
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            obj["data"] = json!({"token": b64("fake-token"), "ca.crt": b64("CA")});
        }
        if obj["kind"] == "Deployment" {
            // Rolled out at once: the fake has no controllers.
            let n = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(1);
            obj["status"] = json!({ "observedGeneration": 1, "replicas": n,
                "updatedReplicas": n, "availableReplicas": n });
        }
        if !call.is_dry_run() {
            store.objects.insert(call.path.clone(), obj.clone());
        }
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        (status, obj)
    }

    fn delete(&self, path: &str) -> (StatusCode, Value) {
        match self.store().objects.remove(path) {
            Some(obj) => (StatusCode::OK, obj),
            None => not_found(),
        }
    }
}

fn not_found() -> (StatusCode, Value) {
    let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "not found", "reason": "NotFound", "code": 404 });
    (StatusCode::NOT_FOUND, status)
}

/// `key=value` selectors, as pictl sends them.
fn matches(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|s| {
        let (k, v) = s.split_once('=').unwrap_or((s, ""));
        obj["metadata"]["labels"][k] == v
    })
}

/// The discovery documents for `path`, if it is one.
fn discovery(path: &str) -> Option<Value> {
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = (KINDS.iter())
            .filter(|k| k.0 == group && k.1 == version)
            .map(|k| {
                json!({ "name": k.2, "singularName": "", "namespaced": k.4, "kind": k.3,
                "verbs": ["get", "list", "patch", "delete"] })
            })
            .collect();
        let slash = if group.is_empty() { "" } else { "/" };
        let gv = format!("{group}{slash}{version}");
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list })
    };
    match path.trim_start_matches('/').split('/').collect::<Vec<_>>()[..] {
        ["api"] => Some(json!({ "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [] })),
        ["apis"] => {
            let mut groups: Vec<Value> = (KINDS.iter())
                .filter(|k| !k.0.is_empty())
                .map(|k| {
                    let v = json!({ "groupVersion": format!("{}/{}", k.0, k.1), "version": k.1 });
                    json!({ "name": k.0, "versions": [v.clone()], "preferredVersion": v })
                })
                .collect();
            groups.dedup();
            Some(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
        }
        ["api", v] => Some(resources("", v)),
        ["apis", g, v] => Some(resources(g, v)),
        _ => None,
    }
}
