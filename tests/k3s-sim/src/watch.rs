//! Watch: a chunked stream of JSON event lines (ADDED / MODIFIED / DELETED), resumable
//! from a resourceVersion, as `kubectl wait`, informers and kube-rs use it. Objects
//! moving in or out of a selector show up as ADDED / DELETED like the apiserver's.

use crate::api::{Resp, event_json, status_err};
use crate::http::Body;
use crate::select;
use crate::store::{EventType, ResourceType, Store};
use hyper::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

pub fn serve(
    store: Store,
    rt: &'static ResourceType,
    ns: Option<String>,
    q: &HashMap<String, String>,
) -> Resp {
    let labels = match q
        .get("labelSelector")
        .map(|s| select::parse_labels(s))
        .transpose()
    {
        Ok(l) => l.unwrap_or_default(),
        Err(e) => return status_err(400, "BadRequest", &e, Value::Null),
    };
    let fields = match q
        .get("fieldSelector")
        .map(|s| select::parse_fields(rt, s))
        .transpose()
    {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return status_err(400, "BadRequest", &e, Value::Null),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let start_rv: Option<u64> = q
        .get("resourceVersion")
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok());
    let matches = move |o: &Value| {
        let in_ns = ns
            .as_deref()
            .is_none_or(|n| o["metadata"]["namespace"].as_str() == Some(n));
        in_ns && select::labels_match(&labels, o) && select::fields_match(&fields, o)
    };

    let (mut rx, initial, current_rv) = {
        let st = store.lock();
        let rx = st.subscribe();
        let initial: Result<Vec<Value>, ()> = match start_rv {
            None | Some(0) => Ok(st
                .list(rt, None)
                .into_iter()
                .filter(|o| matches(o))
                .map(|o| event_json(EventType::Added, o))
                .collect()),
            Some(rv) => match st.events_since(rv) {
                Some(evs) => Ok(evs
                    .iter()
                    .filter(|e| std::ptr::eq(e.rtype, rt))
                    .filter_map(|e| translate(e.kind, e.old.as_ref(), &e.new, &matches))
                    .collect()),
                None => Err(()),
            },
        };
        (rx, initial, st.rv)
    };
    let initial = match initial {
        Ok(i) => i,
        Err(()) => {
            // Too old: tell the client to relist, as the apiserver does.
            vec![
                json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": format!("too old resource version: {}", start_rv.unwrap_or(0)),
                "reason": "Expired", "code": 410}}),
            ]
        }
    };
    let (tx, body_rx) = tokio::sync::mpsc::channel::<hyper::body::Bytes>(64);
    tokio::spawn(async move {
        let line = |v: &Value| {
            let mut b = serde_json::to_vec(v).unwrap_or_default();
            b.push(b'\n');
            hyper::body::Bytes::from(b)
        };
        for ev in &initial {
            if tx.send(line(ev)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut last_rv = current_rv;
        loop {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tokio::time::sleep(Duration::from_secs(20)), if bookmarks => {
                    let bm = json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(),
                        "metadata": {"resourceVersion": last_rv.to_string()}}});
                    if tx.send(line(&bm)).await.is_err() { return; }
                    continue;
                }
            };
            match next {
                Ok(ev) => {
                    last_rv = ev.rv;
                    if ev.rv <= current_rv || !std::ptr::eq(ev.rtype, rt) {
                        continue;
                    }
                    if let Some(out) = translate(ev.kind, ev.old.as_ref(), &ev.new, &matches)
                        && tx.send(line(&out)).await.is_err()
                    {
                        return;
                    }
                }
                // Lagged: the client must relist; closing the stream makes it do so.
                Err(_) => return,
            }
        }
    });
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(Body::Stream(body_rx))
        .unwrap_or_else(|_| Response::new(Body::full("internal error")))
}

fn translate(
    kind: EventType,
    old: Option<&Value>,
    new: &Value,
    matches: &impl Fn(&Value) -> bool,
) -> Option<Value> {
    let was = old.is_some_and(matches);
    let is = matches(new);
    match kind {
        EventType::Deleted => was.then(|| event_json(EventType::Deleted, new)),
        EventType::Added => is.then(|| event_json(EventType::Added, new)),
        EventType::Modified => match (was, is) {
            (true, true) => Some(event_json(EventType::Modified, new)),
            (false, true) => Some(event_json(EventType::Added, new)),
            (true, false) => Some(event_json(EventType::Deleted, new)),
            (false, false) => None,
        },
    }
}
