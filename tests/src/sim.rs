//! The K3s simulator as the host-side cases drive it (no root, no lab):
//! scratch directories, node roots with a cgroup v2 root, `k3s` processes we
//! started with their logs, and the kubectl that judges them. Shared by the
//! `sim` and `ha` suites.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The cgroup v2 controllers of a host where K3s's checks all pass.
pub const ALL_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A number not handed out before in this process, for unique file names.
pub fn seq() -> usize {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// A scratch directory of this process, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "k3s-sim-e2e-{}-{}-{tag}",
            std::process::id(),
            seq()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node root for K3S_SIM_NODE_ROOT: a cgroup v2 root offering `controllers`.
pub fn node_root(dir: &Path, controllers: &str) -> PathBuf {
    let cg = dir.join("sys/fs/cgroup");
    std::fs::create_dir_all(&cg).expect("node root");
    std::fs::write(cg.join("cgroup.controllers"), format!("{controllers}\n")).expect("controllers");
    dir.to_path_buf()
}

/// A loopback port free when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A k3s process we started, its output in `log`; killed (by its own pid)
/// on drop.
pub struct Proc {
    pub child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts the simulator with `args` and `env` (secrets go there, never
    /// in argv); none of K3s's own variables leak in from ours.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(crate::k3s::sim_bin());
        cmd.args(args)
            .env_remove("K3S_TOKEN")
            .env_remove("K3S_URL")
            .env_remove("K3S_CONFIG_FILE")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn k3s"),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle`; panics with the log if the
    /// process exits first or `within` passes.
    pub fn wait_log(&mut self, needle: &str, within: Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.log().contains(needle) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "k3s exited ({st}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "k3s did not log {needle:?} within {within:?}:\n{}",
            self.log()
        );
    }

    /// Waits for the process to exit by itself; its status code.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("k3s still running after {within:?}:\n{}", self.log());
    }

    /// SIGTERM like systemd, by our child's pid, and wait for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.wait_exit(Duration::from_secs(10));
    }

    /// SIGKILL, by our child's pid.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The kubectl that judges the simulator: `KUBECTL`, else the pinned 1.32
/// client, else the one on PATH.
pub fn kubectl_bin() -> String {
    if let Ok(k) = std::env::var("KUBECTL") {
        return k;
    }
    let pinned = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";
    if Path::new(pinned).exists() {
        pinned.into()
    } else {
        "kubectl".into()
    }
}

/// kubectl with `kubeconfig` and its own discovery cache.
pub fn kubectl_with(kubeconfig: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl")
}

/// The stdout of a kubectl run that must have succeeded; otherwise a panic
/// with its stderr and `context` (where it went, the server's log).
pub fn must_succeed(args: &[&str], out: &Output, context: &str) -> String {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}\n{}\n{context}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
