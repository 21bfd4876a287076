//! Running the product from e2e tests: building `pictl` (and the host agent)
//! once per test binary, running it against a lab's inventory with the
//! lab's own artifact cache, reading its JSON report, and asking real
//! `kubectl` through the kubeconfig pictl wrote. Shared by every e2e suite so
//! each one judges pictl the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::Lab;

/// The plain kubectl client the suites judge with (the dispatcher at
/// /usr/bin/kubectl asks the server's /version first).
pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

/// Where cargo puts this checkout's builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::lab::repo_root().join("target"), PathBuf::from)
}

/// Builds `pictl` and the host's `pictl-agent` (debug) once per process and
/// returns pictl's path; pictl finds the agent beside itself.
pub fn build() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "pictl", "--bin", "pictl"])
            .args(["-p", "pictl-agent", "--bin", "pictl-agent"])
            .current_dir(crate::lab::repo_root())
            .status()
            .expect("cargo build pictl");
        assert!(status.success(), "building pictl failed");
        target_dir().join("debug").join("pictl")
    })
}

/// `pictl ARGS -i INVENTORY` with the lab's artifact cache, no RUST_LOG and
/// no stdin, as CI runs it.
pub fn command(bin: &Path, lab: &Lab, inventory: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .arg("-i")
        .arg(inventory)
        .env("PICTL_CACHE_DIR", lab.dir().join("pictl-cache"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// `pictl apply --output json`: exit code, report, and the raw output.
pub fn apply_json(mut apply: Command) -> (i32, Value, Output) {
    let out = apply
        .args(["apply", "--output", "json"])
        .output()
        .expect("run pictl");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(&out)));
    (out.status.code().unwrap_or(-1), v, out)
}

/// Both streams of a finished command, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One node's entry in an apply report.
pub fn node<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("node {name} not in the report: {report:#}"))
}

/// The steps of one node that ended with `status` (changed, ok, failed…).
pub fn steps(report: &Value, name: &str, status: &str) -> Vec<String> {
    node(report, name)["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["status"] == status)
                .filter_map(|s| s["step"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Real kubectl through a kubeconfig, without stdin; its output as it is.
pub fn kubectl_output(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kubectl")
}

/// Real kubectl through a kubeconfig; its stdout, or a panic with both streams.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl_output(kubeconfig, args);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node's current boot: it changes when the node reboots.
pub fn boot_id(lab: &Lab, node: &str) -> String {
    lab.ssh_ok(node, "root", "cat /proc/sys/kernel/random/boot_id")
        .expect("boot id")
}

/// A playbook with one Deployment of `image` in namespace `ns`, and the
/// lab's inventory with it as its workload; returns that inventory.
pub fn one_image_inventory(lab: &Lab, ns: &str, image: &str) -> PathBuf {
    let dir = lab.dir().join("preflight").join(ns);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("app.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: {ns}\n\
             spec:\n  selector:\n    matchLabels: {{app: app}}\n  template:\n    metadata:\n      labels: {{app: app}}\n\
             \x20   spec:\n      containers:\n      - name: app\n        image: {image}\n"
        ),
    )
    .expect("write playbook");
    let base = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let inv = lab.dir().join("inventory-preflight.toml");
    std::fs::write(
        &inv,
        format!("{base}\n[workload]\nplaybooks = [\"{}\"]\n", dir.display()),
    )
    .expect("write");
    inv
}

/// [`command`] for this checkout's `pictl` against the lab, with this
/// checkout's simulator in the lab's mirror (filled once per process: a
/// mirror left by an earlier run may hold an older one).
pub fn lab_command(lab: &Lab, inventory: &Path, args: &[&str]) -> Command {
    static MIRROR: std::sync::Once = std::sync::Once::new();
    MIRROR.call_once(|| {
        lab.populate_mirror()
            .expect("populate the lab's K3s mirror")
    });
    command(build(), lab, inventory, args)
}

/// [`lab_command`] run to completion.
pub fn run(lab: &Lab, inventory: &Path, args: &[&str]) -> Output {
    lab_command(lab, inventory, args)
        .output()
        .expect("run pictl")
}

/// The kubeconfig pictl wrote for the lab (in its controller state).
pub fn lab_kubeconfig(lab: &Lab) -> PathBuf {
    lab.dir().join("state").join("kubeconfig")
}

/// [`kubectl`] through [`lab_kubeconfig`].
pub fn lab_kubectl(lab: &Lab, args: &[&str]) -> String {
    kubectl(&lab_kubeconfig(lab), args)
}

/// The lab's kernel is the host's (`uname -r`).
pub fn kernel_release() -> String {
    let out = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .expect("uname -r");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What a Pi with this kernel needs on its command line for the memory
/// cgroup: `cgroup_enable=memory`, and `cgroup_memory=1` before 6.12, which
/// no longer knows it (raspberrypi/linux#6980).
pub fn memory_flags() -> String {
    let release = kernel_release();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) >= (6, 12) {
        "cgroup_enable=memory".into()
    } else {
        "cgroup_memory=1 cgroup_enable=memory".into()
    }
}

/// Every process's argv on a node, sampled as fast as one `grep` over
/// `/proc/*/cmdline` goes (milliseconds a round), from [`ArgvSampler::start`]
/// to [`ArgvSampler::stop`]: promises about secrets in argv are judged on
/// the short-lived processes of a run, not on what is left after it.
pub struct ArgvSampler<'l> {
    lab: &'l Lab,
    node: String,
    child: std::process::Child,
}

impl<'l> ArgvSampler<'l> {
    pub fn start(lab: &'l Lab, node: &str) -> Self {
        let script = "rm -f /run/argv-stop; \
            while [ ! -e /run/argv-stop ]; do grep -a -H '' /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; done \
            | awk '!seen[$0]++' > /run/argv-samples; echo done";
        let child = lab
            .ssh_command(node, "root")
            .expect("ssh")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the sampler");
        // The first round is under way once the file exists.
        for _ in 0..100 {
            if lab
                .ssh(node, "root", "test -e /run/argv-samples")
                .is_ok_and(|o| o.status.success())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            lab,
            node: node.to_owned(),
            child,
        }
    }

    /// Stops sampling; every distinct `/proc/PID/cmdline:argv` line seen.
    pub fn stop(mut self) -> Vec<String> {
        self.lab
            .ssh_ok(&self.node, "root", "touch /run/argv-stop")
            .expect("stop the sampler");
        let _ = self.child.wait();
        self.lab
            .ssh_ok(
                &self.node,
                "root",
                "cat /run/argv-samples; rm -f /run/argv-samples /run/argv-stop",
            )
            .expect("samples")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
