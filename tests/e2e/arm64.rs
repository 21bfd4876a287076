//! arm64 end to end on a mixed lab: node1 (amd64, server), node2 (amd64,
//! agent) and node3 (real arm64 Debian userland under qemu-user, presenting a
//! Raspberry Pi). What pictl is for: it learns node3's arch from the node's
//! own `uname -m`, installs `k3s-arm64` (a real aarch64 build of the
//! simulator, checked against `sha256sum-arm64.txt`) and the arm64 health
//! agent found with no `[agent] binaries` entry, and refuses an amd64-only
//! image for node3 before anything is applied.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pictl_e2e::pictl::{self, boot_id, kernel_release, memory_flags, steps, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};
use serde_json::Value;

mod arm64_pi;
use arm64_pi::a_pi_with_memory_on_and_no_cgroup_flags_is_left_untouched;
mod arm64_quickstart;
use arm64_quickstart::the_readme_quick_start_from_a_fresh_clone_gives_every_arch_its_agent;

const VERSION: &str = "v1.32.5+k3s1";
const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        arm64_node_runs_real_aarch64_userland_with_working_sudo,
        mirror_serves_real_arm64_and_armhf_simulators_with_their_checksums,
        apply_detects_arm64_and_installs_k3s_arm64_and_the_arm64_agent,
        kubectl_shows_node3_as_arm64,
        second_apply_on_the_mixed_lab_changes_nothing,
        a_pi_with_memory_on_and_no_cgroup_flags_is_left_untouched,
        status_shows_each_nodes_arch_and_health,
        image_preflight_refuses_an_amd64_only_image_for_the_arm64_node,
        a_pictl_without_an_arm64_agent_skips_it_naming_how_to_build_it,
        arm64_node_survives_reboot_stop_and_start,
        up_refuses_an_unknown_arch_or_node_and_leaves_the_lab_running,
        // Last: it starts by resetting the suite's cluster, and the Pi's
        // cmdline.txt flag it leaves would change the first apply above.
        the_readme_quick_start_from_a_fresh_clone_gives_every_arch_its_agent,
    ];
    harness::run_arch(
        cases,
        LabSpec {
            nodes: 3,
            pi: &["node3"],
        },
        &[("node3", "arm64")],
    )
}

/// `pictl` (debug) with the agents for amd64 and arm64 beside it, found by
/// pictl itself (the inventory names no agent binary): the arm64 one as
/// `dist.sh` lays out a release (`pictl-agent-arm64`, cross-built static by
/// `dist.sh --build`), the amd64 one as a `cargo build` leaves it
/// (`pictl-agent`: the host's own build, the only dynamically linked agent
/// pictl accepts). Copied out of the shared target dir at once, so a
/// concurrent build of another checkout cannot swap them.
fn pictl_bin(lab: &Lab) -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = pictl_e2e::lab::repo_root();
        let started = Instant::now();
        let out = Command::new(root.join("dist.sh"))
            .args(["--build", "arm64", "pictl-agent", "pictl-agent"])
            .stderr(Stdio::inherit())
            .output()
            .expect("dist.sh --build arm64");
        assert!(
            out.status.success(),
            "cross-building the arm64 agent failed"
        );
        let arm64_agent = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        eprintln!(
            "arm64 agent: {} ({:.1} s)",
            arm64_agent.display(),
            started.elapsed().as_secs_f64()
        );
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "pictl", "--bin", "pictl"])
            .args(["-p", "pictl-agent", "--bin", "pictl-agent"])
            .current_dir(&root)
            .status()
            .expect("cargo build pictl");
        assert!(status.success(), "building pictl failed");
        let bin = lab.dir().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        let debug = pictl::target_dir().join("debug");
        for (from, to) in [
            (debug.join("pictl"), "pictl"),
            (debug.join("pictl-agent"), "pictl-agent"),
            (arm64_agent, "pictl-agent-arm64"),
        ] {
            std::fs::copy(&from, bin.join(to))
                .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        }
        bin.join("pictl")
    })
}

/// Lays out the lab's K3s mirror once per run (mirror.sh is idempotent, and a
/// mirror left by an earlier run may hold an older simulator).
fn populate_mirror(lab: &Lab) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let started = Instant::now();
        let script = pictl_e2e::lab::repo_root()
            .join("tests")
            .join("k3s-sim")
            .join("mirror.sh");
        // A missing aarch64 simulator must fail this test, not be replaced
        // by the host build stamped arm64.
        let status = Command::new(script)
            .arg(lab.mirror_dir())
            .env("PICTL_MIRROR_REAL_ARCHES", "arm64")
            .stdin(Stdio::null())
            .status()
            .expect("mirror.sh");
        assert!(status.success(), "populating the mirror failed");
        eprintln!(
            "mirror (with the aarch64 simulator): {:.1} s",
            started.elapsed().as_secs_f64()
        );
    });
}

fn pictl(lab: &Lab, inventory: &Path, args: &[&str]) -> Output {
    populate_mirror(lab);
    pictl::command(pictl_bin(lab), lab, inventory, args)
        .output()
        .expect("run pictl")
}

fn apply_json(lab: &Lab, inventory: &Path) -> (i32, Value, Output) {
    populate_mirror(lab);
    pictl::apply_json(pictl::command(pictl_bin(lab), lab, inventory, &[]))
}

fn kubectl(lab: &Lab, args: &[&str]) -> String {
    pictl::lab_kubectl(lab, args)
}

fn ensure_converged(lab: &Lab) {
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "apply failed: {v:#}\n{}", text(&out));
}

/// The ELF machine of a file on a node, as `file` would say it, from the
/// header bytes (the minbase image has no `file`).
fn elf_machine(lab: &Lab, node: &str, path: &str) -> String {
    let hex = lab
        .ssh_ok(node, "root", &format!("od -An -tx1 -j18 -N2 {path}"))
        .expect("od");
    match hex.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["b7", "00"] => "aarch64".into(),
        ["3e", "00"] => "x86_64".into(),
        other => format!("{other:?}"),
    }
}

/// The ELF machine of a file on the host.
fn host_elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    u16::from_le_bytes([bytes[18], bytes[19]])
}

fn mirror_serves_real_arm64_and_armhf_simulators_with_their_checksums(lab: &Lab) {
    populate_mirror(lab);
    let dir = lab.mirror_dir().join(VERSION);
    // EM_AARCH64 and EM_ARM: real builds, not the host binary stamped.
    for (file, sums, machine) in [
        ("k3s-arm64", "sha256sum-arm64.txt", 183),
        ("k3s-armhf", "sha256sum-arm.txt", 40),
    ] {
        assert_eq!(host_elf_machine(&dir.join(file)), machine, "{file}");
        let sums = std::fs::read_to_string(dir.join(sums)).expect("checksum file");
        let out = Command::new("sha256sum")
            .arg(dir.join(file))
            .output()
            .expect("sha256sum");
        let got = String::from_utf8_lossy(&out.stdout);
        let got = got.split_whitespace().next().unwrap_or_default();
        // As a real release's: one line per file (the airgap archive too).
        let line = format!("{got}  {file}");
        assert!(sums.lines().any(|l| l == line), "{file}: {sums}");
    }
    // The armv7 build runs (under qemu-arm on this host) and knows its release.
    let qemu_arm = Path::new("/usr/bin/qemu-arm-static");
    assert!(
        qemu_arm.is_file(),
        "qemu-arm-static missing (tests/lab/install-deps.sh)"
    );
    let out = Command::new(qemu_arm)
        .arg(dir.join("k3s-armhf"))
        .arg("--version")
        .output()
        .expect("qemu-arm-static k3s-armhf --version");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.contains(VERSION), "{version}");
}

fn arm64_node_runs_real_aarch64_userland_with_working_sudo(lab: &Lab) {
    assert_eq!(lab.arch("node3").expect("arch"), "arm64");
    assert_eq!(
        lab.ssh_ok("node3", "root", "uname -m").expect("uname"),
        "aarch64"
    );
    assert_eq!(
        lab.ssh_ok("node3", "root", "dpkg --print-architecture")
            .expect("dpkg"),
        "arm64"
    );
    assert_eq!(elf_machine(lab, "node3", "/bin/bash"), "aarch64");
    assert_eq!(
        lab.ssh_ok("node1", "root", "uname -m").expect("uname"),
        "x86_64"
    );
    // binfmt flag C: setuid sudo works for the lab user, as pictl needs.
    assert_eq!(
        lab.ssh_ok("node3", "lab", "sudo -n id -u").expect("sudo"),
        "0"
    );
    // systemd is PID 1 and running (the qemu-user workarounds), and the Pi
    // emulation is there.
    assert_eq!(
        lab.ssh_ok("node3", "root", "systemctl is-system-running")
            .expect("systemd"),
        "running"
    );
    lab.ssh_ok("node3", "root", "test -f /boot/firmware/cmdline.txt")
        .expect("Pi boot files");
}

fn apply_detects_arm64_and_installs_k3s_arm64_and_the_arm64_agent(lab: &Lab) {
    // No agent binaries in the inventory: pictl must find the arm64 one itself.
    let inv = std::fs::read_to_string(lab.inventory()).expect("inventory");
    assert!(!inv.contains("binaries"), "{inv}");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let boot_before = boot_id(lab, "node3");
    let started = Instant::now();
    let (code, v, out) = apply_json(lab, &lab.inventory());
    eprintln!(
        "first apply on the mixed lab: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    for n in NODES {
        let changed = steps(&v, n, "changed");
        assert!(changed.contains(&"k3s-binary".to_string()), "{n}: {v:#}");
        assert!(
            changed.iter().any(|s| s.contains("agent")),
            "{n}: no health agent installed: {v:#}"
        );
        let skipped = steps(&v, n, "skipped");
        assert!(
            skipped.iter().all(|s| !s.contains("agent")),
            "{n}: agent skipped: {v:#}"
        );
    }
    // node3 got the arm64 asset, byte for byte what sha256sum-arm64.txt says.
    let sums = std::fs::read_to_string(lab.mirror_dir().join(VERSION).join("sha256sum-arm64.txt"))
        .expect("sha256sum-arm64.txt");
    let want = sums
        .lines()
        .find(|l| l.ends_with(" k3s-arm64"))
        .and_then(|l| l.split_whitespace().next())
        .expect("k3s-arm64 in sha256sum-arm64.txt")
        .to_string();
    let got = lab
        .ssh_ok("node3", "root", "sha256sum /usr/local/bin/k3s")
        .expect("sha256sum");
    assert!(
        got.starts_with(&want),
        "node3 k3s {got} != k3s-arm64 {want}"
    );
    assert_eq!(elf_machine(lab, "node3", "/usr/local/bin/k3s"), "aarch64");
    assert_eq!(elf_machine(lab, "node1", "/usr/local/bin/k3s"), "x86_64");
    let version = lab
        .ssh_ok("node3", "root", "/usr/local/bin/k3s --version")
        .expect("k3s --version");
    assert!(version.contains(VERSION), "{version}");
    // The arm64 agent runs on node3 and reports its arch.
    assert_eq!(
        elf_machine(lab, "node3", "/usr/local/bin/pictl-agent"),
        "aarch64"
    );
    let report = lab
        .ssh_ok("node3", "lab", "curl -sf http://127.0.0.1:9750/v1/report")
        .expect("report");
    let report: Value = serde_json::from_str(&report).expect("report json");
    assert_eq!(report["hostname"], "node3", "{report:#}");
    assert_eq!(report["arch"], "arm64", "{report:#}");
    assert_eq!(report["kubelet_healthy"], true, "{report:#}");
    // The arm64 Pi booted with its memory controller off: it got the flag
    // that turns it on, and one reboot, then K3s started (above).
    assert_eq!(steps(&v, "node3", "changed")[0], "pi-cgroups", "{v:#}");
    let cmdline = lab
        .ssh_ok("node3", "root", "cat /boot/firmware/cmdline.txt")
        .expect("cmdline");
    assert!(
        cmdline.trim_end().ends_with(&memory_flags()),
        "{cmdline} (kernel {})",
        kernel_release()
    );
    assert_eq!(
        cmdline.matches("cgroup_").count(),
        memory_flags().matches("cgroup_").count(),
        "{cmdline}"
    );
    assert_ne!(boot_before, boot_id(lab, "node3"), "node3 was not rebooted");
    let console =
        std::fs::read_to_string(lab.dir().join("nodes/node3/console.log")).expect("console log");
    assert_eq!(console.matches("--- lab: booting").count(), 2, "one reboot");
}

fn kubectl_shows_node3_as_arm64(lab: &Lab) {
    ensure_converged(lab);
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let out = kubectl(
            lab,
            &[
                "get",
                "nodes",
                "--no-headers",
                "-o",
                "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status,ARCH:.metadata.labels.kubernetes\\.io/arch,NODEARCH:.status.nodeInfo.architecture",
            ],
        );
        let rows: Vec<Vec<String>> = out
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect();
        if rows.len() == 3 && rows.iter().all(|r| r.get(1).is_some_and(|s| s == "True"))
            || Instant::now() > deadline
        {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let want = [
        ["node1", "True", "amd64", "amd64"],
        ["node2", "True", "amd64", "amd64"],
        ["node3", "True", "arm64", "arm64"],
    ];
    assert_eq!(rows, want.map(|r| r.map(String::from).to_vec()), "{rows:?}");
    let arm = kubectl(
        lab,
        &[
            "get",
            "nodes",
            "-l",
            "kubernetes.io/arch=arm64",
            "-o",
            "name",
        ],
    );
    assert_eq!(arm.trim(), "node/node3");
}

fn second_apply_on_the_mixed_lab_changes_nothing(lab: &Lab) {
    ensure_converged(lab);
    let started = Instant::now();
    let (code, v, out) = apply_json(lab, &lab.inventory());
    eprintln!(
        "no-op re-run on the mixed lab: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "{}", text(&out));
    for n in NODES {
        assert!(steps(&v, n, "changed").is_empty(), "{n} changed: {v:#}");
    }
    let recap = pictl(lab, &lab.inventory(), &["apply"]);
    let recap = String::from_utf8_lossy(&recap.stdout);
    assert_eq!(recap.matches("changed=0 ").count(), 3, "{recap}");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

fn status_shows_each_nodes_arch_and_health(lab: &Lab) {
    ensure_converged(lab);
    let out = pictl(lab, &lab.inventory(), &["status", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("status json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for r in rows {
        let want = if r["name"] == "node3" {
            "arm64"
        } else {
            "amd64"
        };
        assert_eq!(r["arch"], want, "{r:#}");
        assert_eq!(r["agent"]["arch"], want, "{r:#}");
        assert_eq!(r["ready"], "True", "{r:#}");
        assert_eq!(r["service"], "active", "{r:#}");
        assert_ne!(r["agent"]["health"], "failing", "{r:#}");
        assert!(r["agent"]["health"].is_string(), "{r:#}");
    }
    let table = pictl(lab, &lab.inventory(), &["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let line = |n: &str| {
        table
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} in\n{table}"))
            .to_string()
    };
    assert!(line("node3").contains(" arm64 "), "{table}");
    assert!(line("node1").contains(" amd64 "), "{table}");
    eprintln!("{table}");
}

fn image_preflight_refuses_an_amd64_only_image_for_the_arm64_node(lab: &Lab) {
    ensure_converged(lab);
    // The playson incident itself: an amd64-only image, and an arm64 Pi.
    let reg = pictl_e2e::registry::Registry::start().expect("registry");
    let image = reg.push_single("vendor/amd64-only", "1.0", "linux", "amd64");
    let inv = pictl::one_image_inventory(lab, "amd64-only", &image);

    let plan = pictl(lab, &inv, &["plan"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 1, "{}", text(&out));
    let msg = v["workload"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("offers only linux/amd64"), "{msg}");
    assert!(msg.contains("cannot run on node3 (arm64)"), "{msg}");
    assert!(!msg.contains("node1") && !msg.contains("node2"), "{msg}");
    assert!(reg.token_requests() >= 1);
    let ns = Command::new(pictl::KUBECTL)
        .arg("--kubeconfig")
        .arg(pictl::lab_kubeconfig(lab))
        .args(["get", "namespace", "amd64-only"])
        .output()
        .expect("kubectl");
    assert!(
        !ns.status.success(),
        "the namespace was created despite the preflight"
    );
}

fn arm64_node_survives_reboot_stop_and_start(lab: &Lab) {
    let boot = boot_id(lab, "node3");
    let started = Instant::now();
    lab.reboot("node3").expect("reboot node3");
    eprintln!("arm64 reboot: {:.1} s", started.elapsed().as_secs_f64());
    assert_ne!(boot, boot_id(lab, "node3"), "node3 did not reboot");
    assert_eq!(
        lab.ssh_ok("node3", "root", "systemctl is-system-running")
            .expect("running after reboot"),
        "running"
    );
    // A clean stop is a poweroff (the kill signal qemu-user shifts), not rescue mode.
    let started = Instant::now();
    lab.stop("node3").expect("stop node3");
    let stop_s = started.elapsed().as_secs_f64();
    eprintln!("arm64 stop: {stop_s:.1} s");
    assert!(stop_s < 30.0, "node3 took {stop_s:.1} s to power off");
    let console =
        std::fs::read_to_string(lab.dir().join("nodes/node3/console.log")).expect("console log");
    let last_boot = console.rsplit("--- lab: booting").next().unwrap_or("");
    assert!(
        !last_boot.contains("rescue"),
        "node3 went to rescue mode on stop:\n{last_boot}"
    );
    let started = Instant::now();
    lab.start_node("node3").expect("start node3");
    eprintln!("arm64 start: {:.1} s", started.elapsed().as_secs_f64());
    // K3s and the agent come back on their own.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = lab
            .ssh_ok(
                "node3",
                "root",
                "systemctl is-active k3s-agent pictl-agent || true",
            )
            .unwrap_or_default();
        if active.lines().all(|l| l == "active") && active.lines().count() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node3's services after start: {active}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure_converged(lab);
}

fn up_refuses_an_unknown_arch_or_node_and_leaves_the_lab_running(lab: &Lab) {
    for (arg, says) in [
        (
            "node3=riscv64",
            "unsupported architecture 'riscv64' for node3",
        ),
        ("node9=arm64", "unknown node 'node9'"),
        ("arm64", "expected NODE=ARCH"),
    ] {
        let out = Command::new(pictl_e2e::lab::tool())
            .args(["--id", &lab.id().to_string(), "up", "3", "--arch", arg])
            .stdin(Stdio::null())
            .output()
            .expect("lab up");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{arg}: {stderr}");
        assert!(stderr.contains(says), "{arg}: {stderr}");
    }
    let env = lab.tool(&["env"]).expect("env").replace("\\ ", " ");
    assert!(
        env.contains("LAB_ARCHES=node1=amd64 node2=amd64 node3=arm64\n"),
        "{env}"
    );
    let states = lab.node_states().expect("status");
    assert!(states.iter().all(|(_, s)| s == "running"), "{states:?}");
    // The same shape again is kept as it is (no reboot of the arm64 node).
    let boot = boot_id(lab, "node3");
    let again = lab.up_again().expect("up again");
    assert!(again.contains("already up"), "{again}");
    assert_eq!(boot, boot_id(lab, "node3"));
}

fn a_pictl_without_an_arm64_agent_skips_it_naming_how_to_build_it(lab: &Lab) {
    ensure_converged(lab);
    // A lone pictl (no agents beside it, no cargo target dir around it).
    let lone = lab.dir().join("lone");
    std::fs::create_dir_all(&lone).expect("mkdir");
    std::fs::copy(pictl_bin(lab), lone.join("pictl")).expect("copy pictl");
    let out = Command::new(lone.join("pictl"))
        .args(["apply", "--output", "json", "-i"])
        .arg(lab.inventory())
        .env("PICTL_CACHE_DIR", lab.dir().join("pictl-cache"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run pictl");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(&out)));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let node3 = v["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "node3"))
        .expect("node3");
    let agent = node3["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == "health-agent"))
        .unwrap_or_else(|| panic!("no health-agent step: {node3:#}"));
    assert_eq!(agent["status"], "skipped", "{agent:#}");
    let why = agent["message"].as_str().unwrap_or_default();
    assert!(why.contains("no pictl-agent for arm64"), "{why}");
    assert!(why.contains("pictl-agent-arm64"), "{why}");
    assert!(why.contains("./dist.sh arm64"), "{why}");
    assert!(why.contains("binaries.arm64"), "{why}");
    // Skipping touched nothing: the installed agent still runs.
    assert_eq!(
        lab.ssh_ok("node3", "root", "systemctl is-active pictl-agent")
            .expect("agent"),
        "active"
    );
}
