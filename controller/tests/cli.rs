//! The `pictl` binary as a user runs it: exit codes and what it prints.

use std::process::Command;

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pictl"));
    cmd.args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("PICTL_INVENTORY");
    cmd
}

fn pictl(args: &[&str]) -> std::process::Output {
    command(args).output().expect("run pictl")
}

#[test]
fn validate_accepts_the_playson_inventory() {
    // playson.toml trusts ~/.ssh/known_hosts strictly, so it must exist.
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(home.path().join(".ssh")).expect("mkdir");
    std::fs::write(home.path().join(".ssh/known_hosts"), "").expect("write");
    let out = command(&["validate", "-i", "inventory/playson.toml"])
        .env("HOME", home.path())
        .output()
        .expect("run pictl");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("valid: cluster playson (1 server(s), 2 agent(s))"),
        "{stdout}"
    );
}

#[test]
fn validate_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[cluster]\nname = \"x\"\nk3s_version = \"latest\"\n[[nodes]]\nname = \"n\"\naddress = \"1.2.3\"\nrole = \"server\"\n")
        .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let out = pictl(&["validate", "-i", path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{path}:3:15: cluster.k3s_version: \"latest\" is not a K3s release version"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:6:11: nodes[0].address: \"1.2.3\" is not a valid IP address"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
}

#[test]
fn validate_json_output_is_machine_readable() {
    let out = pictl(&[
        "validate",
        "-i",
        "/nonexistent/inv.toml",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["line"], 1);
    assert!(
        v["problems"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot read the inventory")
    );
}

#[test]
fn help_explains_commands_with_examples() {
    let out = pictl(&["help", "plan"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // clap wraps help text: compare it with the line breaks folded.
    let folded = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        folded.contains("Exit 0 when converged, 2 when anything would change"),
        "{stdout}"
    );
    assert!(stdout.contains("Example: pictl plan"), "{stdout}");
}

/// Runs pictl with its stdout a pipe whose reader is already gone, as in
/// `pictl … | head -c0`: (exit code, stderr).
fn with_closed_stdout(mut cmd: Command) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = cmd
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run pictl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_to_a_closed_pipe_ends_quietly_with_the_commands_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").expect("write");
    // Port 1 on loopback refuses at once: status has a row and no node.
    let inventory = dir.path().join("inv.toml");
    std::fs::write(
        &inventory,
        format!(
            "[cluster]\nname = \"pipe\"\nk3s_version = \"v1.32.5+k3s1\"\nstate_dir = \"{}\"\n\
             [ssh]\nagent = true\nport = 1\nknown_hosts = \"{}\"\n\
             [[nodes]]\nname = \"s1\"\naddress = \"127.0.0.1\"\nrole = \"server\"\n",
            dir.path().join("state").display(),
            known_hosts.display()
        ),
    )
    .expect("write");
    let inv = inventory.to_str().expect("utf-8 path");
    for (args, code) in [
        (vec!["validate", "-i", inv], 0),
        (vec!["validate", "-i", inv, "--output", "json"], 0),
        (
            vec![
                "validate",
                "-i",
                "/nonexistent/inv.toml",
                "--output",
                "json",
            ],
            1,
        ),
        (vec!["status", "-i", inv, "--output", "json"], 1),
        (vec!["status", "-i", inv], 1),
        (vec!["--help"], 0),
        (vec!["help", "plan"], 0),
    ] {
        let (status, stderr) = with_closed_stdout(command(&args));
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(status, Some(code), "{args:?}: {stderr}");
    }
}

/// An inventory of one node that refuses connections (port 1 on loopback).
fn unreachable_inventory(dir: &std::path::Path) -> std::path::PathBuf {
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, "").expect("write");
    let inventory = dir.join("inv.toml");
    std::fs::write(
        &inventory,
        format!(
            "[cluster]\nname = \"watch\"\nk3s_version = \"v1.32.5+k3s1\"\nstate_dir = \"{}\"\n\
             [ssh]\nagent = true\nport = 1\nknown_hosts = \"{}\"\n\
             [[nodes]]\nname = \"s1\"\naddress = \"127.0.0.1\"\nrole = \"server\"\n",
            dir.join("state").display(),
            known_hosts.display()
        ),
    )
    .expect("write");
    inventory
}

#[test]
fn status_watch_refreshes_until_interrupted_and_exits_with_the_last_health() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = unreachable_inventory(dir.path());
    let inv = inv.to_str().expect("utf-8");
    // JSON: one line per refresh.
    let mut child = command(&["status", "-i", inv, "--watch", "1", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..2 {
        let line = lines.next().expect("a refresh").expect("line");
        let rows: serde_json::Value =
            serde_json::from_str(&line).expect("one JSON document a line");
        assert_eq!(rows[0]["name"], "s1");
        assert_eq!(rows[0]["reachable"], false);
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(1),
        "the node is unreachable: not healthy"
    );
    // Human: each frame is drawn from the top of a cleared screen.
    let mut child = command(&["status", "-i", inv, "--watch", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.windows(4).filter(|w| *w == b"\x1b[2J").count() < 2 {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "status --watch stopped on its own");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("\x1b[H\x1b[2Jwatch (every 1 s"), "{text}");
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
