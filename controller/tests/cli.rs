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

/// Runs the generated bash completion in a real bash, as bash does on TAB:
/// `words` are COMP_WORDS (the last one being completed); returns COMPREPLY.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = pictl(&["completions", "bash"]);
    assert_eq!(script.status.code(), Some(0));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pictl.bash");
    std::fs::write(&file, &script.stdout).expect("write");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    // `complete -p pictl` names the function bash would call; call it the
    // way bash does: (command, word being completed, previous word).
    let program = format!(
        r#"source "$1" || exit 3
spec=$(complete -p pictl) || exit 4
fn=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<<"$spec")
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$fn" pictl "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" ")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(&file)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_their_flags() {
    let mut re = bash_complete(&["pictl", "re"]);
    re.sort();
    assert_eq!(re, ["reset", "restore"], "pictl re<TAB>");
    let flags = bash_complete(&["pictl", "apply", "--"]);
    assert!(
        flags.iter().any(|f| f == "--inventory"),
        "pictl apply --<TAB>: {flags:?}"
    );
    let reset = bash_complete(&["pictl", "reset", "--"]);
    assert!(reset.iter().any(|f| f == "--yes"), "{reset:?}");
    let shells = bash_complete(&["pictl", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|s| s == shell), "{shells:?}");
    }
}

#[test]
fn zsh_and_fish_completions_are_generated() {
    let zsh = pictl(&["completions", "zsh"]);
    assert_eq!(zsh.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef pictl"));
    let fish = pictl(&["completions", "fish"]);
    assert_eq!(fish.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c pictl"));
}

/// The subcommands `pictl --help` lists.
fn subcommands() -> Vec<String> {
    let help = String::from_utf8(pictl(&["--help"]).stdout).expect("utf-8");
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn man_page_is_roff_naming_every_subcommand() {
    let out = pictl(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let roff = String::from_utf8(out.stdout).expect("utf-8");
    assert!(roff.starts_with(".ie \\n(.g .ds Aq"), "{roff}");
    assert!(roff.contains(".TH pictl 1"), "{roff}");
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS"] {
        assert!(
            roff.contains(&format!(".SH {section}")),
            "{section}: {roff}"
        );
    }
    let subcommands = subcommands();
    assert!(subcommands.len() >= 8, "{subcommands:?}");
    for sub in &subcommands {
        assert!(
            roff.contains(&format!("pictl\\-{sub}")),
            "{sub} missing from the man page"
        );
    }
    // Every roff request line is a known macro: nothing leaked unescaped.
    for line in roff.lines().filter(|l| l.starts_with('.')) {
        let request = line[1..].split_whitespace().next().unwrap_or_default();
        assert!(
            [
                "ie", "el", "TH", "SH", "PP", "TP", "RS", "RE", "IP", "br", "B", "I", "nf", "fi"
            ]
            .contains(&request),
            "unexpected roff request: {line}"
        );
    }
    // groff renders it without a warning (tests/lab/install-deps.sh installs
    // groff-base; a missing groff is a failure, never a skip).
    {
        let mut child = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("groff (package groff-base, installed by tests/lab/install-deps.sh)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(roff.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("groff");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
    }
}

#[test]
fn man_dir_writes_a_page_per_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pictl(&["man", "--dir", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let main = std::fs::read_to_string(dir.path().join("pictl.1")).expect("pictl.1");
    assert!(main.contains(".SH SUBCOMMANDS"));
    for sub in subcommands() {
        let page = std::fs::read_to_string(dir.path().join(format!("pictl-{sub}.1")))
            .unwrap_or_else(|e| panic!("pictl-{sub}.1: {e}"));
        assert!(page.contains(&format!(".TH pictl-{sub} 1")), "{page}");
        assert!(page.contains(&format!("\\fBpictl {sub}\\fR")), "{page}");
    }
    let reset = std::fs::read_to_string(dir.path().join("pictl-reset.1")).expect("reset");
    assert!(reset.contains("\\-\\-yes"), "{reset}");
}

#[test]
fn version_tells_the_commit_and_the_agent_it_carries() {
    let out = pictl(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let version = env!("CARGO_PKG_VERSION");
    let commit = first
        .strip_prefix(&format!("pictl {version} (commit "))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    match head {
        // Built from this checkout (maybe a commit or two ago: only the
        // form is certain, and that git knows it).
        Some(_) => {
            assert!(
                commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
                "{commit}"
            );
            let known = Command::new("git")
                .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("git");
            assert!(
                known.success(),
                "{commit} is not a commit of this repository"
            );
        }
        None => assert_eq!(commit, "unknown"),
    }
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "agent: pictl-agent {} (report schema v{})",
                pictl_agent::VERSION,
                pictl_agent::report::REPORT_VERSION
            )
            .as_str()
        ),
        "{text}"
    );
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
    // Keep reading while it stops: a full pipe must not hold it up.
    let drain = std::thread::spawn(move || lines.count());
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("wait");
    drain.join().expect("drained");
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

#[test]
fn an_unreachable_node_alone_exits_4_with_plain_log_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = unreachable_inventory(dir.path());
    let out = pictl(&[
        "-vv",
        "plan",
        "-o",
        "json",
        "-i",
        inv.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json");
    assert!(report["nodes"][0]["unreachable"].is_string(), "{report:#}");
    // stderr is a pipe here: log lines carry no colour codes.
    assert!(
        stderr.contains("INFO") || stderr.contains("DEBUG"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn without_i_the_inventory_init_writes_is_used_when_present() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_pictl"))
            .arg("validate")
            .current_dir(dir.path())
            .env_remove("PICTL_INVENTORY")
            .output()
            .expect("run pictl")
    };
    let out = run();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inventory/playson.toml"),
        "{out:?}"
    );
    std::fs::write(dir.path().join("pictl.toml"), "[cluster]\nname = \"x\"\n").expect("write");
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pictl.toml:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ctrl_c_during_apply_exits_130_saying_so() {
    use std::io::Write;
    // A node that accepts TCP and never speaks SSH: apply waits on it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("known_hosts"), "").expect("known_hosts");
    std::fs::write(dir.path().join("id"), "").expect("key");
    let inv = dir.path().join("pictl.toml");
    let mut f = std::fs::File::create(&inv).expect("inventory");
    write!(
        f,
        "[cluster]\nname = \"c\"\nk3s_version = \"v1.32.5+k3s1\"\nstate_dir = \"state\"\n\n\
         [ssh]\nuser = \"pi\"\nport = {port}\nknown_hosts = \"known_hosts\"\nconnect_timeout = 60\n\n\
         [[nodes]]\nname = \"n1\"\naddress = \"127.0.0.1\"\nrole = \"server\"\n"
    )
    .expect("write");
    let child = command(&["apply", "-i", inv.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let (_conn, _) = silent.accept().expect("pictl connects");
    let pid = child.id().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("pictl: interrupted"), "{stderr}");
}

#[test]
fn log_format_json_writes_one_json_object_per_log_line_and_no_colour() {
    // A node whose port refuses: the connect is retried, and logged.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("known_hosts"), "").expect("known_hosts");
    let inv = dir.path().join("pictl.toml");
    std::fs::write(
        &inv,
        format!(
            "[cluster]\nname = \"c\"\nk3s_version = \"v1.32.5+k3s1\"\nstate_dir = \"state\"\n\n\
             [ssh]\nuser = \"pi\"\nport = {port}\nknown_hosts = \"known_hosts\"\nagent = true\n\n\
             [[nodes]]\nname = \"n1\"\naddress = \"127.0.0.1\"\nrole = \"server\"\n"
        ),
    )
    .expect("inventory");
    let out = command(&[
        "-vv",
        "--log-format",
        "json",
        "plan",
        "-i",
        inv.to_str().expect("utf-8"),
    ])
    .env_remove("RUST_LOG")
    .output()
    .expect("run pictl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let retried = logs
        .iter()
        .find(|v| v["fields"]["message"] == "connect failed; retrying")
        .unwrap_or_else(|| panic!("no retry logged:\n{stderr}"));
    assert_eq!(retried["level"], "DEBUG", "{retried}");
    assert_eq!(retried["fields"]["node"], "n1", "{retried}");
    assert!(retried["timestamp"].is_string(), "{retried}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in JSON logs:\n{stderr}"
    );
}
