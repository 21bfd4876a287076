//! A tiny runner for lab test binaries (`harness = false`): the lab is brought
//! up once per binary, cases run one after another against it, and the lab is
//! torn down on every exit path — normal end, a panicking case, and the
//! process being killed (a guard process outside our process group runs
//! `lab down` when our end of its pipe closes without a disarm word).
//!
//! libtest cannot do this: it has no suite-level setup/teardown, runs tests in
//! parallel threads, and would report a skipped lab test as passed.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use crate::lab::{self, Lab};

/// A named test case; it gets the lab and fails by panicking.
pub type Case = (&'static str, fn(&Lab));

/// The lab a test binary needs.
#[derive(Debug, Clone, Copy)]
pub struct LabSpec {
    pub nodes: usize,
    /// Nodes that present a Raspberry Pi's boot files (`up --pi`).
    pub pi: &'static [&'static str],
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec { nodes: 3, pi: &[] }
    }
}

/// Tears the lab down if this process dies without disarming it.
struct Guard {
    child: Child,
}

impl Guard {
    fn arm(id: u32) -> Option<Guard> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"read -r word; [ "$word" = disarm ] || exec "$0" --id "$1" down"#)
            .arg(lab::tool())
            .arg(id.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its own process group: a Ctrl-C aimed at the tests must not kill it.
            .process_group(0)
            .spawn();
        match child {
            Ok(child) => Some(Guard { child }),
            Err(e) => {
                eprintln!("lab: warning: cannot start the teardown guard: {e}");
                None
            }
        }
    }

    fn disarm(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"disarm\n");
        }
        let _ = self.child.wait();
    }
}

fn keep_requested() -> bool {
    std::env::var("PICTL_LAB_KEEP").is_ok_and(|v| v == "1")
}

/// Run `cases` against one lab of shape `spec`; prints `test <name> ... ok|FAILED`
/// per case and a final `lab: N passed, M failed`. Arguments that do not start
/// with `-` filter cases by substring (`cargo test --test lab -- reboot`);
/// `--list` lists them. Exit status is failure when anything failed, including
/// bringing the lab up or leaving something behind after `down`.
pub fn run(cases: &[Case], spec: LabSpec) -> ExitCode {
    run_arch(cases, spec, &[])
}

/// [`run`] on a mixed-architecture lab: `arch` lists the nodes that are not
/// amd64 (`&[("node3", "arm64")]`).
pub fn run_arch(cases: &[Case], spec: LabSpec, arch: &[(&str, &str)]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in cases {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if selected.is_empty() {
        println!("lab: no case matches {filters:?}");
        println!("lab: 0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    let arm64 = arch.iter().any(|(_, a)| *a == "arm64");
    if !lab::lab_or_skip() || (arm64 && !lab::arm64_or_skip()) {
        println!("lab: {} cases skipped", selected.len());
        println!("lab: 0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    let id = match lab::instance_id() {
        Ok(id) => id,
        Err(e) => {
            println!("lab: {e:#}");
            println!("lab: 0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let guard = Guard::arm(id);
    let (passed, failed) = run_with_lab(id, &selected, spec, arch);
    if let Some(g) = guard {
        g.disarm();
    }
    println!("lab: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_with_lab(id: u32, cases: &[&Case], spec: LabSpec, arch: &[(&str, &str)]) -> (usize, usize) {
    let cached = lab_cache_present();
    let arm64 = arch.iter().any(|(_, a)| *a == "arm64");
    println!(
        "lab: bringing up instance {id}: {} nodes{}{}{}",
        spec.nodes,
        if spec.pi.is_empty() {
            String::new()
        } else {
            format!(", Pi emulation on {}", spec.pi.join(","))
        },
        arch.iter()
            .map(|(n, a)| format!(", {n} {a}"))
            .collect::<String>(),
        if !cached {
            " (building the base image first)"
        } else if arm64 && !arm64_cache_present() {
            " (building the arm64 base image first: several minutes under qemu-user)"
        } else {
            ""
        }
    );
    let mut lab = match Lab::start_arch(spec.nodes, spec.pi, arch) {
        Ok(lab) => lab,
        Err(e) => {
            println!("lab: could not bring the lab up: {e:#}");
            // Lab::start failed before handing us a Lab: clean up directly.
            let _ = Command::new(lab::tool())
                .arg("--id")
                .arg(id.to_string())
                .arg("down")
                .status();
            return (0, 1);
        }
    };
    match lab.up_seconds() {
        Some(s) => println!(
            "lab: up: {} nodes ssh-ready in {s:.1} s from the cached base image (whole `lab up`: {:.1} s)",
            spec.nodes,
            lab.up_wall().as_secs_f64()
        ),
        None => println!("lab: up in {:.1} s", lab.up_wall().as_secs_f64()),
    }

    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| case(&lab)));
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
                eprintln!("    ({secs:.1} s)");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
                eprintln!("    ({secs:.1} s)");
                // Later cases expect every node up and connected.
                if let Err(e) = lab.heal() {
                    println!("lab: could not restore the lab after {name}: {e:#}");
                }
            }
        }
    }

    if keep_requested() {
        println!(
            "lab: PICTL_LAB_KEEP=1: leaving instance {id} up (run: tests/lab/lab --id {id} down)"
        );
        std::mem::forget(lab);
        return (passed, failed);
    }
    match lab.down() {
        Ok(took) => println!("lab: down in {:.1} s", took.as_secs_f64()),
        Err(e) => println!("lab: down failed: {e:#}"),
    }
    let leaks = lab::leaks(id);
    if leaks.is_empty() {
        println!("lab: leak check after down: no netns, link, rule, mount, cgroup or process left");
        println!("test down_leaves_nothing_behind ... ok");
        passed += 1;
    } else {
        println!("lab: leak check after down found:");
        for l in &leaks {
            println!("    {l}");
        }
        println!("test down_leaves_nothing_behind ... FAILED");
        failed += 1;
    }
    (passed, failed)
}

fn lab_cache() -> std::path::PathBuf {
    std::env::var_os("PICTL_LAB_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/pictl-lab/bookworm-base.tar".into())
}

fn lab_cache_present() -> bool {
    lab_cache().is_file()
}

/// The arm64 base sits beside the amd64 one, as the lab tool names it.
fn arm64_cache_present() -> bool {
    let amd64 = lab_cache();
    let name = amd64
        .file_stem()
        .map(|s| format!("{}-arm64.tar", s.to_string_lossy()))
        .unwrap_or_default();
    amd64.with_file_name(name).is_file()
}

/// Runs host-only cases (no lab) in order, those matching the command line's
/// filters if any, each caught on its own; prints each result and the
/// counts; returns (passed, failed).
pub fn run_host(cases: &[(&str, fn())]) -> (usize, usize) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(case)) {
            Ok(()) => {
                passed += 1;
                println!(
                    "test {name} ... ok ({:.1}s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    println!("host: {passed} passed, {failed} failed");
    (passed, failed)
}

/// A suite of host cases then lab cases (`sim`, `ha`): the lab cases are
/// left out when `skip_var`=1 outside CI, to iterate on the host cases;
/// never in CI. Fails when anything failed, and when the lab cases were
/// left out: cases that did not run never count as passed.
pub fn run_host_and_lab(
    host: &[(&str, fn())],
    lab: &[Case],
    spec: LabSpec,
    skip_var: &str,
) -> ExitCode {
    let (_, host_failed) = run_host(host);
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let lab_result = if !ci && std::env::var(skip_var).is_ok_and(|v| v == "1") {
        println!("lab: NOT RUN ({skip_var}=1): this suite fails until they run");
        ExitCode::FAILURE
    } else {
        run(lab, spec)
    };
    if host_failed > 0 {
        ExitCode::FAILURE
    } else {
        lab_result
    }
}

/// The cases of a lab test, each named by its own function: what a run
/// prints and what a filter matches is the name of the code that runs.
#[macro_export]
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        &[$((stringify!($case), $case as fn(&$crate::Lab))),*]
    };
}

/// The same for host-only cases (no lab).
#[macro_export]
macro_rules! host_cases {
    ($($case:ident),* $(,)?) => {
        &[$((stringify!($case), $case as fn())),*]
    };
}
