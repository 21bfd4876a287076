//! Publishing the agent's judgement where Kubernetes users look: Node
//! conditions on the agent's own Node (`PATCH nodes/NAME/status`, a strategic
//! merge patch, so conditions merge by type and the kubelet's stay), and an
//! Event on the Node for each transition, as node-problem-detector does.
//!
//! Every interval the agent judges a fresh report ([`conditions::judge`]) and
//! writes only when a condition's status or reason differs from what the
//! Node holds: a healthy node costs the API nothing. What the Node holds is
//! learned once (and after any failure) with an empty patch, which the
//! apiserver answers with the Node and does not store, since the token may
//! only patch `nodes/status`, not get nodes; and learned again every
//! [`RELEARN_SECONDS`], so a Node deleted and registered again (its
//! conditions gone) gets them back within minutes even on a node whose
//! health never changes. When the API cannot be reached
//! the agent keeps serving locally and says why in `/v1/report`
//! ([`Publishing`]).
//!
//! The API server is known by the cluster CA and, when `publish.conf` pins
//! it (`api_spki_sha256`), by its key ([`pin`]): the CA alone also signs
//! every node's kubelet certificate, whatever IP SANs the node asks for.

pub mod client;
pub mod conditions;
pub mod config;
pub mod pin;
pub mod rfc3339;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error_chain;
use crate::report::{NodeCondition, NodeReport, PublishState, Publishing};
use client::{Answer, Api, ClientError};
use conditions::{Judged, Status};
use config::Config;

const STRATEGIC_MERGE: &str = "application/strategic-merge-patch+json";
/// How long what the Node holds is trusted before it is read back again
/// (one empty patch, nothing stored): 10 minutes.
pub const RELEARN_SECONDS: u64 = 600;

/// The Event source, as `kubectl describe node` shows it ("From").
pub const COMPONENT: &str = "pictl-agent";

/// Sends one request to the API server: the real [`Api`], or a fake in tests.
pub trait ApiSender: Send {
    fn send(
        &self,
        method: &str,
        path: &str,
        ctype: &str,
        body: &[u8],
    ) -> Result<Answer, ClientError>;
}

impl ApiSender for Api {
    fn send(
        &self,
        method: &str,
        path: &str,
        ctype: &str,
        body: &[u8],
    ) -> Result<Answer, ClientError> {
        Api::send(self, method, path, ctype, body)
    }
}

/// Makes the client: reads the token and CA (again after each failure, so a
/// token rotated by pictl is picked up).
pub type Connect = Box<dyn FnMut(&Config) -> Result<Box<dyn ApiSender>, String> + Send>;

/// The real client from the configured files.
pub fn connect_files() -> Connect {
    Box::new(|cfg: &Config| {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let token = String::from_utf8(read(&cfg.token_file)?)
            .map_err(|_| format!("{} is not text", cfg.token_file.display()))?;
        let token = token.trim().to_owned();
        if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "{} holds no usable token",
                cfg.token_file.display()
            ));
        }
        let ca = read(&cfg.ca_file)?;
        let api = Api::new(&cfg.server, &ca, token, &cfg.api_pins).map_err(|e| error_chain(&e))?;
        Ok(Box::new(api) as Box<dyn ApiSender>)
    })
}

pub struct Publisher {
    cfg: Config,
    connect: Connect,
    api: Option<Box<dyn ApiSender>>,
    /// What the Node holds, as its last answer said; `None` until learned.
    held: Option<Vec<NodeCondition>>,
    /// When `held` was last read back from the API (Unix seconds).
    learned_at: u64,
    status: Arc<Mutex<Publishing>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why a tick stopped short.
enum Failed {
    Unreachable(String),
    Refused(String),
}

impl Publisher {
    pub fn new(cfg: Config, connect: Connect) -> Self {
        let status = Publishing {
            server: cfg.server.clone(),
            node: cfg.node.clone(),
            ..Publishing::default()
        };
        Self {
            cfg,
            connect,
            api: None,
            held: None,
            learned_at: 0,
            status: Arc::new(Mutex::new(status)),
        }
    }

    /// The state `/v1/report` shows, shared with the HTTP server.
    pub fn status(&self) -> Arc<Mutex<Publishing>> {
        self.status.clone()
    }

    pub fn interval(&self) -> std::time::Duration {
        self.cfg.interval
    }

    /// Judges `r` and writes what changed, at `now` (Unix seconds).
    pub fn tick(&mut self, r: &NodeReport, now: u64) {
        let api = match self.api.take() {
            Some(api) => api,
            None => match (self.connect)(&self.cfg) {
                Ok(api) => api,
                Err(why) => return self.set(PublishState::Misconfigured, Some(why), |_| {}),
            },
        };
        let judged = conditions::judge(r, self.cfg.disk_pressure_percent);
        match self.publish(api.as_ref(), &judged, now) {
            Ok(wrote) => {
                let mut held = self.held.clone().unwrap_or_default();
                held.retain(|c| conditions::ALL.contains(&c.kind.as_str()));
                self.set(PublishState::Ok, None, |s| {
                    s.conditions = held;
                    if wrote > 0 {
                        s.last_write_at = Some(now);
                        s.writes += wrote;
                    }
                });
                self.api = Some(api);
            }
            Err(Failed::Unreachable(why)) => {
                self.held = None;
                self.set(PublishState::Unreachable, Some(why), |_| {});
            }
            Err(Failed::Refused(why)) => {
                self.held = None;
                self.set(PublishState::Refused, Some(why), |_| {});
            }
        }
    }

    fn set(&self, state: PublishState, error: Option<String>, more: impl FnOnce(&mut Publishing)) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.state = state;
        s.error = error;
        more(&mut s);
    }

    /// Learns what the Node holds if needed, writes if it differs; returns
    /// the number of writes made.
    fn publish(&mut self, api: &dyn ApiSender, judged: &[Judged], now: u64) -> Result<u64, Failed> {
        let stale = now.abs_diff(self.learned_at) >= RELEARN_SECONDS;
        let held = match self.held.take().filter(|_| !stale) {
            Some(h) => h,
            None => {
                let h = self.patch_status(api, b"{}")?;
                self.learned_at = now;
                h
            }
        };
        if !conditions::differs(judged, &held) {
            self.held = Some(held);
            return Ok(0);
        }
        let stamp = rfc3339::format(now);
        let (next, transitions) = conditions::stamp(judged, &held, &stamp);
        let body = serde_json::json!({ "status": { "conditions": next } });
        let new_held = self.patch_status(api, body.to_string().as_bytes())?;
        self.held = Some(new_held);
        let mut writes = 1;
        for j in &transitions {
            let was_held = held.iter().any(|c| c.kind == j.kind);
            // A Node seen for the first time gets Events only for its problems.
            if was_held || j.status == Status::True {
                self.event(api, j, &stamp, now)?;
                writes += 1;
            }
        }
        Ok(writes)
    }

    /// PATCHes the Node's status and returns the conditions it then holds.
    fn patch_status(&self, api: &dyn ApiSender, body: &[u8]) -> Result<Vec<NodeCondition>, Failed> {
        let path = format!("/api/v1/nodes/{}/status", self.cfg.node);
        let answer = request(api, "PATCH", &path, STRATEGIC_MERGE, body)?;
        let node: serde_json::Value = serde_json::from_str(&answer.body)
            .map_err(|e| Failed::Refused(format!("PATCH {path}: the answer is not JSON: {e}")))?;
        let conditions = node
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or(serde_json::Value::Array(Vec::new()));
        serde_json::from_value(conditions)
            .map_err(|e| Failed::Refused(format!("PATCH {path}: conditions not readable: {e}")))
    }

    fn event(&self, api: &dyn ApiSender, j: &Judged, stamp: &str, now: u64) -> Result<(), Failed> {
        let node = &self.cfg.node;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(u128::from(now) * 1_000_000_000, |d| d.as_nanos());
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Event",
            // kubelet-style names: the object's name and a hex timestamp.
            "metadata": { "name": format!("{node}.{nanos:x}"), "namespace": "default" },
            // The kubelet's node events use the node's name as its UID.
            "involvedObject": { "apiVersion": "v1", "kind": "Node", "name": node, "uid": node },
            "reason": j.reason,
            "message": format!("{}: {}", j.kind, j.message),
            "type": if j.status == Status::True { "Warning" } else { "Normal" },
            "source": { "component": COMPONENT, "host": node },
            "reportingComponent": COMPONENT,
            "reportingInstance": node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        });
        let path = "/api/v1/namespaces/default/events";
        request(
            api,
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
        .map(|_| ())
    }
}

/// One request; an error status becomes [`Failed::Refused`] with the API's
/// own message (a `Status` object's `message`).
fn request(
    api: &dyn ApiSender,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> Result<Answer, Failed> {
    let answer = api
        .send(method, path, ctype, body)
        .map_err(|e| Failed::Unreachable(error_chain(&e)))?;
    if (200..300).contains(&answer.status) {
        return Ok(answer);
    }
    let message = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| answer.body.chars().take(200).collect());
    let line = format!("{method} {path}: {} {message}", answer.status);
    Err(Failed::Refused(one_line(&line)))
}

/// What a server said, made safe for one line of a report.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Reads the configuration at `path`, or at the default path, which may be
/// absent (then `None`: the agent does not publish).
pub fn load(path: Option<&str>) -> crate::Result<Option<Config>> {
    let file = std::path::PathBuf::from(path.unwrap_or(config::DEFAULT_PATH));
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if path.is_none() && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(crate::Error::ReadFailed { path: file, source }),
    };
    config::parse(&text)
        .map(Some)
        .map_err(|source| crate::Error::PublishConfigInvalid { path: file, source })
}

/// Starts the publishing thread; returns the state it keeps.
pub fn start(cfg: Config) -> crate::Result<Arc<Mutex<Publishing>>> {
    let mut publisher = Publisher::new(cfg, connect_files());
    let status = publisher.status();
    std::thread::Builder::new()
        .name("publish".into())
        .spawn(move || {
            let sources = crate::collect::Sources::system();
            loop {
                let report = crate::collect::collect(&sources);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                publisher.tick(&report, now);
                std::thread::sleep(publisher.interval());
            }
        })
        .map_err(crate::Error::StartWorkersFailed)?;
    Ok(status)
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
