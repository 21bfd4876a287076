//! Nothing lost: `pictl backup` takes the cluster's datastore to the
//! controller, and `pictl restore` puts it back. The drill, on a
//! single-server (SQLite) lab: back up, delete an object and make another,
//! restore: the first is back, the second gone, every node Ready, and the
//! next `apply` changes nothing. A damaged backup is refused before
//! anything on a node is stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::Instant;

use pictl_e2e::pictl::{self, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![a_backup_restores_the_cluster_as_it_was,];
    harness::run(cases, LabSpec { nodes: 3, pi: &[] })
}

fn pictl(lab: &Lab, args: &[&str]) -> Output {
    pictl::run(lab, &lab.inventory(), args)
}

fn kubectl(lab: &Lab, args: &[&str]) -> Output {
    Command::new(pictl::KUBECTL)
        .arg("--kubeconfig")
        .arg(pictl::lab_kubeconfig(lab))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl")
}

fn kubectl_ok(lab: &Lab, args: &[&str]) -> String {
    let out = kubectl(lab, args);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
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
