//! Label and field selectors as the apiserver parses them for list and watch.

use crate::store::ResourceType;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn set(v: &str) -> Result<Vec<String>, String> {
    let inner = v
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: expected '(' in set {v:?}"))?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

pub fn parse_labels(s: &str) -> Result<Vec<Req>, String> {
    let mut out = Vec::new();
    for term in split_top(s) {
        let r = if let Some(k) = term.strip_prefix('!') {
            Req::NotExists(k.trim().to_string())
        } else if let Some((k, v)) = term.split_once(" notin ") {
            Req::NotIn(k.trim().into(), set(v)?)
        } else if let Some((k, v)) = term.split_once(" in ") {
            Req::In(k.trim().into(), set(v)?)
        } else if let Some((k, v)) = term.split_once("!=") {
            Req::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==") {
            Req::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once('=') {
            Req::Eq(k.trim().into(), v.trim().into())
        } else {
            if term.contains(char::is_whitespace) || term.contains(['(', ')']) {
                return Err(format!("unable to parse requirement: {term:?}"));
            }
            Req::Exists(term.clone())
        };
        out.push(r);
    }
    Ok(out)
}

pub fn labels_match(reqs: &[Req], obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Req::Eq(k, v) => get(k) == Some(v.as_str()),
        Req::Ne(k, v) => get(k) != Some(v.as_str()),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
    })
}

/// The fields a kind can be selected on besides metadata.name and
/// metadata.namespace (kubernetes pkg/registry/core/{event,pod,secret,node}/strategy.go,
/// `ToSelectableFields` / `*ToSelectableFields`).
fn kind_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "secrets" => &["type"],
        "nodes" => &["spec.unschedulable"],
        _ => &[],
    }
}

/// Field selectors: metadata.name and metadata.namespace for every kind, and
/// the kind's own selectable fields ([`kind_fields`]); others are refused as
/// the apiserver refuses them.
pub fn parse_fields(rt: &ResourceType, s: &str) -> Result<Vec<(String, bool, String)>, String> {
    let mut out = Vec::new();
    for term in split_top(s) {
        let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, true, v)
        } else {
            return Err(format!(
                "invalid selector: '{term}'; can't understand '{term}'"
            ));
        };
        let k = k.trim();
        // Beside metadata, the fields the apiserver indexes per kind
        // (`ToSelectableFields` in pkg/registry/core/{pod,node,event,secret}).
        if k != "metadata.name" && k != "metadata.namespace" && !kind_fields(rt.plural).contains(&k)
        {
            return Err(format!("field label not supported: {k}"));
        }
        out.push((k.to_string(), eq, v.trim().to_string()));
    }
    Ok(out)
}

pub fn fields_match(reqs: &[(String, bool, String)], obj: &Value) -> bool {
    reqs.iter().all(|(k, eq, v)| {
        // An event's `source` field is its source.component.
        let path = if k == "source" { "source.component" } else { k };
        let mut at = obj;
        for part in path.split('.') {
            at = &at[part];
        }
        let actual = match at {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            // A Node's is FormatBool(spec.unschedulable): false when unset.
            Value::Null if path == "spec.unschedulable" => "false".to_string(),
            _ => String::new(),
        };
        (actual == *v) == *eq
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_like_kubernetes() {
        let o = json!({"metadata":{"name":"n","labels":{"app":"web","tier":"fe"}}});
        let ok = |s: &str| labels_match(&parse_labels(s).expect("parses"), &o);
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(!ok("app!=web"));
        assert!(ok("!missing"));
        assert!(ok("tier in (fe, be)"));
        assert!(!ok("tier notin (fe)"));
        assert!(!ok("app=db"));
        let nodes = crate::store::find("", "v1", "nodes").expect("nodes");
        let f = parse_fields(nodes, "metadata.name=n").expect("parses");
        assert!(fields_match(&f, &o));
        assert!(parse_fields(nodes, "spec.x=1").is_err());
        assert!(parse_fields(nodes, "involvedObject.name=n").is_err());
    }

    #[test]
    fn events_select_on_their_involved_object_as_kubectl_describe_asks() {
        let events = crate::store::find("", "v1", "events").expect("events");
        let ev = json!({"metadata":{"name":"n1.1","namespace":"default"},
            "involvedObject":{"kind":"Node","name":"n1","uid":"n1"},"source":{"component":"pictl-agent"}});
        let sel = |s: &str| fields_match(&parse_fields(events, s).expect("parses"), &ev);
        assert!(sel(
            "involvedObject.name=n1,involvedObject.namespace=,involvedObject.kind=Node,involvedObject.uid=n1"
        ));
        assert!(!sel("involvedObject.name=n2"));
        assert!(sel("source=pictl-agent"));
    }
}
