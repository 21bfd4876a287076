//! RBAC authorization for ServiceAccount tokens, as kubernetes'
//! plugin/pkg/auth/authorizer/rbac/rbac.go (`RBACAuthorizer.Authorize`,
//! `RulesAllow`/`RuleAllows`) and pkg/apis/rbac/v1/evaluation_helpers.go
//! (`VerbMatches`, `APIGroupMatches`, `ResourceMatches`, `ResourceNameMatches`)
//! decide it: the rules of every ClusterRoleBinding, and of every RoleBinding
//! in the request's namespace, whose subjects name the user or one of its
//! groups; allowed when one rule matches. Denials answer 403 with the
//! apiserver's message (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/
//! responsewriters/errors.go `forbiddenMessage`, apimachinery `NewForbidden`).
//! The admin client certificate (system:masters) is never checked: K3s's
//! apiserver short-circuits that group (authorizerfactory privileged groups).

use crate::api::{Invalid, Resp, status_err};
use crate::auth::User;
use crate::store::{ResourceType, State, find};
use serde_json::{Value, json};

/// What a resource request asks, as the apiserver's `authorizer.Attributes`.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub rt: &'static ResourceType,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
}

fn rbac_rt(kind: &str) -> Option<&'static ResourceType> {
    let plural = match kind {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return None,
    };
    find("rbac.authorization.k8s.io", "v1", plural)
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `RuleAllows`: verb, API group, resource (`res/sub`, `*`, `*/sub`) and names.
pub fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    let verbs = strs(&rule["verbs"]);
    let groups = strs(&rule["apiGroups"]);
    let resources = strs(&rule["resources"]);
    let names = strs(&rule["resourceNames"]);
    let combined = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.rt.plural),
        None => a.rt.plural.to_string(),
    };
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || a.subresource
                .is_some_and(|sub| r.strip_prefix("*/") == Some(sub))
    });
    verbs.iter().any(|v| *v == "*" || *v == a.verb)
        && groups.iter().any(|g| *g == "*" || *g == a.rt.group)
        && resource_ok
        && (names.is_empty() || names.contains(&a.name))
}

fn subject_matches(s: &Value, user: &User, binding_ns: &str) -> bool {
    match s["kind"].as_str() {
        Some("ServiceAccount") => {
            let ns = s["namespace"].as_str().unwrap_or(binding_ns);
            let ns = if ns.is_empty() { binding_ns } else { ns };
            user.name()
                == format!(
                    "system:serviceaccount:{ns}:{}",
                    s["name"].as_str().unwrap_or("")
                )
        }
        Some("User") => s["name"].as_str() == Some(user.name().as_str()),
        Some("Group") => s["name"]
            .as_str()
            .is_some_and(|g| user.groups().iter().any(|ug| ug == g)),
        _ => false,
    }
}

/// The rules of the role a binding refers to (a RoleBinding may name a
/// ClusterRole; a Role is looked up in the binding's namespace).
fn role_rules<'s>(st: &'s State, binding: &Value, ns: &str) -> Vec<&'s Value> {
    let kind = binding["roleRef"]["kind"].as_str().unwrap_or("");
    let name = binding["roleRef"]["name"].as_str().unwrap_or("");
    let role_ns = if kind == "Role" { ns } else { "" };
    rbac_rt(kind)
        .and_then(|rt| st.get(rt, role_ns, name))
        .and_then(|r| r["rules"].as_array())
        .map(|rules| rules.iter().collect())
        .unwrap_or_default()
}

/// Whether `user` may do `a`.
pub fn allows(st: &State, user: &User, a: &Attributes<'_>) -> bool {
    let bound = |b: &Value, ns: &str| {
        b["subjects"]
            .as_array()
            .is_some_and(|ss| ss.iter().any(|s| subject_matches(s, user, ns)))
    };
    let allows_in = |b: &Value, ns: &str| {
        bound(b, ns) && role_rules(st, b, ns).iter().any(|r| rule_allows(r, a))
    };
    let crb = find("rbac.authorization.k8s.io", "v1", "clusterrolebindings");
    let rb = find("rbac.authorization.k8s.io", "v1", "rolebindings");
    if crb.is_some_and(|rt| st.list(rt, None).iter().any(|b| allows_in(b, ""))) {
        return true;
    }
    !a.namespace.is_empty()
        && rb.is_some_and(|rt| {
            st.list(rt, Some(a.namespace))
                .iter()
                .any(|b| allows_in(b, a.namespace))
        })
}

/// `forbiddenMessage` wrapped in `NewForbidden`, as a Status.
pub fn forbidden(user: &User, a: &Attributes<'_>) -> Resp {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.rt.plural),
        None => a.rt.plural.to_string(),
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let why = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name(),
        a.verb,
        a.rt.group
    );
    let qualified = a.rt.qualified();
    let message = if a.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} \"{}\" is forbidden: {why}", a.name)
    };
    let mut details = json!({"group": a.rt.group, "kind": a.rt.plural});
    if !a.name.is_empty() {
        details["name"] = json!(a.name);
    }
    status_err(403, "Forbidden", &message, details)
}

/// `ValidateRBACName`: a path segment (`path.IsValidPathSegmentName`).
pub fn validate_name(name: &str, e: &mut Vec<Invalid>) {
    let msg = if name.is_empty() {
        None
    } else if name == "." || name == ".." {
        Some(format!("may not be '{name}'"))
    } else if name.contains('/') || name.contains('%') {
        Some(format!(
            "may not contain '{}'",
            if name.contains('/') { "/" } else { "%" }
        ))
    } else {
        None
    };
    if let Some(m) = msg {
        crate::validate::err(
            e,
            "metadata.name",
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": {m}"),
        );
    }
}

/// Bindings: `roleRef` is required and cannot change
/// (pkg/apis/rbac/validation/validation.go `ValidateRoleBindingUpdate`).
pub fn validate_object(rt: &ResourceType, old: Option<&Value>, obj: &Value, e: &mut Vec<Invalid>) {
    if !rt.kind.ends_with("Binding") {
        return;
    }
    let r = &obj["roleRef"];
    if r["name"].as_str().unwrap_or("").is_empty() {
        crate::validate::err(
            e,
            "roleRef.name",
            "FieldValueRequired",
            "Required value".into(),
        );
    }
    let kinds: &[&str] = if rt.kind == "RoleBinding" {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let kind = r["kind"].as_str().unwrap_or("");
    if !kinds.contains(&kind) {
        crate::validate::err(
            e,
            "roleRef.kind",
            "FieldValueNotSupported",
            format!(
                "Unsupported value: \"{kind}\": supported values: {}",
                kinds
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if let Some(old) = old
        && old["roleRef"] != *r
    {
        crate::validate::err(
            e,
            "roleRef",
            "FieldValueInvalid",
            format!(
                "Invalid value: rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}: cannot change roleRef",
                r["apiGroup"].as_str().unwrap_or(""),
                kind,
                r["name"].as_str().unwrap_or("")
            ),
        );
    }
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
