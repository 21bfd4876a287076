//! Watch: a chunked stream of JSON event lines (ADDED / MODIFIED / DELETED), resumable
//! from a resourceVersion, as `kubectl wait`, informers and kube-rs use it. Objects
//! moving in or out of a selector show up as ADDED / DELETED like the apiserver's.

use crate::api::{Resp, event_json, status_err};
use crate::http::Body;
use crate::select;
use crate::store::{Event, EventType, ResourceType, State, Store};
use hyper::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub fn serve(
    store: Store,
    rt: &'static ResourceType,
    ns: Option<String>,
    q: &HashMap<String, String>,
) -> Resp {
    let (labels, fields) = match selectors(rt, q) {
        Ok(s) => s,
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
    let (rx, initial, current_rv) = {
        let st = store.lock();
        let rx = st.subscribe();
        (rx, initial(&st, rt, start_rv, &matches), st.rv)
    };
    let (tx, body_rx) = tokio::sync::mpsc::channel::<hyper::body::Bytes>(64);
    let watch = Watch {
        rt,
        current_rv,
        timeout,
        bookmarks,
    };
    tokio::spawn(stream(tx, rx, initial, watch, matches));
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(Body::Stream(body_rx))
        .unwrap_or_else(|_| Response::new(Body::full("internal error")))
}

type LabelReqs = Vec<select::Req>;
type FieldReqs = Vec<(String, bool, String)>;

/// The request's label and field selectors (empty when absent).
fn selectors(
    rt: &ResourceType,
    q: &HashMap<String, String>,
) -> Result<(LabelReqs, FieldReqs), String> {
    let labels = q
        .get("labelSelector")
        .map(|s| select::parse_labels(s))
        .transpose()?
        .unwrap_or_default();
    let fields = q
        .get("fieldSelector")
        .map(|s| select::parse_fields(rt, s))
        .transpose()?
        .unwrap_or_default();
    Ok((labels, fields))
}

/// What the stream starts with: every matching object as ADDED (no or a
/// zero resourceVersion), the events since the given one, or, when that is
/// older than the history kept, the apiserver's 410 Expired telling the
/// client to relist.
fn initial(
    st: &State,
    rt: &'static ResourceType,
    start_rv: Option<u64>,
    matches: &impl Fn(&Value) -> bool,
) -> Vec<Value> {
    match start_rv {
        None | Some(0) => st
            .list(rt, None)
            .into_iter()
            .filter(|o| matches(o))
            .map(|o| event_json(EventType::Added, o))
            .collect(),
        Some(rv) => match st.events_since(rv) {
            Some(evs) => evs
                .iter()
                .filter(|e| std::ptr::eq(e.rtype, rt))
                .filter_map(|e| translate(e.kind, e.old.as_ref(), &e.new, matches))
                .collect(),
            None => vec![
                json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": format!("too old resource version: {rv}"),
                "reason": "Expired", "code": 410}}),
            ],
        },
    }
}

/// What a watch streams, besides its selectors.
struct Watch {
    rt: &'static ResourceType,
    /// The store's resourceVersion when the initial events were read.
    current_rv: u64,
    timeout: u64,
    bookmarks: bool,
}

fn line(v: &Value) -> hyper::body::Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    hyper::body::Bytes::from(b)
}

/// Sends the initial events, then each later matching change (and a
/// BOOKMARK every 20 s when asked) until the timeout, the client leaves or
/// it lags behind (closing the stream makes it relist).
async fn stream(
    tx: tokio::sync::mpsc::Sender<hyper::body::Bytes>,
    mut rx: broadcast::Receiver<Arc<Event>>,
    initial: Vec<Value>,
    w: Watch,
    matches: impl Fn(&Value) -> bool,
) {
    for ev in &initial {
        if tx.send(line(ev)).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(w.timeout);
    let mut last_rv = w.current_rv;
    loop {
        let next = tokio::select! {
            r = rx.recv() => r,
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tokio::time::sleep(Duration::from_secs(20)), if w.bookmarks => {
                let bm = json!({"type": "BOOKMARK", "object": {"kind": w.rt.kind, "apiVersion": w.rt.api_version(),
                    "metadata": {"resourceVersion": last_rv.to_string()}}});
                if tx.send(line(&bm)).await.is_err() { return; }
                continue;
            }
        };
        let Ok(ev) = next else {
            return;
        };
        last_rv = ev.rv;
        if ev.rv <= w.current_rv || !std::ptr::eq(ev.rtype, w.rt) {
            continue;
        }
        if let Some(out) = translate(ev.kind, ev.old.as_ref(), &ev.new, &matches)
            && tx.send(line(&out)).await.is_err()
        {
            return;
        }
    }
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
