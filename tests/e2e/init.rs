//! `pictl init` end to end, as the README's quick start runs it: init
//! against the lab's nodes (real sshd, host keys recorded only with
//! `--accept-new`), then `validate` and `apply` on the written inventory
//! with no edit, judged by kubectl and by a re-run that changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};

use pictl_e2e::pictl::{self, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};

const VERSION: &str = "v1.33.1+k3s1";
const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        init_records_the_real_host_keys_and_writes_an_inventory_that_validates,
        init_never_overwrites_and_refuses_unknown_keys_without_a_terminal,
        apply_converges_the_written_inventory_unedited_and_a_rerun_changes_nothing,
    ];
    harness::run(cases, LabSpec { nodes: 3, pi: &[] })
}

fn work(lab: &Lab) -> PathBuf {
    let dir = lab.dir().join("init-e2e");
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn inventory(lab: &Lab) -> PathBuf {
    work(lab).join("pictl.toml")
}

/// `pictl init` for the lab's nodes, as user `lab` with the lab's key.
fn init(lab: &Lab, out: &Path, known_hosts: &Path, extra: &[&str]) -> Output {
    let addresses: Vec<&str> = NODES
        .iter()
        .map(|n| lab.address(n).expect("address"))
        .collect();
    Command::new(pictl::build())
        .args(["init", "--nodes", &addresses.join(","), "--user", "lab"])
        .arg("--identity-file")
        .arg(lab.key())
        .arg("--known-hosts")
        .arg(known_hosts)
        .args(["--name", "initlab", "--k3s-version", VERSION])
        .args(["--mirror", lab.mirror_url()])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run pictl init")
}

/// pictl with the state directory inside the lab (never the tester's home).
fn pictl_cmd(lab: &Lab, args: &[&str]) -> Command {
    let mut c = pictl::command(pictl::build(), lab, &inventory(lab), args);
    c.env("XDG_STATE_HOME", work(lab).join("state"));
    c
}

/// `host key` pairs of a known_hosts file, by the address or name first.
fn keys(path: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let host = f[0].split(',').next().unwrap_or_default().to_string();
            (host, format!("{} {}", f[1], f[2]))
        })
        .collect();
    v.sort();
    v
}

fn init_records_the_real_host_keys_and_writes_an_inventory_that_validates(lab: &Lab) {
    // The lab's state dir outlives a run: start from no earlier inventory.
    let _ = std::fs::remove_dir_all(work(lab));
    lab.populate_mirror()
        .expect("populate the lab's K3s mirror");
    let known_hosts = work(lab).join("known_hosts");
    std::fs::write(&known_hosts, "").expect("empty known_hosts");
    let out = init(lab, &inventory(lab), &known_hosts, &["--accept-new"]);
    assert!(out.status.success(), "init failed: {}", text(&out));
    assert_eq!(
        keys(&known_hosts),
        keys(&lab.known_hosts()),
        "init must record exactly the nodes' own host keys"
    );
    let written = std::fs::read_to_string(inventory(lab)).expect("inventory");
    for want in [
        format!("k3s_version = \"{VERSION}\""),
        format!("mirror = \"{}\"", lab.mirror_url()),
        "allow_http_mirror = true".to_string(),
        "role = \"server\"".to_string(),
        "arch = \"amd64\"".to_string(),
    ] {
        assert!(written.contains(&want), "missing {want:?} in:\n{written}");
    }
    assert_eq!(written.matches("role = \"agent\"").count(), 2, "{written}");
    let validate = pictl_cmd(lab, &["validate"]).output().expect("validate");
    assert!(validate.status.success(), "validate: {}", text(&validate));
}

fn init_never_overwrites_and_refuses_unknown_keys_without_a_terminal(lab: &Lab) {
    let before = std::fs::read(inventory(lab)).expect("inventory");
    let known_hosts = work(lab).join("known_hosts");
    let again = init(lab, &inventory(lab), &known_hosts, &["--accept-new"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
        "{}",
        text(&again)
    );
    assert_eq!(std::fs::read(inventory(lab)).expect("inventory"), before);
    let fresh = work(lab).join("known_hosts.fresh");
    std::fs::write(&fresh, "").expect("empty");
    let other = work(lab).join("other.toml");
    let refused = init(lab, &other, &fresh, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("no terminal to confirm") && err.contains("SHA256:"),
        "{}",
        text(&refused)
    );
    assert!(!other.exists(), "nothing written when a key is refused");
    assert_eq!(std::fs::read_to_string(&fresh).expect("read"), "");
}

fn apply_converges_the_written_inventory_unedited_and_a_rerun_changes_nothing(lab: &Lab) {
    let (code, v, out) = pictl::apply_json(pictl_cmd(lab, &[]));
    assert_eq!(code, 0, "apply failed: {v:#}\n{}", text(&out));
    let kubeconfig = work(lab)
        .join("state")
        .join("pictl")
        .join("initlab")
        .join("kubeconfig");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let table = loop {
        let t = pictl::kubectl(&kubeconfig, &["get", "nodes", "--no-headers"]);
        let ready = t
            .lines()
            .filter(|l| l.contains(" Ready ") && l.ends_with(VERSION))
            .count();
        if ready == NODES.len() || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    for n in NODES {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(n) && l.contains(" Ready ") && l.ends_with(VERSION)),
            "{n} not Ready on {VERSION}:\n{table}"
        );
    }
    let (code, v, out) = pictl::apply_json(pictl_cmd(lab, &[]));
    assert_eq!(code, 0, "re-run failed: {v:#}\n{}", text(&out));
    for n in NODES {
        let changed = pictl::steps(&v, n, "changed");
        assert!(
            changed.is_empty(),
            "a re-run changed {changed:?} on {n}: {v:#}"
        );
    }
}
