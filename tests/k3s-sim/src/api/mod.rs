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

mod discovery;
mod resp;
mod route;
mod write;

use discovery::{api_group, resource_list, version_info};
pub use resp::*;
pub use route::*;

pub struct Api {
    pub store: store::Store,
    pub server_addr: String,
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
        let request = crate::admission::Request {
            user: user.clone(),
            rt: target.rt,
            subresource: target.sub.clone(),
            namespace: target.namespace.clone().unwrap_or_default(),
            name: target.name.clone().unwrap_or_default(),
            dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        };
        let served = self.authorized(&user, &attrs, req, &query, &target);
        let resp = crate::admission::REQUEST.scope(request, served).await;
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
        let mut content_type = media_type(&header("content-type"));
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
        let body = match protobuf_as_json(&mut content_type, body) {
            Ok(b) => b,
            Err(refused) => return refused,
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
            (Method::GET, Some(name)) => self.get(t, name, &query, wants_table),
            (Method::PATCH, Some(name)) if t.sub.is_none() => {
                self.patch(t, name, &content_type, &body, &query)
            }
            (Method::PATCH, Some(name)) if t.rt.kind == "Node" => {
                self.patch_status(t.rt, name, &content_type, &body, &query)
            }
            (Method::PUT, Some(name)) if t.sub.is_none() => self.update(t, name, &body, &query),
            (Method::POST, None) => self.create(t, &body, &query),
            (Method::POST, Some(name)) if t.sub.as_deref() == Some("eviction") => {
                self.evict(t, name, &body, &query)
            }
            (Method::DELETE, Some(name)) if t.sub.is_none() => self.delete(t, name, &body, &query),
            (m, _) => status_err(
                405,
                "MethodNotAllowed",
                &format!("the server does not allow this method on the requested resource ({m})"),
                Value::Null,
            ),
        }
    }

    fn get(&self, t: &Target, name: &str, query: &HashMap<String, String>, table: bool) -> Resp {
        let st = self.store.lock();
        match st.get(t.rt, t.namespace.as_deref().unwrap_or(""), name) {
            Some(o) if table => json_resp(
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

    /// `POST …/pods/NAME/eviction`.
    fn evict(&self, t: &Target, name: &str, body: &[u8], query: &HashMap<String, String>) -> Resp {
        let eviction = match self.parse_obj(body) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let dry = query.get("dryRun").is_some_and(|d| d == "All");
        let ns = t.namespace.clone().unwrap_or_default();
        crate::eviction::evict(&mut self.store.lock(), &ns, name, &eviction, dry)
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
