//! Reading a request: its query string, its body's media type, the verb the
//! authorizer sees, and the resource path (`/api/v1/namespaces/ns/pods/x`).

use super::*;

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

/// A Content-Type without its parameters.
pub(super) fn media_type(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_string()
}

/// The apiserver's 415 for a body it cannot decode
/// (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/negotiation/errors.go
/// `NewUnsupportedMediaTypeError`, raised by negotiate.go's
/// `NegotiateInputSerializer` in handlers/create.go and update.go).
pub(super) fn unsupported_media_type(content_type: &str) -> Resp {
    status_err(
        415,
        "UnsupportedMediaType",
        &format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"
        ),
        Value::Null,
    )
}

/// JSON, YAML and protobuf bodies are decoded; CBOR is not (client-go
/// answers a 415 to CBOR by retrying in JSON).
pub(super) fn refuse_binary(content_type: &str) -> Option<Resp> {
    content_type
        .contains("cbor")
        .then(|| unsupported_media_type(content_type))
}

/// A protobuf body as the JSON one it stands for (`crate::proto`), its
/// content type then JSON's; a body the simulator cannot convert is refused
/// as one in an unknown format. The answer is JSON whatever the body was:
/// kubectl's typed clients send `Accept: application/vnd.kubernetes.protobuf,
/// application/json` (the real apiserver picks protobuf, the first it
/// serves) and decode the answer by its Content-Type.
pub(super) fn protobuf_as_json(content_type: &mut String, body: Vec<u8>) -> Result<Vec<u8>, Resp> {
    if content_type != crate::proto::MEDIA_TYPE {
        return Ok(body);
    }
    match crate::proto::to_json(&body) {
        Ok(json) => {
            *content_type = "application/json".into();
            Ok(json)
        }
        Err(why) => {
            crate::info!("refused a protobuf body: {why}");
            Err(unsupported_media_type(content_type))
        }
    }
}

/// The authorizer's verb for a request (apiserver's RequestInfoFactory).
pub(super) fn verb_of(m: &Method, t: &Target, q: &HashMap<String, String>) -> &'static str {
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

/// What a resource path names: the kind, and the namespace, object and
/// subresource when given.
pub(super) struct Target {
    pub(super) rt: &'static ResourceType,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

pub(super) fn route(segs: &[&str]) -> Option<Result<Target, Resp>> {
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
