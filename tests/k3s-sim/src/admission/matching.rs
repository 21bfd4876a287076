//! Whether a policy's `matchConstraints` (or a binding's `matchResources`)
//! take a request, as staging/src/k8s.io/apiserver/pkg/admission/plugin/
//! policy/matching/matching.go (`Matcher.Matches`) and webhook/predicates/
//! rules/rules.go (`Matcher.Matches`: operation, group, version, resource,
//! scope) decide it: not excluded, and one rule matches; `resourceNames`,
//! when given, name the object. A rule's `*` resource matches resources but
//! not subresources, `nodes/*` every subresource of nodes, `*/status` every
//! status subresource and `*/*` everything. The object selector matches the
//! object's labels or the old object's; the namespace selector, a namespaced
//! request's Namespace (a cluster-scoped one always matches it).

use super::{Attributes, Operation};
use serde_json::Value;

fn strs(v: &Value) -> Vec<&str> {
    super::strs(v)
}

fn one_of(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// rules.go `resource`: `res`, `res/sub`, `*`, `res/*`, `*/sub`, `*/*`.
fn resource_matches(rule: &str, res: &str, sub: Option<&str>) -> bool {
    let (rr, rs) = match rule.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (rule, None),
    };
    match (rs, sub) {
        (None, None) => rr == "*" || rr == res,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(rs), Some(sub)) => (rr == "*" || rr == res) && (rs == "*" || rs == sub),
    }
}

/// One `NamedRuleWithOperations`.
pub fn rule_matches(rule: &Value, a: &Attributes<'_>) -> bool {
    let rt = a.req.rt;
    let names = strs(&rule["resourceNames"]);
    let scope = rule["scope"].as_str().unwrap_or("*");
    let scope_ok = match scope {
        "Cluster" => !rt.namespaced,
        "Namespaced" => rt.namespaced,
        _ => true,
    };
    one_of(&strs(&rule["operations"]), a.op.as_str())
        && one_of(&strs(&rule["apiGroups"]), rt.group)
        && one_of(&strs(&rule["apiVersions"]), rt.version)
        && strs(&rule["resources"])
            .iter()
            .any(|r| resource_matches(r, rt.plural, a.req.subresource.as_deref()))
        && (names.is_empty() || names.contains(&a.name))
        && scope_ok
}

/// `metav1.LabelSelector` against `labels` (an empty selector matches all).
pub fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels[k].as_str();
    let exact = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let exprs = sel["matchExpressions"].as_array().into_iter().flatten();
    exact
        && exprs.into_iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values = strs(&e["values"]);
            match e["operator"].as_str().unwrap_or("") {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
}

/// An object's labels (null without an object).
fn labels(o: Option<&Value>) -> &Value {
    static NULL: Value = Value::Null;
    o.map_or(&NULL, |o| &o["metadata"]["labels"])
}

/// Whether `m` (MatchResources) takes the request.
pub fn matches(
    st: &crate::store::State,
    m: &Value,
    a: &Attributes<'_>,
    old: Option<&Value>,
    new: Option<&Value>,
) -> bool {
    let rules = |k: &str| m[k].as_array().cloned().unwrap_or_default();
    if rules("excludeResourceRules")
        .iter()
        .any(|r| rule_matches(r, a))
    {
        return false;
    }
    if !rules("resourceRules").iter().any(|r| rule_matches(r, a)) {
        return false;
    }
    let obj_sel = &m["objectSelector"];
    if obj_sel.is_object()
        && !selector_matches(obj_sel, labels(new))
        && !(a.op != Operation::Create && selector_matches(obj_sel, labels(old)))
    {
        return false;
    }
    let ns_sel = &m["namespaceSelector"];
    if a.req.rt.namespaced && ns_sel.is_object() {
        let ns = crate::store::find("", "v1", "namespaces")
            .and_then(|rt| st.get(rt, "", &a.req.namespace));
        if !selector_matches(ns_sel, labels(ns)) {
            return false;
        }
    }
    true
}
