//! The built agent's pod-network metrics listener (publish.conf
//! `metrics_listen` + `metrics_peers`), on 127.0.0.2: all of 127/8 is local
//! on Linux, and a client connecting there from this host has the source
//! address 127.0.0.1, so `metrics_peers` decides whether it is answered.
//! Publishing is configured (the keys live in publish.conf) against an API
//! address that refuses connections, with no token: the agent keeps serving
//! locally, which is all these tests need.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pictl_agent::report::{ListenerState, MetricsListener, NodeReport};

use super::promtool::{check, promtool};

const BIN: &str = env!("CARGO_BIN_EXE_pictl-agent");
/// Generous: the agent binds at start, or within one 5 s retry.
const DEADLINE: Duration = Duration::from_secs(30);

struct Agent {
    child: Child,
    /// Where `serve --listen` answers everything.
    local: SocketAddr,
    /// The pod-network listener's address.
    pod: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// What the agent wrote to stderr (the journal, on a node) so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).expect("agent log")
    }
}

fn free_port(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind");
    l.local_addr().expect("addr")
}

/// Starts `serve` with a publish.conf listening for pods on `pod`, answering `peers`.
fn start(pod: SocketAddr, peers: &str) -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("publish.conf");
    let api = free_port("127.0.0.1");
    std::fs::write(
        &conf,
        format!(
            "server = https://{api}\nnode = pod-test\ntoken_file = {d}/token\n\
             ca_file = {d}/ca.crt\ninterval_seconds = 3600\n\
             metrics_listen = {pod}\nmetrics_peers = {peers}\n",
            d = dir.path().display()
        ),
    )
    .expect("write publish.conf");
    let local = free_port("127.0.0.1");
    let stderr = File::create(dir.path().join("stderr")).expect("log file");
    let child = Command::new(BIN)
        .args(["serve", "--listen", &local.to_string(), "--publish-config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("agent starts");
    Agent {
        child,
        local,
        pod,
        dir,
    }
}

/// `(status, body)` of `GET path` naming `addr` in `Host`.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|h| h.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (status, body.to_owned())
}

/// The loopback listener's report, once the agent answers.
fn report(agent: &Agent) -> NodeReport {
    let start = Instant::now();
    while TcpStream::connect(agent.local).is_err() {
        assert!(start.elapsed() < DEADLINE, "the agent never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = get(agent.local, "/v1/report");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a NodeReport")
}

/// The listener's state once `done` holds for it (reports are cached 1.5 s).
fn wait_for(agent: &Agent, done: impl Fn(&MetricsListener) -> bool) -> MetricsListener {
    let start = Instant::now();
    loop {
        let l = report(agent)
            .metrics_listener
            .expect("the report shows the pod-network listener");
        if done(&l) {
            return l;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "still {l:?}; log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn listening(agent: &Agent) -> MetricsListener {
    wait_for(agent, |l| l.state == ListenerState::Listening)
}

#[test]
fn pods_get_metrics_and_healthz_but_not_the_report() {
    let promtool = promtool();
    let agent = start(free_port("127.0.0.2"), "127.0.0.0/8");
    let l = listening(&agent);
    assert_eq!((l.address, l.error), (agent.pod.to_string(), None));

    let (status, text) = get(agent.pod, "/metrics");
    assert_eq!(status, 200, "{text}");
    let gauge = format!(
        "pictl_node_pod_metrics_listening{{address=\"{}\"}} 1\n",
        agent.pod
    );
    assert!(text.contains(&gauge), "{text}");
    assert!(text.contains("pictl_node_info{"), "{text}");
    let (ok, said) = check(promtool, &text);
    assert!(
        ok,
        "promtool check metrics failed:\n{said}\n--- metrics ---\n{text}"
    );

    // Same judgement on both listeners (this host runs no K3s: likely 503).
    let (pod_health, body) = get(agent.pod, "/healthz");
    assert!(body == "ok\n" || body.starts_with("failing\n"), "{body}");
    assert_eq!(pod_health, get(agent.local, "/healthz").0);

    for path in ["/v1/report", "/", "/v1/report?pretty"] {
        assert_eq!(get(agent.pod, path), (404, "not found\n".into()), "{path}");
    }
    // The rest of the HTTP hardening holds there too.
    let mut s = TcpStream::connect(agent.pod).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("answer");
    assert!(raw.starts_with("HTTP/1.1 421 "), "{raw}");
    // The loopback listener still serves everything.
    assert!(get(agent.local, "/metrics").1.contains(&gauge));
}

#[test]
fn a_peer_outside_metrics_peers_is_closed_without_an_answer() {
    let agent = start(free_port("127.0.0.2"), "10.42.0.0/16");
    listening(&agent);
    let mut s = TcpStream::connect(agent.pod).expect("the kernel completes the handshake");
    let me = s.local_addr().expect("local addr").ip();
    assert_eq!(
        me.to_string(),
        "127.0.0.1",
        "the test's premise: our source address"
    );
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Closed when accepted: the write may already meet a reset.
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.2\r\n\r\n");
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was held open ({e}), not closed"),
    }
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // The loopback listener is unaffected.
    assert_eq!(
        report(&agent).metrics_listener.map(|l| l.state),
        Some(ListenerState::Listening)
    );
}

#[test]
fn the_listener_waits_for_its_address_then_binds_it() {
    // Held by this test, the address fails to bind (EADDRINUSE) as cni0's
    // does before it exists (EADDRNOTAVAIL): the agent retries either way.
    let held = TcpListener::bind("127.0.0.2:0").expect("bind");
    let agent = start(held.local_addr().expect("addr"), "127.0.0.0/8");
    let waiting = wait_for(&agent, |l| l.error.is_some());
    assert_eq!(waiting.state, ListenerState::Waiting);
    let (_, text) = get(agent.local, "/metrics");
    let gauge = format!(
        "pictl_node_pod_metrics_listening{{address=\"{}\"}}",
        agent.pod
    );
    assert!(text.contains(&format!("{gauge} 0\n")), "{text}");
    // Let at least one retry fail too (one every 5 s): logged once all the same.
    std::thread::sleep(Duration::from_secs(6));
    drop(held);
    let l = listening(&agent);
    assert_eq!(l.error, None);
    assert_eq!(get(agent.pod, "/metrics").0, 200);
    let log = agent.log();
    assert_eq!(log.matches("cannot listen on").count(), 1, "{log}");
    assert_eq!(
        log.matches("pod-network metrics listener on").count(),
        1,
        "{log}"
    );
}

#[test]
fn a_bad_metrics_peers_value_stops_the_agent_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("publish.conf");
    std::fs::write(
        &conf,
        "server = https://127.0.0.1:1\nnode = n\ntoken_file = t\nca_file = c\n\
         metrics_listen = 10.42.1.1:9750\nmetrics_peers = fd00:42::/56\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--publish-config"])
        .arg(&conf)
        .output()
        .expect("agent runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 6: metrics_peers = \"fd00:42::/56\": IPv6 is not supported yet"),
        "{err}"
    );
}
