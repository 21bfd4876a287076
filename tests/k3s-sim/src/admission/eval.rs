//! A policy's CEL, as staging/src/k8s.io/apiserver/pkg/admission/plugin/
//! policy/validating/validator.go `Validate` runs it: the `matchConditions`
//! first (one false: the policy does not apply; an error and no false: a
//! failure), then every validation in order. A validation that is not
//! `true` denies with its `messageExpression`'s string (trimmed, one line),
//! else its `message`, else `failed expression: <expression>`, and its
//! `reason` (Invalid when unset); one that fails to compile or evaluate
//! denies under `failurePolicy: Fail` and is skipped under `Ignore`.
//! Variables are those of staging/src/k8s.io/apiserver/pkg/admission/plugin/
//! cel/activation.go and `CreateAdmissionRequest`: `object`, `oldObject`
//! (null on CREATE, `object` null on DELETE), `request` (kind, resource,
//! subResource, name, namespace, operation, userInfo, dryRun), `params`
//! (null: paramKind is not simulated), `namespaceObject` and `variables`
//! (each of `spec.variables`, in order).

use super::Attributes;
use cel::{Context, Program, Value as Cel};
use serde_json::{Value, json};

/// The first denial of `spec`'s validations: its message and reason.
pub fn validate(
    spec: &Value,
    a: &Attributes<'_>,
    old: Option<&Value>,
    new: Option<&Value>,
    fail: bool,
) -> Option<(String, String)> {
    let mut ctx = Context::default();
    let null = Value::Null;
    ctx.add_variable_from_value("object", to_cel(new.unwrap_or(&null)));
    ctx.add_variable_from_value("oldObject", to_cel(old.unwrap_or(&null)));
    ctx.add_variable_from_value("request", to_cel(&request(a)));
    ctx.add_variable_from_value("params", Cel::Null);
    ctx.add_variable_from_value("namespaceObject", Cel::Null);
    let mut vars = std::collections::HashMap::new();
    for v in spec["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("").to_string();
        ctx.add_variable_from_value("variables", vars.clone());
        if let Ok(value) = run(&ctx, v["expression"].as_str().unwrap_or("")) {
            vars.insert(name, value);
        }
    }
    ctx.add_variable_from_value("variables", vars);
    let invalid = || "Invalid".to_string();
    match match_conditions(&ctx, spec) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) if fail => return Some((e, invalid())),
        Err(_) => return None,
    }
    for v in spec["validations"].as_array().into_iter().flatten() {
        let expr = v["expression"].as_str().unwrap_or("");
        match run(&ctx, expr) {
            Ok(Cel::Bool(true)) => {}
            Ok(_) => {
                let reason = v["reason"].as_str().map_or_else(invalid, String::from);
                return Some((message(&ctx, v, expr), reason));
            }
            Err(e) if fail => return Some((e, invalid())),
            Err(_) => {}
        }
    }
    None
}

/// matchconditions/matcher.go `Match`: false if any is false, an error
/// if none is false and one failed, else true.
fn match_conditions(ctx: &Context<'_, '_>, spec: &Value) -> Result<bool, String> {
    let mut error = None;
    for c in spec["matchConditions"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("");
        match run(ctx, c["expression"].as_str().unwrap_or("")) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => return Ok(false),
            Ok(_) => error = Some(format!("matchCondition '{name}' did not return bool")),
            Err(e) => error = Some(format!("matchCondition '{name}': {e}")),
        }
    }
    error.map_or(Ok(true), Err)
}

/// validator.go's choice of message for a denial.
fn message(ctx: &Context<'_, '_>, v: &Value, expr: &str) -> String {
    if let Some(me) = v["messageExpression"].as_str()
        && let Ok(Cel::String(s)) = run(ctx, me)
    {
        let s = s.trim();
        if !s.is_empty() && !s.contains('\n') && s.len() <= 5 * 1024 {
            return s.to_string();
        }
    }
    match v["message"].as_str().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!("failed expression: {}", expr.trim()),
    }
}

/// Compiles and evaluates one expression, failing as the apiserver words it.
pub fn run(ctx: &Context<'_, '_>, expr: &str) -> Result<Cel, String> {
    let program = Program::compile(expr).map_err(|e| format!("compilation error: {e}"))?;
    program
        .execute(ctx)
        .map_err(|e| format!("expression '{expr}' resulted in error: {e}"))
}

/// A JSON value as CEL sees it (objects as maps, numbers as int or double).
pub fn to_cel(v: &Value) -> Cel {
    cel::to_value(v).unwrap_or(Cel::Null)
}

/// `CreateAdmissionRequest`: what `request` holds.
fn request(a: &Attributes<'_>) -> Value {
    let rt = a.req.rt;
    let sub = a.req.subresource.clone().unwrap_or_default();
    let resource = json!({"group": rt.group, "version": rt.version, "resource": rt.plural});
    let kind = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    json!({
        "kind": kind, "resource": resource, "subResource": sub,
        "requestKind": kind, "requestResource": resource, "requestSubResource": sub,
        "name": a.name, "namespace": a.req.namespace,
        "operation": a.op.as_str(),
        "userInfo": {"username": a.req.user.name(), "groups": a.req.user.groups()},
        "dryRun": a.req.dry_run,
    })
}
