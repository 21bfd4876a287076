//! Nothing lost: `pictl backup` takes the cluster's datastore to the
//! controller, and `pictl restore` puts it back. The drill, on a
//! single-server (SQLite) lab: back up, delete an object and make another,
//! restore: the first is back, the second gone, every node Ready, and the
//! next `apply` changes nothing. A damaged backup is refused before
//! anything on a node is stopped. Certificates inside K3s's renewal
//! window are renewed by `apply`, one node at a time. A board taken out
//! (its entry deleted) is left until `apply --prune-nodes` removes it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::Instant;

use pictl_e2e::pictl::{self, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        a_backup_restores_the_cluster_as_it_was,
        certificates_inside_k3s_window_are_renewed_one_node_at_a_time,
        a_board_taken_out_is_removed_by_prune_nodes,
    ];
    harness::run(cases, LabSpec { nodes: 3, pi: &[] })
}

fn pictl(lab: &Lab, args: &[&str]) -> Output {
    pictl::run(lab, &lab.inventory(), args)
}

fn kubectl(lab: &Lab, args: &[&str]) -> Output {
    pictl::kubectl_output(&pictl::lab_kubeconfig(lab), args)
}

fn kubectl_ok(lab: &Lab, args: &[&str]) -> String {
    pictl::kubectl(&pictl::lab_kubeconfig(lab), args)
}

fn exists(lab: &Lab, cm: &str) -> bool {
    kubectl(lab, &["get", "configmap", cm, "-n", "default"])
        .status
        .success()
}

/// K3s's main pid on node1 (unchanged while nothing stopped it).
fn k3s_pid(lab: &Lab) -> String {
    lab.ssh_ok("node1", "root", "systemctl show k3s -p MainPID")
        .expect("systemctl show")
}

fn a_backup_restores_the_cluster_as_it_was(lab: &Lab) {
    let _ = std::fs::remove_dir_all(lab.dir().join("state"));
    let out = pictl(lab, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    kubectl_ok(lab, &["create", "configmap", "kept", "--from-literal=a=b"]);

    let started = Instant::now();
    let out = pictl(lab, &["backup"]);
    let took_backup = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        file.starts_with(lab.dir().join("state")),
        "{}",
        file.display()
    );
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(
        name.starts_with("lab-") && name.ends_with(".snapshot"),
        "{name}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{name}.sha256"))
        .current_dir(file.parent().expect("dir"))
        .output()
        .expect("sha256sum");
    assert!(check.status.success(), "{}", text(&check));
    // The token rides along for the restore, never on the terminal.
    assert!(!text(&out).contains("K10"), "{}", text(&out));

    // After the backup: one object deleted, another made.
    kubectl_ok(lab, &["delete", "configmap", "kept"]);
    kubectl_ok(lab, &["create", "configmap", "later", "--from-literal=a=b"]);

    // A damaged copy is refused by name, nothing stopped.
    let pid = k3s_pid(lab);
    let bad = lab.dir().join("damaged.snapshot");
    let mut bytes = std::fs::read(&file).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bad, &bytes).expect("write");
    std::fs::copy(sum_of(&file), sum_of(&bad)).expect("sum");
    let out = restore(lab, &bad, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the file changed or is damaged"),
        "{}",
        text(&out)
    );
    assert_eq!(k3s_pid(lab), pid, "K3s was stopped for a damaged backup");

    // Without --yes: what it would do, exit 2, nothing changed.
    let out = restore(lab, &file, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("would restore"), "{}", text(&out));
    assert!(!exists(lab, "kept"));
    assert_eq!(k3s_pid(lab), pid);

    let started = Instant::now();
    let out = restore(lab, &file, true);
    let took_restore = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(exists(lab, "kept"), "the deleted object is not back");
    assert!(
        !exists(lab, "later"),
        "an object made after the backup survived"
    );
    let nodes = kubectl_ok(lab, &["get", "nodes", "--no-headers"]);
    assert_eq!(nodes.matches(" Ready ").count(), 3, "{nodes}");
    let out = pictl(lab, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let recap = text(&out);
    assert_eq!(recap.matches("changed=0 ").count(), 3, "{recap}");
    eprintln!(
        "backup drill (SQLite, 3 nodes): backup {:.1} s, restore to every node Ready {:.1} s",
        took_backup.as_secs_f64(),
        took_restore.as_secs_f64()
    );
}

fn sum_of(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sha256", file.display()))
}

fn restore(lab: &Lab, file: &Path, yes: bool) -> Output {
    let f = file.to_str().expect("utf8");
    let mut args = vec!["restore", f];
    if yes {
        args.push("--yes");
    }
    pictl(lab, &args)
}

/// When `unit`'s main process on `node` started (the host's monotonic
/// clock, which every lab node shares), microseconds.
fn started_at(lab: &Lab, node: &str, unit: &str) -> u64 {
    let cmd = format!("systemctl show {unit} -p ExecMainStartTimestampMonotonic --value");
    let out = lab.ssh_ok(node, "root", &cmd).expect("systemctl show");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{node}: {out:?}"))
}

/// Days left on each node's first K3s certificate, as `pictl status` reads them.
fn days_left(lab: &Lab) -> Vec<(String, i64)> {
    let out = pictl(lab, &["status", "--output", "json"]);
    let rows: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let rows = rows.as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|r| {
            let days = r["certificates"]["days_left"].as_i64();
            let name = r["name"].as_str().unwrap_or_default().to_string();
            (name, days.unwrap_or_else(|| panic!("no certificates: {r}")))
        })
        .collect()
}

/// Days left as `node`'s health agent daemon (unprivileged) exports them,
/// once they satisfy `want` (its report is cached for a few seconds).
fn agent_days(lab: &Lab, node: &str, want: impl Fn(i64) -> bool) -> i64 {
    let cmd = "curl -s http://127.0.0.1:9750/metrics | sed -n 's/^pictl_node_k3s_certificate_days_left //p'";
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = lab.ssh_ok(node, "root", cmd).unwrap_or_default();
        match out.trim().parse::<i64>().ok() {
            Some(d) if want(d) => return d,
            _ if Instant::now() > deadline => panic!("{node}'s agent exports {out:?}"),
            _ => std::thread::sleep(std::time::Duration::from_secs(1)),
        }
    }
}

fn certificates_inside_k3s_window_are_renewed_one_node_at_a_time(lab: &Lab) {
    let out = pictl(lab, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Certificates signed for 30 days, as K3s signs them with
    // CATTLE_NEW_SIGNED_CERT_EXPIRATION_DAYS: node1's client certificate
    // made again at its start, node2's kubelet ones at its agent's start;
    // then the variable is gone, so the next start signs for a year.
    let short = "mkdir -p /etc/systemd/system/k3s.service.d && \
        printf '[Service]\\nEnvironment=CATTLE_NEW_SIGNED_CERT_EXPIRATION_DAYS=30\\n' \
          >/etc/systemd/system/k3s.service.d/short-certs.conf && \
        rm -f /var/lib/rancher/k3s/server/tls/client-admin.crt /var/lib/rancher/k3s/server/tls/client-admin.key && \
        systemctl daemon-reload && systemctl restart k3s";
    lab.ssh_ok("node1", "root", short)
        .expect("short certificates");
    lab.ssh_ok("node2", "root", "systemctl restart k3s-agent")
        .expect("node2");
    let undo = "rm /etc/systemd/system/k3s.service.d/short-certs.conf && systemctl daemon-reload";
    lab.ssh_ok("node1", "root", undo).expect("undo");
    let days = days_left(lab);
    assert!(
        days.iter().all(|(n, d)| (n == "node3") == (*d > 300)),
        "{days:?}"
    );
    let node3 = started_at(lab, "node3", "k3s-agent");
    // The agents' daemons know it too (K3s's drop-in noted it at its start).
    agent_days(lab, "node1", |d| d < 30);
    agent_days(lab, "node2", |d| d < 30);

    let out = pictl(lab, &["status"]);
    assert!(
        text(&out).contains("inside K3s's 120-day renewal window"),
        "{}",
        text(&out)
    );
    let out = pictl(lab, &["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for part in [
        "renewed by a restart of K3s (node 1 of 2, servers first, one at a time)",
        "renewed by a restart of K3s (node 2 of 2, servers first, one at a time)",
        "(29 days left)",
    ] {
        assert!(text(&out).contains(part), "{part:?} not in {}", text(&out));
    }

    let started = Instant::now();
    let out = pictl(lab, &["apply"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let days = days_left(lab);
    assert!(days.iter().all(|(_, d)| *d > 300), "{days:?}");
    agent_days(lab, "node1", |d| d > 300);
    // The server first, then the agent; node3 (outside the window) untouched.
    let (node1, node2) = (
        started_at(lab, "node1", "k3s"),
        started_at(lab, "node2", "k3s-agent"),
    );
    assert!(node1 < node2, "node2 restarted before node1");
    assert_eq!(
        started_at(lab, "node3", "k3s-agent"),
        node3,
        "node3 restarted"
    );
    let nodes = kubectl_ok(lab, &["get", "nodes", "--no-headers"]);
    assert_eq!(nodes.matches(" Ready ").count(), 3, "{nodes}");
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");
    // The renewed admin kubeconfig is already on the controller.
    let out = pictl(lab, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        text(&out).matches("changed=0 ").count(),
        3,
        "{}",
        text(&out)
    );
    eprintln!(
        "certificate drill (2 of 3 nodes inside the window): renewed in {:.1} s",
        took.as_secs_f64()
    );
}

fn a_board_taken_out_is_removed_by_prune_nodes(lab: &Lab) {
    let out = pictl(lab, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // node3 taken out for good: its K3s stopped, its entry deleted.
    lab.ssh_ok("node3", "root", "systemctl stop k3s-agent")
        .expect("stop node3");
    let all = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let kept: Vec<&str> = all
        .split("\n[[nodes]]")
        .filter(|block| !block.contains("name = \"node3\""))
        .collect();
    let inv = lab.dir().join("without-node3.toml");
    std::fs::write(&inv, kept.join("\n[[nodes]]")).expect("write inventory");
    let run = |args: &[&str]| pictl::run(lab, &inv, args);

    let out = run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--prune-nodes"), "{}", text(&out));
    kubectl_ok(lab, &["get", "node", "node3"]);
    let out = run(&["plan", "--prune-nodes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cordoned, drained, deleted"),
        "{}",
        text(&out)
    );
    kubectl_ok(lab, &["get", "node", "node3"]);

    let started = Instant::now();
    let out = run(&["apply", "--prune-nodes"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!kubectl(lab, &["get", "node", "node3"]).status.success());
    let password = [
        "get",
        "secret",
        "-n",
        "kube-system",
        "node3.node-password.k3s",
    ];
    assert!(!kubectl(lab, &password).status.success());
    let nodes = kubectl_ok(lab, &["get", "nodes", "--no-headers"]);
    assert_eq!(nodes.matches(" Ready ").count(), 2, "{nodes}");
    let out = run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        text(&out).matches("changed=0 ").count(),
        2,
        "{}",
        text(&out)
    );
    eprintln!(
        "scale-down drill (node3 taken out): pruned in {:.1} s",
        took.as_secs_f64()
    );
}
