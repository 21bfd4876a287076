//! K3s is a multi-call binary (cmd/k3s/main.go): run as `kubectl`, `crictl` or `ctr`
//! (a symlink, as install.sh makes them) it is that tool, and `k3s kubectl|crictl|ctr|
//! check-config ...` runs the same tools as subcommands. The simulator has no
//! containers, so `crictl` and `ctr` can only say so, except `crictl images`,
//! which lists what the agent imported from its image dir (see `images`); `kubectl` runs a real kubectl
//! (K3S_SIM_KUBECTL, else the first other `kubectl` on PATH) with K3s's default
//! kubeconfig, as pkg/kubectl/main.go does; `check-config` reports the cgroup part
//! of contrib/util/check-config.sh from the same checks the server and agent run.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

pub const KUBECTL_ENV: &str = "K3S_SIM_KUBECTL";

/// The tool named by argv[0], if this binary was run through a symlink.
pub fn by_argv0(argv0: &str) -> Option<&'static str> {
    match Path::new(argv0).file_name()?.to_str()? {
        "kubectl" => Some("kubectl"),
        "crictl" => Some("crictl"),
        "ctr" => Some("ctr"),
        _ => None,
    }
}

/// Runs `tool` with `args`; returns the exit code (kubectl replaces this process).
pub fn run(tool: &str, args: &[String]) -> i32 {
    match tool {
        "kubectl" => kubectl(args),
        "check-config" => check_config(),
        "crictl" if args.first().is_some_and(|a| a == "images" || a == "img") => {
            match crate::images::crictl_images() {
                Ok(table) => {
                    print!("{table}");
                    0
                }
                Err(e) => {
                    eprintln!("crictl: {e}");
                    1
                }
            }
        }
        other => {
            eprintln!(
                "k3s-sim: {other} {}: the simulator runs no containers (no containerd socket at /run/k3s/containerd/containerd.sock)",
                args.join(" ")
            );
            1
        }
    }
}

fn kubectl(args: &[String]) -> i32 {
    let me = std::fs::canonicalize("/proc/self/exe").ok();
    let found = std::env::var_os(KUBECTL_ENV)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file() && std::fs::canonicalize(p).ok() != me)
        });
    let Some(bin) = found else {
        eprintln!("k3s-sim: no kubectl to run: install one or set {KUBECTL_ENV}");
        return 1;
    };
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args);
    // pkg/kubectl/main.go: without KUBECONFIG or --kubeconfig, use K3s's admin file.
    let explicit = args.iter().any(|a| a.starts_with("--kubeconfig"));
    let default = Path::new("/etc/rancher/k3s/k3s.yaml");
    if std::env::var_os("KUBECONFIG").is_none() && !explicit && default.exists() {
        cmd.env("KUBECONFIG", default);
    }
    let err = cmd.exec();
    eprintln!("k3s-sim: running kubectl: {err}");
    1
}

fn check_config() -> i32 {
    println!("Generally Necessary:");
    let report = match crate::cgroups::inspect() {
        Ok(r) => r,
        Err(e) => {
            println!("- cgroup hierarchy: {e} (fail)\n\nSTATUS: 1 (fail)");
            return 1;
        }
    };
    let needed: &[&str] = if report.v2 {
        &["cpu", "cpuset", "memory"]
    } else {
        &["memory"]
    };
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| report.missing.contains(c))
        .collect();
    let v = if report.v2 {
        "cgroups V2 mounted, cpu|cpuset|memory controllers status:"
    } else {
        "cgroups V1 mounted, memory controller status:"
    };
    if missing.is_empty() {
        println!("- cgroup hierarchy: {v} good\n\nSTATUS: pass");
        0
    } else {
        println!(
            "- cgroup hierarchy: {v} missing {} (fail)\n\nSTATUS: 1 (fail)",
            missing.join(" ")
        );
        1
    }
}
