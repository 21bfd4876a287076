//! The agent's real `/metrics`, served by the built binary on this host and
//! for a fake Raspberry Pi, must pass Prometheus' own linter
//! (`promtool check metrics`, Debian package `prometheus`, installed by
//! tests/lab/install-deps.sh). Without promtool the test fails: it never
//! counts as passed without checking.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pictl-agent");

pub fn promtool() -> &'static str {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return "promtool";
    }
    panic!("promtool is missing: apt-get install prometheus (tests/lab/install-deps.sh)");
}

/// `promtool check metrics` on `text`: its exit status and what it said.
pub fn check(promtool: &str, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_metrics(port: u16) -> String {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let req = format!(
                "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).expect("request");
            let mut raw = String::new();
            s.read_to_string(&mut raw).expect("answer");
            let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("text/plain; version=0.0.4"), "{head}");
            return body.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the agent never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_served_metrics_of_this_host_pass_promtool() {
    let promtool = promtool();
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _agent = Agent(
        Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent starts"),
    );
    let text = get_metrics(port);
    assert!(text.contains("pictl_node_info{"), "{text}");
    let (ok, said) = check(promtool, &text);
    assert!(
        ok,
        "promtool check metrics failed:\n{said}\n--- metrics ---\n{text}"
    );
}

#[test]
fn a_pi_with_every_fact_renders_metrics_that_pass_promtool() {
    let promtool = promtool();
    let dir = tempfile::tempdir().expect("tempdir");
    super::support::fake_pi(dir.path());
    let exec = super::support::FakeExec::default();
    let sources = super::support::sources(dir.path(), exec, super::support::healthy_kubelet());
    let mut report = pictl_agent::collect::collect(&sources);
    let judged = pictl_agent::publish::conditions::judge(&report, 90.0);
    let (conditions, _) =
        pictl_agent::publish::conditions::stamp(&judged, &[], "2026-01-01T00:00:00Z");
    report.publishing = Some(pictl_agent::report::Publishing {
        state: pictl_agent::report::PublishState::Ok,
        conditions,
        ..Default::default()
    });
    assert!(
        report.throttling.is_some() && report.soc_temperature_celsius.is_some(),
        "{report:?}"
    );
    let text = pictl_agent::metrics::render(&report);
    assert!(
        text.contains("pictl_node_condition{condition=\"PiUnderVoltage\",status=\"true\"} 1"),
        "{text}"
    );
    let (ok, said) = check(promtool, &text);
    assert!(
        ok,
        "promtool check metrics failed:\n{said}\n--- metrics ---\n{text}"
    );
    // And promtool does catch a broken exposition: the check can fail.
    let (ok, _) = check(promtool, "pictl_node_bad{x=\"1\" 1\n");
    assert!(!ok, "promtool accepted a broken line");
}
