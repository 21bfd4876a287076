//! The Kubernetes API subset served on :6443: version, legacy discovery, and for
//! the kinds in `store::RESOURCES` get / list (label and field selectors, Table
//! output for kubectl) / watch / server-side apply / merge patch / create / update /
//! delete, with apiserver-shaped Status errors. Requests without a client
//! certificate from the cluster CA get 401, as from the real apiserver.

// Handlers return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use crate::auth::User;
use crate::http::Body;
use crate::store::{self, EventType, ResourceType, State, meta_str};
use crate::{apply, rbac, select, tables};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub type Resp = Response<Body>;

pub fn json_resp(code: u16, v: &Value) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(Body::full(body))
        .unwrap_or_else(|_| Response::new(Body::full("internal error")))
}

pub fn text_resp(code: u16, t: &str) -> Resp {
    Response::builder()
        .status(code)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Body::full(t.to_string()))
        .unwrap_or_else(|_| Response::new(Body::full("internal error")))
}

pub fn status_err(code: u16, reason: &str, message: &str, details: Value) -> Resp {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    if !details.is_null() {
        s["details"] = details;
    }
    json_resp(code, &s)
}

fn not_found_path() -> Resp {
    status_err(
        404,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Resp {
    status_err(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", rt.qualified()),
        json!({"name": name, "group": rt.group, "kind": rt.plural}),
    )
}

fn bad_request(msg: &str) -> Resp {
    status_err(400, "BadRequest", msg, Value::Null)
}

pub struct Invalid {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

fn invalid(rt: &ResourceType, name: &str, errs: &[Invalid]) -> Resp {
    let kind = if rt.group.is_empty() {
        rt.kind.to_string()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    };
    let summary: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let msg = if summary.len() == 1 {
        format!("{kind} \"{name}\" is invalid: {}", summary[0])
    } else {
        format!("{kind} \"{name}\" is invalid: [{}]", summary.join(", "))
    };
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
        .collect();
    status_err(
        422,
        "Invalid",
        &msg,
        json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}),
    )
}

pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (pct_decode(k), pct_decode(v)),
            None => (pct_decode(kv), String::new()),
        })
        .collect()
}

pub struct Api {
    pub store: store::Store,
    pub server_addr: String,
}

// ---------- discovery ----------

fn resource_list(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = store::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| {
            let mut v = vec![json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create","delete","deletecollection","get","list","patch","update","watch"],
                "shortNames": r.short_names,
                "storageVersionHash": "",
            })];
            if r.short_names.is_empty()
                && let Some(m) = v[0].as_object_mut() {
                    m.remove("shortNames");
                }
            if r.group == "apps" || r.kind == "Pod" {
                v[0]["categories"] = json!(["all"]);
            }
            if r.kind == "Pod" {
                // As the apiserver lists it: kubectl drain looks for it here.
                v.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                    "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
            }
            if r.has_status {
                v.push(json!({"name": format!("{}/status", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get","patch","update"]}));
            }
            v
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn api_group(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

fn version_info() -> Value {
    let kv = crate::version::kube_version().trim_start_matches('v');
    let mut parts = kv.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("32");
    json!({
        "major": major, "minor": minor,
        "gitVersion": crate::version::version(),
        "gitCommit": format!("{}{}", crate::version::commit(), "0".repeat(32)),
        "gitTreeState": "clean",
        "buildDate": "2025-05-27T00:00:00Z",
        "goVersion": crate::version::go_version(),
        "compiler": "gc",
        "platform": format!("linux/{}", crate::nodes::arch()),
    })
}

// ---------- request routing ----------

/// A Content-Type without its parameters.
fn media_type(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_string()
}

/// Only JSON/YAML bodies are decoded; client-go answers a 415 by retrying in JSON.
fn refuse_binary(content_type: &str) -> Option<Resp> {
    (content_type.contains("protobuf") || content_type.contains("cbor")).then(|| {
        status_err(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"
            ),
            Value::Null,
        )
    })
}

/// The authorizer's verb for a request (apiserver's RequestInfoFactory).
fn verb_of(m: &Method, t: &Target, q: &HashMap<String, String>) -> &'static str {
    let watch = matches!(q.get("watch").map(String::as_str), Some("true") | Some("1"));
    match (m.as_str(), t.name.is_some()) {
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("GET" | "HEAD", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

struct Target {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn route(segs: &[&str]) -> Option<Result<Target, Resp>> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return None,
    };
    let find = |plural: &str| store::find(group, version, plural);
    let t = match rest {
        ["namespaces", ns, plural, more @ ..]
            if find(plural).is_some_and(|r| r.namespaced) && more.len() <= 2 =>
        {
            let rt = find(plural)?;
            Target {
                rt,
                namespace: Some(ns.to_string()),
                name: more.first().map(|s| s.to_string()),
                sub: more.get(1).map(|s| s.to_string()),
            }
        }
        [plural, more @ ..] if more.len() <= 2 => {
            let Some(rt) = find(plural) else {
                return Some(Err(not_found_path()));
            };
            if rt.namespaced && !more.is_empty() {
                return Some(Err(not_found_path()));
            }
            Target {
                rt,
                namespace: None,
                name: more.first().map(|s| s.to_string()),
                sub: more.get(1).map(|s| s.to_string()),
            }
        }
        _ => return Some(Err(not_found_path())),
    };
    if let Some(sub) = &t.sub
        && !(sub == "status" && t.rt.has_status)
        && !(sub == "eviction" && t.rt.kind == "Pod")
    {
        return Some(Err(not_found_path()));
    }
    Some(Ok(t))
}

impl Api {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, user: User) -> Resp {
        let path = req.uri().path().to_string();
        let query = parse_query(req.uri().query());
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        crate::debug!("{} {}", req.method(), req.uri());
        match segs.as_slice() {
            ["version"] => return json_resp(200, &version_info()),
            ["healthz"] | ["livez"] | ["readyz"] => return text_resp(200, "ok"),
            ["api"] => {
                return json_resp(
                    200,
                    &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_addr}]}),
                );
            }
            ["api", "v1"] => return json_resp(200, &resource_list("", "v1")),
            ["openapi", "v3"] => return json_resp(200, &crate::openapi::root()),
            ["openapi", "v3", rest @ ..] => {
                return match crate::openapi::doc(&rest.join("/")) {
                    Some(d) => json_resp(200, &d),
                    None => not_found_path(),
                };
            }
            ["apis"] => {
                let groups: Vec<Value> = store::groups()
                    .iter()
                    .map(|(g, v)| api_group(g, v))
                    .collect();
                return json_resp(
                    200,
                    &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                );
            }
            ["apis", g] => {
                return match store::groups().iter().find(|(gg, _)| gg == g) {
                    Some((g, v)) => {
                        let mut grp = api_group(g, v);
                        grp["kind"] = json!("APIGroup");
                        grp["apiVersion"] = json!("v1");
                        json_resp(200, &grp)
                    }
                    None => not_found_path(),
                };
            }
            ["apis", g, v] => {
                return if store::groups().iter().any(|(gg, vv)| gg == g && vv == v) {
                    json_resp(200, &resource_list(g, v))
                } else {
                    not_found_path()
                };
            }
            _ => {}
        }
        let target = match route(&segs) {
            None => return not_found_path(),
            Some(Err(r)) => return r,
            Some(Ok(t)) => t,
        };
        let method = req.method().clone();
        let verb = verb_of(&method, &target, &query);
        let attrs = rbac::Attributes {
            verb,
            rt: target.rt,
            subresource: target.sub.as_deref(),
            namespace: target.namespace.as_deref().unwrap_or(""),
            name: target.name.as_deref().unwrap_or(""),
        };
        let resp = self.authorized(&user, &attrs, req, &query, &target).await;
        crate::counter::count(&attrs, resp.status().as_u16());
        resp
    }

    /// RBAC for ServiceAccounts (the admin certificate is system:masters).
    async fn authorized(
        &self,
        user: &User,
        attrs: &rbac::Attributes<'_>,
        req: Request<Incoming>,
        query: &HashMap<String, String>,
        target: &Target,
    ) -> Resp {
        if *user != User::Admin && !rbac::allows(&self.store.lock(), user, attrs) {
            return rbac::forbidden(user, attrs);
        }
        self.serve_resource(req, query, target).await
    }

    async fn serve_resource(
        &self,
        req: Request<Incoming>,
        query: &HashMap<String, String>,
        target: &Target,
    ) -> Resp {
        let query = query.clone();
        let method = req.method().clone();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let accept = header("accept");
        let content_type = media_type(&header("content-type"));
        if let Some(refused) = refuse_binary(&content_type) {
            return refused;
        }
        let body = if method == Method::GET || method == Method::HEAD {
            Vec::new()
        } else {
            match crate::http::read_body(req.into_body(), 3 * 1024 * 1024).await {
                Ok(b) => b,
                Err(e) => {
                    return status_err(413, "RequestEntityTooLarge", &e.to_string(), Value::Null);
                }
            }
        };
        let wants_table = accept.contains("as=Table");
        let t = &target;
        match (method, &t.name) {
            (Method::GET, None) => {
                if matches!(
                    query.get("watch").map(String::as_str),
                    Some("true") | Some("1")
                ) {
                    return crate::watch::serve(
                        self.store.clone(),
                        t.rt,
                        t.namespace.clone(),
                        &query,
                    );
                }
                self.list(t, &query, wants_table)
            }
            (Method::GET, Some(name)) => {
                let st = self.store.lock();
                match st.get(t.rt, t.namespace.as_deref().unwrap_or(""), name) {
                    Some(o) if wants_table => json_resp(
                        200,
                        &tables::table(
                            t.rt,
                            &[o],
                            st.rv,
                            query.get("includeObject").map(String::as_str),
                        ),
                    ),
                    Some(o) => json_resp(200, o),
                    None => not_found(t.rt, name),
                }
            }
            (Method::PATCH, Some(name)) if t.sub.is_none() => {
                self.patch(t, name, &content_type, &body, &query)
            }
            (Method::PATCH, Some(name)) if t.rt.kind == "Node" => {
                self.patch_status(t.rt, name, &content_type, &body, &query)
            }
            (Method::PUT, Some(name)) if t.sub.is_none() => self.update(t, name, &body, &query),
            (Method::POST, None) => self.create(t, &body, &query),
            (Method::POST, Some(name)) if t.sub.as_deref() == Some("eviction") => {
                let eviction = match self.parse_obj(&body) {
                    Ok(o) => o,
                    Err(r) => return r,
                };
                let dry = query.get("dryRun").is_some_and(|d| d == "All");
                let ns = t.namespace.clone().unwrap_or_default();
                crate::eviction::evict(&mut self.store.lock(), &ns, name, &eviction, dry)
            }
            (Method::DELETE, Some(name)) if t.sub.is_none() => self.delete(t, name),
            (m, _) => status_err(
                405,
                "MethodNotAllowed",
                &format!("the server does not allow this method on the requested resource ({m})"),
                Value::Null,
            ),
        }
    }

    fn list(&self, t: &Target, query: &HashMap<String, String>, table: bool) -> Resp {
        let labels = match query
            .get("labelSelector")
            .map(|s| select::parse_labels(s))
            .transpose()
        {
            Ok(l) => l.unwrap_or_default(),
            Err(e) => return bad_request(&e),
        };
        let fields = match query
            .get("fieldSelector")
            .map(|s| select::parse_fields(t.rt, s))
            .transpose()
        {
            Ok(f) => f.unwrap_or_default(),
            Err(e) => return bad_request(&e),
        };
        let st = self.store.lock();
        let items: Vec<&Value> = st
            .list(t.rt, t.namespace.as_deref())
            .into_iter()
            .filter(|o| select::labels_match(&labels, o) && select::fields_match(&fields, o))
            .collect();
        if table {
            return json_resp(
                200,
                &tables::table(
                    t.rt,
                    &items,
                    st.rv,
                    query.get("includeObject").map(String::as_str),
                ),
            );
        }
        json_resp(
            200,
            &json!({
                "kind": format!("{}List", t.rt.kind),
                "apiVersion": t.rt.api_version(),
                "metadata": {"resourceVersion": st.rv.to_string()},
                "items": items,
            }),
        )
    }

    pub(crate) fn parse_obj(&self, body: &[u8]) -> Result<Value, Resp> {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => serde_yaml_ng::from_slice(body)
                .map_err(|e| bad_request(&format!("error decoding YAML: {e}")))?,
        };
        if !v.is_object() {
            return Err(bad_request("the body of the request must be an object"));
        }
        Ok(v)
    }

    /// Checks what the URL and the body say agree, like the apiserver's decoding.
    fn check_identity(
        &self,
        t: &Target,
        obj: &mut Value,
        url_name: Option<&str>,
    ) -> Result<(String, String), Resp> {
        let av = obj["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = obj["kind"].as_str().unwrap_or("").to_string();
        if av.is_empty() || kind.is_empty() {
            return Err(bad_request(
                "Object 'Kind' is missing or 'apiVersion' is missing in the request body",
            ));
        }
        if av != t.rt.api_version() || kind != t.rt.kind {
            return Err(bad_request(&format!(
                "the API version in the data ({av}) does not match the expected API version ({}) or the kind ({kind}) does not match {}",
                t.rt.api_version(),
                t.rt.kind
            )));
        }
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let body_name = meta_str(obj, "name").to_string();
        let name = match url_name {
            Some(u) if !body_name.is_empty() && body_name != u => {
                return Err(bad_request(&format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({u})"
                )));
            }
            Some(u) => u.to_string(),
            None => body_name,
        };
        if name.is_empty() {
            return Err(invalid(
                t.rt,
                "",
                &[Invalid {
                    field: "metadata.name".into(),
                    reason: "FieldValueRequired",
                    message: "Required value: name or generateName is required".into(),
                }],
            ));
        }
        obj["metadata"]["name"] = json!(name);
        let ns = if t.rt.namespaced {
            let url_ns = t.namespace.clone().unwrap_or_default();
            let body_ns = meta_str(obj, "namespace").to_string();
            if !body_ns.is_empty() && body_ns != url_ns {
                return Err(bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = json!(url_ns);
            url_ns
        } else {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            String::new()
        };
        Ok((ns, name))
    }

    fn patch(
        &self,
        t: &Target,
        name: &str,
        ct: &str,
        body: &[u8],
        q: &HashMap<String, String>,
    ) -> Resp {
        let dry = q.get("dryRun").is_some_and(|d| d == "All");
        match ct {
            "application/apply-patch+yaml" => {
                let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
                    return status_err(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                        json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]}),
                    );
                };
                let force = q.get("force").is_some_and(|f| f == "true");
                let mut obj = match self.parse_obj(body) {
                    Ok(o) => o,
                    Err(r) => return r,
                };
                let (ns, name) = match self.check_identity(t, &mut obj, Some(name)) {
                    Ok(x) => x,
                    Err(r) => return r,
                };
                if let Err(r) = crate::validate::unknown_fields(t.rt, &obj) {
                    return bad_request(&format!(
                        "failed to create typed patch object ({}/{name}; {}, Kind={}): {r}",
                        if ns.is_empty() { "" } else { &ns },
                        t.rt.api_version(),
                        t.rt.kind
                    ));
                }
                let mut st = self.store.lock();
                if let Err(r) = check_namespace(&st, t.rt, &ns) {
                    return r;
                }
                let existing = st.get(t.rt, &ns, &name).cloned();
                let now = crate::log::k8s_now();
                let mut applied = match apply::apply(existing.as_ref(), &obj, manager, force, &now)
                {
                    Ok(o) => o,
                    Err(conflicts) => return conflict_resp(t.rt, &name, &conflicts),
                };
                applied["metadata"]["name"] = json!(name);
                if t.rt.namespaced {
                    applied["metadata"]["namespace"] = json!(ns);
                }
                self.commit(&mut st, t.rt, existing, applied, dry)
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let patch = match self.parse_obj(body) {
                    Ok(o) => o,
                    Err(r) => return r,
                };
                let ns = t.namespace.clone().unwrap_or_default();
                let mut st = self.store.lock();
                let Some(existing) = st.get(t.rt, &ns, name).cloned() else {
                    return not_found(t.rt, name);
                };
                let mut obj = existing.clone();
                if ct == "application/strategic-merge-patch+json" {
                    apply::strategic_merge(&mut obj, &patch);
                } else {
                    apply::merge_patch(&mut obj, &patch);
                }
                if let Err(r) = self.check_identity(t, &mut obj, Some(name)) {
                    return r;
                }
                let manager = q
                    .get("fieldManager")
                    .cloned()
                    .unwrap_or_else(|| "kubectl-patch".into());
                apply::record_update(
                    Some(&existing),
                    &mut obj,
                    &manager,
                    &t.rt.api_version(),
                    &crate::log::k8s_now(),
                );
                self.commit(&mut st, t.rt, Some(existing), obj, dry)
            }
            other => status_err(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?}; json-patch is not supported by k3s-sim)"
                ),
                Value::Null,
            ),
        }
    }

    fn create(&self, t: &Target, body: &[u8], q: &HashMap<String, String>) -> Resp {
        let mut obj = match self.parse_obj(body) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let (ns, name) = match self.check_identity(t, &mut obj, None) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut st = self.store.lock();
        if let Err(r) = check_namespace(&st, t.rt, &ns) {
            return r;
        }
        if st.get(t.rt, &ns, &name).is_some() {
            return status_err(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", t.rt.qualified()),
                json!({"name": name, "group": t.rt.group, "kind": t.rt.plural}),
            );
        }
        let manager = q
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| "kubectl-create".into());
        apply::record_update(
            None,
            &mut obj,
            &manager,
            &t.rt.api_version(),
            &crate::log::k8s_now(),
        );
        self.commit(
            &mut st,
            t.rt,
            None,
            obj,
            q.get("dryRun").is_some_and(|d| d == "All"),
        )
    }

    fn update(&self, t: &Target, name: &str, body: &[u8], q: &HashMap<String, String>) -> Resp {
        let mut obj = match self.parse_obj(body) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let (ns, name) = match self.check_identity(t, &mut obj, Some(name)) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut st = self.store.lock();
        let Some(existing) = st.get(t.rt, &ns, &name).cloned() else {
            return not_found(t.rt, &name);
        };
        let sent_rv = meta_str(&obj, "resourceVersion");
        if !sent_rv.is_empty() && sent_rv != meta_str(&existing, "resourceVersion") {
            return status_err(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    t.rt.qualified()
                ),
                json!({"name": name, "group": t.rt.group, "kind": t.rt.plural}),
            );
        }
        let manager = q
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| "kubectl-edit".into());
        apply::record_update(
            Some(&existing),
            &mut obj,
            &manager,
            &t.rt.api_version(),
            &crate::log::k8s_now(),
        );
        self.commit(
            &mut st,
            t.rt,
            Some(existing),
            obj,
            q.get("dryRun").is_some_and(|d| d == "All"),
        )
    }

    /// Fills system metadata and defaults, validates, and stores if changed.
    /// [`Api::commit`] for the status subresource: `status` is what is stored.
    pub(crate) fn commit_with_status(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        existing: Value,
        obj: Value,
        status: Value,
        dry: bool,
    ) -> Resp {
        self.commit_inner(st, rt, Some(existing), obj, Some(status), dry)
    }

    fn commit(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        existing: Option<Value>,
        obj: Value,
        dry: bool,
    ) -> Resp {
        self.commit_inner(st, rt, existing, obj, None, dry)
    }

    fn commit_inner(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        existing: Option<Value>,
        mut obj: Value,
        status: Option<Value>,
        dry: bool,
    ) -> Resp {
        let name = meta_str(&obj, "name").to_string();
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        crate::validate::finish_metadata(rt, existing.as_ref(), &mut obj);
        if let Some(status) = status {
            obj["status"] = status;
        }
        crate::validate::defaults(rt, st, existing.as_ref(), &mut obj);
        let errs = crate::validate::validate(rt, existing.as_ref(), &obj);
        if !errs.is_empty() {
            return invalid(rt, &name, &errs);
        }
        if dry {
            return json_resp(if existing.is_some() { 200 } else { 201 }, &obj);
        }
        match st.put(rt, obj) {
            Ok((stored, changed)) => {
                if changed && existing.is_none() && rt.kind == "Namespace" {
                    crate::validate::namespace_created(st, &name);
                }
                json_resp(if existing.is_some() { 200 } else { 201 }, &stored)
            }
            Err(e) => status_err(
                500,
                "InternalError",
                &format!("storing object: {e}"),
                Value::Null,
            ),
        }
    }

    fn delete(&self, t: &Target, name: &str) -> Resp {
        let ns = t.namespace.clone().unwrap_or_default();
        let mut st = self.store.lock();
        match st.delete(t.rt, &ns, name) {
            Ok(Some(gone)) => {
                if t.rt.kind == "Namespace" {
                    // Namespace deletion cascades to everything in it (immediately here;
                    // the real apiserver goes through a Terminating phase first).
                    for rt in store::RESOURCES.iter().filter(|r| r.namespaced) {
                        let names: Vec<String> = st
                            .list(rt, Some(name))
                            .iter()
                            .map(|o| meta_str(o, "name").to_string())
                            .collect();
                        for n in names {
                            if let Err(e) = st.delete(rt, name, &n) {
                                crate::error!("deleting {}/{n}: {e}", rt.plural);
                            }
                        }
                    }
                }
                json_resp(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": t.rt.group, "kind": t.rt.plural,
                        "uid": gone["metadata"]["uid"]}}),
                )
            }
            Ok(None) => not_found(t.rt, name),
            Err(e) => status_err(
                500,
                "InternalError",
                &format!("deleting object: {e}"),
                Value::Null,
            ),
        }
    }
}

fn ns_rt() -> &'static ResourceType {
    &store::RESOURCES[0]
}

fn check_namespace(st: &State, rt: &ResourceType, ns: &str) -> Result<(), Resp> {
    if rt.namespaced && st.get(ns_rt(), "", ns).is_none() {
        return Err(not_found(ns_rt(), ns));
    }
    Ok(())
}

fn conflict_resp(rt: &ResourceType, name: &str, conflicts: &[apply::Conflict]) -> Resp {
    let n = conflicts.len();
    let msg = if n == 1 {
        let c = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            c.manager, c.api_version, c.field
        )
    } else {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|c| {
                format!(
                    "conflict with \"{}\" using {}: {}",
                    c.manager, c.api_version, c.field
                )
            })
            .collect();
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict",
            "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version), "field": c.field}))
        .collect();
    status_err(
        409,
        "Conflict",
        &msg,
        json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
    )
}

/// Used by watch to turn a stored event into what a watcher sees.
pub fn event_json(kind: EventType, obj: &Value) -> Value {
    json!({"type": kind.as_str(), "object": obj})
}

pub fn unauthorized() -> Resp {
    status_err(401, "Unauthorized", "Unauthorized", Value::Null)
}
