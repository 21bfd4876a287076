//! The writing verbs: decode and check an object's identity, then create,
//! update, patch (server-side apply, merge and JSON patch) or delete it,
//! with metadata, defaults, validation and admission before storage.

use super::*;

impl Api {
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
    pub(super) fn check_identity(
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

    pub(super) fn patch(
        &self,
        t: &Target,
        name: &str,
        ct: &str,
        body: &[u8],
        q: &HashMap<String, String>,
    ) -> Resp {
        let dry = q.get("dryRun").is_some_and(|d| d == "All");
        match ct {
            "application/apply-patch+yaml" => self.apply_patch(t, name, body, q, dry),
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                self.merge_patch(t, name, ct, body, q, dry)
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

    /// Server-side apply: the object merged into what is stored under
    /// `fieldManager`'s ownership, conflicts refused unless forced.
    fn apply_patch(
        &self,
        t: &Target,
        name: &str,
        body: &[u8],
        q: &HashMap<String, String>,
        dry: bool,
    ) -> Resp {
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
        let mut applied = match apply::apply(existing.as_ref(), &obj, manager, force, &now) {
            Ok(o) => o,
            Err(conflicts) => return conflict_resp(t.rt, &name, &conflicts),
        };
        applied["metadata"]["name"] = json!(name);
        if t.rt.namespaced {
            applied["metadata"]["namespace"] = json!(ns);
        }
        self.commit(&mut st, t.rt, existing, applied, dry)
    }

    /// A JSON merge patch (RFC 7386) or kubectl's strategic merge patch.
    fn merge_patch(
        &self,
        t: &Target,
        name: &str,
        ct: &str,
        body: &[u8],
        q: &HashMap<String, String>,
        dry: bool,
    ) -> Resp {
        let patch = match self.parse_obj(body) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let ns = t.namespace.clone().unwrap_or_default();
        let mut st = self.store.lock();
        let Some(existing) = st.get(t.rt, &ns, name).cloned() else {
            return not_found(t.rt, name);
        };
        // A patch that names a resourceVersion is a precondition, as in an
        // update: patch.go applies it to the stored object and store.go's
        // Update refuses a version other than the stored one.
        let sent_rv = meta_str(&patch, "resourceVersion");
        if !sent_rv.is_empty() && sent_rv != meta_str(&existing, "resourceVersion") {
            return conflict(t, name);
        }
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

    pub(super) fn create(&self, t: &Target, body: &[u8], q: &HashMap<String, String>) -> Resp {
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

    pub(super) fn update(
        &self,
        t: &Target,
        name: &str,
        body: &[u8],
        q: &HashMap<String, String>,
    ) -> Resp {
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
            return conflict(t, &name);
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

    pub(super) fn commit(
        &self,
        st: &mut State,
        rt: &'static ResourceType,
        existing: Option<Value>,
        obj: Value,
        dry: bool,
    ) -> Resp {
        self.commit_inner(st, rt, existing, obj, None, dry)
    }

    pub(super) fn commit_inner(
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
        if let Err(refused) = crate::admission::admit(st, rt, existing.as_ref(), Some(&obj)) {
            return refused;
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

    pub(super) fn delete(
        &self,
        t: &Target,
        name: &str,
        body: &[u8],
        query: &HashMap<String, String>,
    ) -> Resp {
        let ns = t.namespace.clone().unwrap_or_default();
        let mut st = self.store.lock();
        if let Some(old) = st.get(t.rt, &ns, name)
            && let Err(refused) = crate::admission::admit(&st, t.rt, Some(old), None)
        {
            return refused;
        }
        if t.rt.kind == "Pod" {
            // Graceful deletion: the Pod is answered while it terminates.
            let opts: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let grace = crate::terminate::requested(query.get("gracePeriodSeconds"), &opts);
            match crate::terminate::delete(&mut st, &ns, name, grace) {
                Ok(Some((pod, false))) => return json_resp(200, &pod),
                Ok(Some((gone, true))) => return deleted(t, name, &gone),
                Ok(None) => return not_found(t.rt, name),
                Err(e) => {
                    return status_err(
                        500,
                        "InternalError",
                        &format!("deleting object: {e}"),
                        Value::Null,
                    );
                }
            }
        }
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
                deleted(t, name, &gone)
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

/// The Status a delete answers once the object is gone.
fn deleted(t: &Target, name: &str, gone: &Value) -> Resp {
    json_resp(
        200,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": t.rt.group, "kind": t.rt.plural,
            "uid": gone["metadata"]["uid"]}}),
    )
}

/// 409 for a write whose resourceVersion is not the stored one
/// (`registry/generic/registry/store.go`, `Update`: OptimisticLockErrorMsg).
fn conflict(t: &Target, name: &str) -> Resp {
    status_err(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            t.rt.qualified()
        ),
        json!({"name": name, "group": t.rt.group, "kind": t.rt.plural}),
    )
}
