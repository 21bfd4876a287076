//! The apiserver's answers: JSON and text bodies, and `Status` errors shaped
//! as the real apiserver shapes them (NotFound, BadRequest, 422 Invalid with
//! causes, 409 apply conflicts, 401).

use super::*;

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

pub(super) fn not_found_path() -> Resp {
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

pub(super) fn bad_request(msg: &str) -> Resp {
    status_err(400, "BadRequest", msg, Value::Null)
}

pub struct Invalid {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

pub(super) fn invalid(rt: &ResourceType, name: &str, errs: &[Invalid]) -> Resp {
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

pub(super) fn conflict_resp(rt: &ResourceType, name: &str, conflicts: &[apply::Conflict]) -> Resp {
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
