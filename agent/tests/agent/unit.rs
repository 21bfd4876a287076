//! The systemd unit the controller installs: its sandbox directives, and what
//! `systemd-analyze verify` thinks of it where systemd is installed.

use std::net::SocketAddr;
use std::process::Command;

use pictl_agent::SYSTEMD_UNIT;
use pictl_agent::cli::DEFAULT_LISTEN;

const BIN: &str = env!("CARGO_BIN_EXE_pictl-agent");

/// `Key=value` lines of the unit, comments and sections left out.
fn directives() -> Vec<(&'static str, &'static str)> {
    SYSTEMD_UNIT
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

fn values(key: &str) -> Vec<&'static str> {
    directives()
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn unit_confines_network_proc_and_system_calls() {
    assert_eq!(values("IPAddressDeny"), ["any"]);
    assert_eq!(values("IPAddressAllow"), ["localhost"]);
    assert_eq!(values("ProtectProc"), ["invisible"]);
    // An allow list, then a deny list taken out of it.
    assert_eq!(
        values("SystemCallFilter"),
        ["@system-service", "~@privileged @resources"]
    );
    assert_eq!(values("SystemCallErrorNumber"), ["EPERM"]);
    // ProcSubset=pid would hide /proc/meminfo and /proc/loadavg.
    assert!(values("ProcSubset").is_empty());
}

/// `IPAddressAllow=localhost` is right only while the unit listens on loopback;
/// a LAN address is a drop-in that must widen it too (the unit says how).
#[test]
fn unit_listens_on_the_loopback_default() {
    let exec = values("ExecStart");
    let [line] = exec.as_slice() else {
        panic!("one ExecStart, got {exec:?}")
    };
    let listen = line
        .split_once("--listen ")
        .map(|(_, rest)| rest.split(' ').next().unwrap_or(rest))
        .expect("an explicit --listen");
    assert_eq!(listen, DEFAULT_LISTEN);
    let addr: SocketAddr = listen.parse().expect("an address");
    assert!(addr.ip().is_loopback());
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    // A missing tool is a failure, never a skip: tests/lab/install-deps.sh
    // installs it (Debian package `systemd`).
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze (package systemd, installed by tests/lab/install-deps.sh)");
    let dir = tempfile::tempdir().expect("tempdir");
    let verify = |unit: &str| {
        let path = dir.path().join("pictl-agent.service");
        // verify checks that ExecStart's program exists: point it at this build.
        std::fs::write(&path, unit.replace("/usr/local/bin/pictl-agent", BIN)).expect("write");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("runs");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), said)
    };
    let (ok, said) = verify(SYSTEMD_UNIT);
    assert!(ok && said.is_empty(), "systemd-analyze verify:\n{said}");
    // The check must be able to fail: a mistyped value is reported on stderr.
    let (_, said) = verify(&SYSTEMD_UNIT.replace("ProtectProc=invisible", "ProtectProc=bogus"));
    assert!(said.contains("bogus"), "{said}");
}
