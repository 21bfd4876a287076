//! The built binary: its arguments and the `report` the controller runs over SSH.

use std::process::Command;

use pictl_agent::report::{NodeReport, REPORT_VERSION};

const BIN: &str = env!("CARGO_BIN_EXE_pictl-agent");

#[test]
fn version_and_help_exit_zero() {
    let out = Command::new(BIN).arg("--version").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("pictl-agent ") && text.contains(&format!("v{REPORT_VERSION}")),
        "{text}"
    );
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--listen ADDR"));
}

#[test]
fn bad_arguments_exit_2_with_the_reason() {
    let out = Command::new(BIN)
        .args(["serve", "--listen", "nowhere"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nowhere\" is not an address"));
}

#[test]
fn report_prints_one_json_node_report_for_this_host() {
    let out = Command::new(BIN).arg("report").output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "{text}");
    let r: NodeReport = serde_json::from_str(&text).expect("a NodeReport");
    assert_eq!(r.version, REPORT_VERSION);
    assert!(r.memory.is_some_and(|m| m.total_bytes > 0), "{text}");
    assert!(r.load.is_some() && r.uptime_seconds.is_some(), "{text}");
}
