//! The HTTP endpoint over real loopback connections.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pictl_agent::http::{MAX_HEAD_BYTES, READ_DEADLINE, Scope, Server};
use pictl_agent::report::{
    Filesystem, Health, Load, Memory, NodeReport, REPORT_VERSION, Swap, Throttling, UnitState,
};

fn pi_report(health: Health, problems: &[&str]) -> NodeReport {
    NodeReport {
        version: REPORT_VERSION,
        hostname: "pi-node1".into(),
        arch: "arm64".into(),
        agent_version: "0.1.0".into(),
        collected_at: 1_700_000_000,
        uptime_seconds: Some(86400),
        load: Some(Load {
            one: 0.52,
            five: 0.41,
            fifteen: 0.3,
        }),
        memory: Some(Memory {
            total_bytes: 4 << 30,
            available_bytes: 3 << 30,
        }),
        swap: Some(Swap {
            total_bytes: 100 << 20,
            free_bytes: 50 << 20,
        }),
        root_fs: Some(Filesystem {
            mount_point: "/".into(),
            total_bytes: 32 << 30,
            available_bytes: 20 << 30,
        }),
        soc_temperature_celsius: Some(51.234),
        model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
        throttling: Some(Throttling::from_raw(0x50005)),
        units: BTreeMap::from([
            ("k3s.service".into(), UnitState::Active),
            ("k3s-agent.service".into(), UnitState::Absent),
        ]),
        kubelet_healthy: Some(true),
        clock_synchronized: Some(false),
        k3s_certificates: None,
        collection_errors: vec![],
        health,
        problems: problems.iter().map(|p| (*p).to_owned()).collect(),
        publishing: None,
        metrics_listener: None,
        data_dir_fsync: None,
    }
}

/// Starts a server for `report` with `ttl`; returns its address and a collection counter.
fn start(report: NodeReport, ttl: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        report.clone()
    });
    let server = Server::bind("127.0.0.1:0".parse().expect("addr"), source, ttl).expect("bind");
    let addr = server.local_addr().expect("local addr");
    std::thread::spawn(move || server.run());
    (addr, calls)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes and reads the response until the server closes.
fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read until close");
    let text = String::from_utf8(buf).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().expect("status code");
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("header line");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let reply = Reply {
        status,
        headers,
        body: body.to_owned(),
    };
    assert_eq!(reply.header("Connection"), Some("close"));
    reply
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost:9750\r\nUser-Agent: t\r\n\r\n").as_bytes(),
    )
}

#[test]
fn healthz_is_ok_unless_failing() {
    let (addr, _) = start(
        pi_report(Health::Degraded, &["clock not synchronized"]),
        Duration::ZERO,
    );
    let r = get(addr, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Content-Length"), Some("3"));
}

#[test]
fn healthz_is_503_with_the_problems_when_failing() {
    let problems = [
        "under-voltage now (get_throttled 0x50005)",
        "kubelet healthz is not ok",
    ];
    let (addr, _) = start(pi_report(Health::Failing, &problems), Duration::ZERO);
    let r = get(addr, "/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        format!("failing\n{}\n{}\n", problems[0], problems[1])
    );
}

#[test]
fn report_deserializes_into_the_node_report_served() {
    let want = pi_report(
        Health::Failing,
        &["under-voltage now (get_throttled 0x50005)"],
    );
    let (addr, _) = start(want.clone(), Duration::ZERO);
    let r = get(addr, "/v1/report?pretty=no");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let got: NodeReport = serde_json::from_str(&r.body).expect("a NodeReport");
    assert_eq!(got, want);
}

/// Checks the exposition format line by line; returns `name{labels}` -> value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "last line must end with a newline");
    let mut typed: HashSet<String> = HashSet::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = BTreeMap::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP name text");
            assert!(
                valid_name(name) && helped.insert(name.to_owned()),
                "HELP twice or bad: {line}"
            );
            assert!(!typed.contains(name), "HELP after TYPE: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(valid_name(name), "{line}");
            assert!(["gauge", "counter", "untyped"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
            if let Some(prev) = current.replace(name.to_owned()) {
                finished.insert(prev);
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        // name{labels} value
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let name = series.split('{').next().expect("name");
        assert!(
            valid_name(name) && name.starts_with("pictl_node_"),
            "{line}"
        );
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample outside its family's TYPE block: {line}"
        );
        assert!(!finished.contains(name), "family split: {line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect("braces");
            for pair in inner.split("\",") {
                let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(
                    valid_name(k) && !k.starts_with("__"),
                    "label name {k}: {line}"
                );
                assert!(!v.trim_end_matches('"').contains('\n'), "{line}");
            }
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        assert!(
            samples.insert(series.to_owned(), v).is_none(),
            "duplicate series {series}"
        );
    }
    assert_eq!(helped, typed, "every family has HELP and TYPE");
    samples
}

#[test]
fn metrics_are_valid_prometheus_text_with_the_node_facts() {
    let (addr, _) = start(pi_report(Health::Failing, &["x"]), Duration::ZERO);
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = parse_prometheus(&r.body);
    let want = [
        ("pictl_node_memory_available_bytes", (3u64 << 30) as f64),
        ("pictl_node_memory_total_bytes", (4u64 << 30) as f64),
        ("pictl_node_load1", 0.52),
        ("pictl_node_load15", 0.3),
        ("pictl_node_soc_temperature_celsius", 51.234),
        ("pictl_node_get_throttled", f64::from(0x50005u32)),
        ("pictl_node_throttled{bit=\"under_voltage_now\"}", 1.0),
        ("pictl_node_throttled{bit=\"freq_capped_now\"}", 0.0),
        ("pictl_node_throttled{bit=\"throttled_occurred\"}", 1.0),
        ("pictl_node_unit_active{unit=\"k3s.service\"}", 1.0),
        ("pictl_node_unit_active{unit=\"k3s-agent.service\"}", 0.0),
        (
            "pictl_node_unit_state{unit=\"k3s-agent.service\",state=\"absent\"}",
            1.0,
        ),
        (
            "pictl_node_rootfs_available_bytes{mountpoint=\"/\"}",
            (20u64 << 30) as f64,
        ),
        ("pictl_node_kubelet_healthy", 1.0),
        ("pictl_node_clock_synchronized", 0.0),
        ("pictl_node_health{state=\"ok\"}", 0.0),
        ("pictl_node_health{state=\"failing\"}", 1.0),
        ("pictl_node_problems", 1.0),
    ];
    for (series, value) in want {
        assert_eq!(m.get(series), Some(&value), "{series} in\n{}", r.body);
    }
    let info = m
        .keys()
        .find(|k| k.starts_with("pictl_node_info{"))
        .expect("info series");
    assert!(
        info.contains("hostname=\"pi-node1\"")
            && info.contains("model=\"Raspberry Pi 4 Model B Rev 1.4\"")
    );
}

#[test]
fn metrics_checker_rejects_broken_exposition() {
    // The checker above must be able to fail, or the test proves nothing.
    for bad in [
        "pictl_node_x 1\n",                                                     // no TYPE
        "# HELP pictl_node_x h\n# TYPE pictl_node_x gauge\npictl_node_x one\n", // bad value
        "# HELP pictl_node_x h\n# TYPE pictl_node_x gauge\npictl_node_x{a=1} 1\n", // unquoted label
    ] {
        let text = bad.to_owned();
        assert!(
            std::panic::catch_unwind(|| parse_prometheus(&text)).is_err(),
            "accepted {bad:?}"
        );
    }
}

#[test]
fn unknown_paths_and_methods_and_garbage_are_refused() {
    let (addr, calls) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/v1/report/../../etc/passwd").status, 404);
    let r = raw(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    assert_eq!(raw(addr, b"hello\r\n\r\n").status, 400);
    assert_eq!(raw(addr, b"GET / HTTP/2.0\r\n\r\n").status, 505);
    // None of these needed a collection.
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn oversized_request_head_is_431() {
    let (addr, _) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    let mut req = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 100));
    req.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw(addr, &req).status, 431);
}

#[test]
fn head_request_has_length_but_no_body() {
    let (addr, _) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    let r = raw(addr, b"HEAD /v1/report HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Length")
            .expect("length")
            .parse::<usize>()
            .expect("n")
            > 100
    );
    assert_eq!(r.body, "");
}

#[test]
fn a_scrape_burst_collects_once_within_the_cache_ttl() {
    let (addr, calls) = start(pi_report(Health::Ok, &[]), Duration::from_secs(60));
    for path in ["/metrics", "/v1/report", "/healthz"]
        .iter()
        .cycle()
        .take(30)
    {
        assert_eq!(get(addr, path).status, 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (addr, calls) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    for _ in 0..3 {
        get(addr, "/metrics");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_silent_client_delays_others_at_most_the_read_deadline() {
    let (addr, _) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    let _idle = TcpStream::connect(addr).expect("idle client");
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(
        started.elapsed() < READ_DEADLINE + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// A connection that sends nothing at all.
fn idle(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).expect("idle client")
}

/// A connection that sends part of a request head, then stalls.
fn stalled(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("stalled client");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Ag")
        .expect("partial head");
    s
}

/// Regression test for the hardening issue: 6 idle connections made every
/// scrape take 10-11 s, and 129 filled the backlog.
#[test]
fn healthz_answers_while_100_idle_and_20_stalled_connections_are_held() {
    let (addr, _) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    let mut held: Vec<TcpStream> = (0..100).map(|_| idle(addr)).collect();
    held.extend((0..20).map(|_| stalled(addr)));
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        let started = Instant::now();
        let r = get(addr, "/healthz");
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        // Generous, so a loaded machine never flakes; bench-idle.sh prints the real figure.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    drop(held);
}

#[test]
fn idle_and_stalled_connections_are_closed_by_the_read_deadline() {
    let (addr, _) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    for mut s in [idle(addr), stalled(addr)] {
        s.set_read_timeout(Some(READ_DEADLINE + Duration::from_secs(3)))
            .expect("timeout");
        let mut buf = Vec::new();
        // Closed without an answer: nobody finished asking.
        assert_eq!(s.read_to_end(&mut buf).expect("closed, not timed out"), 0);
    }
}

#[test]
fn requests_naming_another_host_are_misdirected() {
    let (addr, calls) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    for host in [
        "evil.example",
        "evil.example:9750",
        "localhost.evil.example",
        "127.0.0.1.nip.io:9750",
    ] {
        let r = raw(
            addr,
            format!("GET /v1/report HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 421, "{host}");
        assert_eq!(r.body, "Host not served here\n");
    }
    // A rebinding page learns nothing, not even which paths exist.
    let r = raw(addr, b"GET /nope HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    assert_eq!(r.status, 421);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn loopback_names_and_the_listen_address_are_served() {
    let (addr, _) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    let port = addr.port();
    for host in [
        "localhost".to_owned(),
        "LOCALHOST:9750".to_owned(),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{port}"),
        "[::1]".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let r = raw(
            addr,
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{host}");
    }
}

#[test]
fn missing_host_is_served_only_to_http10_from_loopback() {
    let (addr, _) = start(pi_report(Health::Ok, &[]), Duration::ZERO);
    let r = raw(addr, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!((r.status, r.body.as_str()), (400, "Host header required\n"));
    // The test client is on loopback; a remote peer is refused (host.rs unit tests).
    let r = raw(addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
}

#[test]
fn scrapes_are_served_concurrently_with_one_collection() {
    let (addr, calls) = start(pi_report(Health::Ok, &[]), Duration::from_secs(60));
    let threads: Vec<_> = (0..16)
        .map(|i| std::thread::spawn(move || get(addr, ["/metrics", "/v1/report"][i % 2]).status))
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("client thread"), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_metrics_only_listener_shares_the_cache_and_serves_only_metrics_and_healthz() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let report = pi_report(Health::Ok, &[]);
    let source = Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        report.clone()
    });
    let full = Server::bind(
        "127.0.0.1:0".parse().expect("addr"),
        source,
        Duration::from_secs(60),
    )
    .expect("bind");
    let full_addr = full.local_addr().expect("local addr");
    // 127.0.0.2 is local too (all of 127/8 is); the client connects from 127.0.0.1.
    let listen: SocketAddr = "127.0.0.2:0".parse().expect("addr");
    let listener = std::net::TcpListener::bind(listen).expect("bind 127.0.0.2");
    let pod_addr = listener.local_addr().expect("local addr");
    let peers = vec!["127.0.0.0/8".parse().expect("cidr")];
    let pod =
        Server::serve(listen, listener, full.reports(), Scope::Metrics { peers }).expect("serve");
    std::thread::spawn(move || full.run());
    std::thread::spawn(move || pod.run());
    for path in ["/metrics", "/healthz"] {
        assert_eq!(get(pod_addr, path).status, 200, "{path}");
    }
    assert_eq!(get(full_addr, "/metrics").status, 200);
    for path in ["/v1/report", "/", "/metrics/../v1/report", "/v1/report?x"] {
        let r = get(pod_addr, path);
        assert_eq!((r.status, r.body.as_str()), (404, "not found\n"), "{path}");
    }
    assert_eq!(get(full_addr, "/v1/report").status, 200);
    // One collection answered both listeners.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
