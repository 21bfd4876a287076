//! Simulator-only: counts API resource requests by verb, resource and status
//! code (`patch nodes/status 200`), served at `GET /v1-k3s/sim/requests` so a
//! test can assert, for instance, that a healthy cluster makes no status
//! writes for a minute. Real K3s has no such endpoint (its apiserver exports
//! `apiserver_request_total` on /metrics for the same purpose).

use crate::rbac::Attributes;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

pub fn count(a: &Attributes<'_>, code: u16) {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.rt.plural),
        None => a.rt.plural.to_string(),
    };
    let key = format!("{} {resource} {code}", a.verb);
    *COUNTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(0) += 1;
}

pub fn snapshot() -> Value {
    json!(*COUNTS.lock().unwrap_or_else(PoisonError::into_inner))
}
