use std::sync::{Arc, Mutex};

use super::*;
use crate::report::{Filesystem, UnitState};

/// A Node that merges status patches by condition type, records every
/// request, and can be made unreachable or forbidding.
#[derive(Default)]
struct FakeNode {
    conditions: Vec<serde_json::Value>,
    requests: Vec<(String, String, String)>,
    unreachable: bool,
    forbid: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeNode>>);

impl ApiSender for Fake {
    fn send(&self, method: &str, path: &str, _: &str, body: &[u8]) -> Result<Answer, ClientError> {
        let mut n = self.0.lock().expect("lock");
        if n.unreachable {
            let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(ClientError::ConnectFailed("10.0.0.1:6443".into(), e));
        }
        let body = String::from_utf8(body.to_vec()).expect("utf-8");
        n.requests.push((method.into(), path.into(), body.clone()));
        if n.forbid {
            let status =
                serde_json::json!({"kind":"Status","message":"nodes \"node1\" is forbidden: no"});
            return Ok(Answer {
                status: 403,
                body: status.to_string(),
            });
        }
        if method == "PATCH" {
            let patch: serde_json::Value = serde_json::from_str(&body).expect("json");
            for c in patch
                .pointer("/status/conditions")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                n.conditions.retain(|h| h["type"] != c["type"]);
                n.conditions.push(c.clone());
            }
            let node = serde_json::json!({"kind":"Node","status":{"conditions": n.conditions}});
            return Ok(Answer {
                status: 200,
                body: node.to_string(),
            });
        }
        Ok(Answer {
            status: 201,
            body: body.clone(),
        })
    }
}

impl Fake {
    fn take(&self) -> Vec<(String, String, String)> {
        std::mem::take(&mut self.0.lock().expect("lock").requests)
    }
    fn with(&self, f: impl FnOnce(&mut FakeNode)) {
        f(&mut self.0.lock().expect("lock"));
    }
}

fn cfg() -> Config {
    config::parse("server = https://10.0.0.1:6443\nnode = node1\ntoken_file = t\nca_file = c\n")
        .expect("config")
}

fn publisher(fake: &Fake) -> Publisher {
    let fake = fake.clone();
    Publisher::new(
        cfg(),
        Box::new(move |_| Ok(Box::new(fake.clone()) as Box<dyn ApiSender>)),
    )
}

fn report(used_percent: u64) -> NodeReport {
    NodeReport {
        root_fs: Some(Filesystem {
            mount_point: "/".into(),
            total_bytes: 100 << 20,
            available_bytes: (100 - used_percent) << 20,
        }),
        units: [("k3s.service".to_owned(), UnitState::Active)].into(),
        clock_synchronized: Some(true),
        ..NodeReport::default()
    }
}

fn state(p: &Publisher) -> Publishing {
    p.status().lock().expect("lock").clone()
}

#[test]
fn a_healthy_node_is_written_once_then_never_again() {
    let fake = Fake::default();
    let mut p = publisher(&fake);
    p.tick(&report(40), 1000);
    let first = fake.take();
    let kinds: Vec<(&str, &str)> = first
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("PATCH", "/api/v1/nodes/node1/status"),
            ("PATCH", "/api/v1/nodes/node1/status")
        ],
        "learn with an empty patch, then write; no Event for a healthy new Node"
    );
    assert_eq!(first[0].2, "{}");
    assert!(
        first[1].2.contains("\"RootDiskPressure\""),
        "{}",
        first[1].2
    );
    for t in 1..=10 {
        p.tick(&report(40 + t % 3), 1000 + 30 * t);
    }
    assert_eq!(fake.take(), [], "no request at all while nothing changes");
    let s = state(&p);
    assert_eq!(
        (s.state, s.writes, s.last_write_at),
        (PublishState::Ok, 1, Some(1000))
    );
    assert_eq!(s.conditions.len(), 4);
}

#[test]
fn a_filling_disk_turns_true_with_a_warning_event_and_back_with_a_normal_one() {
    let fake = Fake::default();
    let mut p = publisher(&fake);
    p.tick(&report(40), 1000);
    fake.take();
    p.tick(&report(95), 1030);
    let reqs = fake.take();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs[0].2.contains("RootFilesystemFull"), "{}", reqs[0].2);
    let event: serde_json::Value = serde_json::from_str(&reqs[1].2).expect("event json");
    assert_eq!(reqs[1].1, "/api/v1/namespaces/default/events");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "RootFilesystemFull");
    assert_eq!(event["involvedObject"]["kind"], "Node");
    assert_eq!(event["involvedObject"]["name"], "node1");
    let held = state(&p).conditions;
    let disk = held
        .iter()
        .find(|c| c.kind == "RootDiskPressure")
        .expect("disk");
    assert_eq!(
        (disk.status.as_str(), disk.last_transition_time.as_str()),
        ("True", "1970-01-01T00:17:10Z")
    );
    let clock = held
        .iter()
        .find(|c| c.kind == "ClockUnsynchronized")
        .expect("clock");
    assert_eq!(
        clock.last_transition_time, "1970-01-01T00:16:40Z",
        "unchanged status keeps its time"
    );

    p.tick(&report(50), 1060);
    let reqs = fake.take();
    assert_eq!(reqs.len(), 2);
    let event: serde_json::Value = serde_json::from_str(&reqs[1].2).expect("event json");
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("RootFilesystemHasSpace"))
    );
    assert_eq!(state(&p).writes, 5);
}

#[test]
fn a_restarted_agent_learns_the_node_and_does_not_rewrite_it() {
    let fake = Fake::default();
    publisher(&fake).tick(&report(40), 1000);
    fake.take();
    let mut again = publisher(&fake);
    again.tick(&report(41), 2000);
    let reqs = fake.take();
    assert_eq!(reqs.len(), 1, "only the empty read-back patch: {reqs:?}");
    assert_eq!(reqs[0].2, "{}");
}

#[test]
fn an_unreachable_or_forbidding_api_is_reported_and_retried() {
    let fake = Fake::default();
    fake.with(|n| n.unreachable = true);
    let mut p = publisher(&fake);
    p.tick(&report(40), 1000);
    let s = state(&p);
    assert_eq!(s.state, PublishState::Unreachable);
    assert!(
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("connecting to 10.0.0.1:6443")),
        "{s:?}"
    );

    fake.with(|n| {
        n.unreachable = false;
        n.forbid = true;
    });
    p.tick(&report(40), 1030);
    let s = state(&p);
    assert_eq!(s.state, PublishState::Refused);
    assert_eq!(
        s.error.as_deref(),
        Some("PATCH /api/v1/nodes/node1/status: 403 nodes \"node1\" is forbidden: no")
    );

    fake.with(|n| n.forbid = false);
    fake.take();
    p.tick(&report(40), 1060);
    assert_eq!(state(&p).state, PublishState::Ok);
    assert_eq!(fake.take().len(), 2, "learned again, then written");
}

#[test]
fn unreadable_credentials_are_misconfigured_and_name_the_file() {
    let mut p = Publisher::new(cfg(), connect_files());
    p.tick(&report(40), 1000);
    let s = state(&p);
    assert_eq!(s.state, PublishState::Misconfigured);
    assert!(
        s.error
            .as_deref()
            .is_some_and(|e| e.starts_with("reading t:")),
        "{s:?}"
    );
}

#[test]
fn a_node_registered_again_gets_its_conditions_back_at_the_next_read_back() {
    let fake = Fake::default();
    let mut p = publisher(&fake);
    p.tick(&report(40), 1000);
    fake.take();
    // `kubectl delete node` and the kubelet registering it again: no
    // conditions of ours any more, and nothing changed on the node itself.
    fake.with(|n| n.conditions.clear());
    p.tick(&report(40), 1000 + RELEARN_SECONDS - 1);
    assert!(fake.take().is_empty(), "within the period nothing is sent");
    p.tick(&report(40), 1000 + RELEARN_SECONDS);
    let sent = fake.take();
    let bodies: Vec<&str> = sent.iter().map(|(_, _, b)| b.as_str()).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0], "{}", "read back with an empty patch");
    assert!(bodies[1].contains("\"RootDiskPressure\""), "{}", bodies[1]);
    let held = fake.0.lock().expect("lock").conditions.len();
    assert!(held >= 3, "conditions restored: {held}");
    // And a healthy Node whose conditions are there costs one empty patch
    // per period, no write.
    p.tick(&report(40), 1000 + 2 * RELEARN_SECONDS);
    let sent = fake.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].2, "{}");
}
