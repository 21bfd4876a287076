//! Label and field selectors as the apiserver parses them for list and watch.

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

/// Field selectors: the apiserver supports metadata.name and metadata.namespace
/// for every kind; that is all kubectl and kube-rs use here.
pub fn parse_fields(s: &str) -> Result<Vec<(String, bool, String)>, String> {
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
        // Beside metadata, the fields the apiserver indexes that kubectl
        // drain and `get nodes --field-selector` use (pkg/registry/core/pod
        // and node strategy.go, `ToSelectableFields`).
        if !matches!(
            k,
            "metadata.name"
                | "metadata.namespace"
                | "spec.nodeName"
                | "status.phase"
                | "spec.unschedulable"
        ) {
            return Err(format!("field label not supported: {k}"));
        }
        out.push((k.to_string(), eq, v.trim().to_string()));
    }
    Ok(out)
}

pub fn fields_match(reqs: &[(String, bool, String)], obj: &Value) -> bool {
    reqs.iter().all(|(k, eq, v)| {
        let actual = match k.as_str() {
            "spec.nodeName" => obj["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            "status.phase" => obj["status"]["phase"].as_str().unwrap_or("").to_string(),
            "spec.unschedulable" => {
                (obj["spec"]["unschedulable"] == serde_json::json!(true)).to_string()
            }
            _ => {
                let field = k.trim_start_matches("metadata.");
                obj["metadata"][field].as_str().unwrap_or("").to_string()
            }
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
        let f = parse_fields("metadata.name=n").expect("parses");
        assert!(fields_match(&f, &o));
        assert!(parse_fields("spec.x=1").is_err());
    }
}
