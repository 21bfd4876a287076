//! `k3s etcd-snapshot save` as K3s takes it (pkg/etcd/snapshot.go
//! `Snapshot`): only from a running server on embedded etcd, named
//! `<name>-<node>-<unix>` under `server/db/snapshots`, holding what the
//! datastore held; and the simulator's broken-release fault.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use super::Sim;
use pictl_e2e::sim::{Proc, seq};

/// `k3s etcd-snapshot save ARGS` against `sim`'s data dir; (status, log).
fn save(sim: &Sim, args: &[&str]) -> (i32, String) {
    let data = sim.path("data");
    let port = sim.port.to_string();
    let out = Command::new(pictl_e2e::k3s::sim_bin())
        .args(["etcd-snapshot", "save", "--config"])
        .arg(sim.path("config.yaml"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--https-listen-port", &port])
        .args(args)
        .env_remove("K3S_CONFIG_FILE")
        .output()
        .expect("run k3s etcd-snapshot");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), log)
}

pub fn etcd_snapshots_like_k3s() {
    let config = "token: s3cret-token\nnode-name: simserver\ncluster-init: true\n";
    let sim = Sim::start(config, &[]);
    sim.k(&[
        "create",
        "configmap",
        "kept-in-snapshot",
        "--from-literal=a=b",
    ]);
    let (status, log) = save(&sim, &["--name", "pre-upgrade-v1.33.1-k3s1"]);
    assert_eq!(status, 0, "{log}");
    let dir = sim.path("data/server/db/snapshots");
    let prefix = format!("{}/pre-upgrade-v1.33.1-k3s1-simserver-", dir.display());
    let line = log
        .lines()
        .find(|l| l.contains("Saving etcd snapshot to "))
        .unwrap_or_else(|| panic!("no saving line: {log}"));
    let path = line
        .split("Saving etcd snapshot to ")
        .nth(1)
        .expect("path")
        .trim_end_matches('"')
        .to_string();
    let stamp = path
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{path}"));
    assert!(
        stamp.len() >= 10 && stamp.bytes().all(|b| b.is_ascii_digit()),
        "{path}"
    );
    let meta = std::fs::metadata(&path).expect("snapshot file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&path).expect("read");
    assert!(
        String::from_utf8_lossy(&bytes).contains("kept-in-snapshot"),
        "the snapshot lacks the ConfigMap"
    );

    // K3s asks the running etcd first: a stopped server has no snapshot.
    let Sim {
        dir,
        port,
        mut server,
    } = sim;
    server.stop();
    let stopped = Sim { dir, port, server };
    let (status, log) = save(&stopped, &[]);
    assert_eq!(status, 1, "{log}");
    assert!(
        log.contains("failed to check etcd status for snapshot"),
        "{log}"
    );
}

pub fn sqlite_servers_have_no_etcd_snapshots() {
    let sim = Sim::start("token: s3cret-token\nnode-name: simserver\n", &[]);
    let (status, log) = save(&sim, &[]);
    assert_eq!(status, 1, "{log}");
    let want = format!(
        "etcd database not found in {}",
        sim.path("data/server").display()
    );
    assert!(log.contains(&want), "{want:?} not in {log}");
    assert!(log.contains("level=fatal"), "{log}");
    assert!(!sim.path("data/server/db/snapshots").exists());
}

pub fn a_release_listed_as_broken_fails_at_every_start() {
    let sim = Sim::start("token: s3cret-token\nnode-name: simserver\n", &[]);
    let root = sim.path("root-server");
    std::fs::create_dir_all(root.join("etc/k3s-sim")).expect("dir");
    let out = Command::new(pictl_e2e::k3s::sim_bin())
        .arg("--version")
        .output()
        .expect("k3s --version");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let version = text
        .split_whitespace()
        .nth(2)
        .expect("k3s version X")
        .to_string();
    std::fs::write(
        root.join("etc/k3s-sim/broken-releases"),
        format!("{version}\n"),
    )
    .expect("w");
    let Sim {
        dir, mut server, ..
    } = sim;
    server.stop();
    let data = dir.0.join("data");
    let mut again = Proc::spawn(
        &[
            "server",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--config",
            "/dev/null",
        ],
        &[("K3S_SIM_NODE_ROOT", root.to_str().expect("utf8"))],
        dir.0.join(format!("broken-{}.log", seq())),
    );
    assert_eq!(
        again.wait_exit(Duration::from_secs(20)),
        1,
        "{}",
        again.log()
    );
    assert!(again.log().contains("simulator fault"), "{}", again.log());
    assert!(!again.log().contains("Kube API server is now running"));
}

pub fn cluster_reset_restores_a_snapshot_as_k3s_does() {
    let config = "token: s3cret-token\nnode-name: simserver\ncluster-init: true\n";
    let sim = Sim::start(config, &[]);
    sim.k(&["create", "configmap", "before", "--from-literal=a=b"]);
    let (status, log) = save(&sim, &["--name", "drill"]);
    assert_eq!(status, 0, "{log}");
    let path = log
        .split("Saving etcd snapshot to ")
        .nth(1)
        .and_then(|r| r.split(['"', '\n']).next())
        .expect("path")
        .to_string();
    sim.k(&["create", "configmap", "after", "--from-literal=a=b"]);
    let Sim {
        dir,
        port,
        mut server,
    } = sim;
    server.stop();
    let data = dir.0.join("data");
    let cfg = dir.0.join("config.yaml");
    let reset = |restore: &str| {
        let port_s = port.to_string();
        let arg = format!("--cluster-reset-restore-path={restore}");
        let args = [
            "server",
            "--config",
            cfg.to_str().expect("utf8"),
            "--data-dir",
            data.to_str().expect("utf8"),
            "--https-listen-port",
            &port_s,
            "--bind-address",
            "127.0.0.1",
            "--cluster-reset",
            &arg,
        ];
        let mut p = Proc::spawn(&args, &[], dir.0.join(format!("reset-{}.log", seq())));
        let code = p.wait_exit(Duration::from_secs(30));
        (code, p.log())
    };
    let (code, log) = reset("/nonexistent/snap");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("etcd: snapshot path does not exist: /nonexistent/snap"),
        "{log}"
    );
    let (code, log) = reset(&path);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now"),
        "{log}"
    );
    let old: Vec<_> = std::fs::read_dir(data.join("server/db"))
        .expect("db dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("etcd-old-"))
        .collect();
    assert_eq!(old.len(), 1, "the old etcd dir is kept aside");
    let config = std::fs::read_to_string(&cfg).expect("config");
    let sim = Sim::start_in(dir, port, &config, &[]);
    assert!(
        sim.kubectl(&["get", "configmap", "before"])
            .status
            .success()
    );
    let after = sim.kubectl(&["get", "configmap", "after"]);
    assert!(
        !after.status.success(),
        "an object made after the snapshot survived"
    );
}
