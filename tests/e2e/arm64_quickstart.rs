//! The README's quick start from a fresh clone on the mixed lab: its
//! install command, run exactly as the README writes it, gives `pictl` an
//! agent for every arch, and the installed `pictl` then gives every node,
//! the arm64 one too, a running health agent with no extra step.

use super::*;

/// The commands of the README's quick-start block.
fn quick_start(readme: &str) -> Vec<String> {
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("the README has a quick start");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```sh block in the quick start");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A fresh clone of the commit under test, and the quick start's install
/// command(s) run in it exactly as written, with PREFIX inside the lab.
fn install_from_a_fresh_clone(work: &Path) -> PathBuf {
    let src = work.join("src");
    let _ = std::fs::remove_dir_all(&src);
    let status = Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(pictl_e2e::lab::repo_root())
        .arg(&src)
        .status()
        .expect("git clone");
    assert!(status.success(), "git clone failed");
    let readme = std::fs::read_to_string(src.join("README.md")).expect("README");
    let commands = quick_start(&readme);
    let install: Vec<&String> = commands
        .iter()
        .filter(|c| !c.starts_with("pictl "))
        .collect();
    assert!(!install.is_empty(), "no install command in {commands:?}");
    let prefix = work.join("prefix");
    for c in install {
        let started = Instant::now();
        let status = Command::new("bash")
            .args(["-c", c])
            .current_dir(&src)
            .env("PREFIX", &prefix)
            // The build's dependencies are kept between runs of this case,
            // and the test's build optimises less (link-time optimisation and
            // opt-level 3 cost minutes on two cores; they change how fast
            // pictl runs, not what it does).
            .env("CARGO_TARGET_DIR", pictl::target_dir().join("quickstart"))
            .env("CARGO_PROFILE_RELEASE_LTO", "off")
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
            .stdin(Stdio::null())
            .status()
            .expect("run the install command");
        assert!(status.success(), "`{c}` failed");
        eprintln!("`{c}`: {:.1} s", started.elapsed().as_secs_f64());
    }
    prefix.join("bin")
}

pub fn the_readme_quick_start_from_a_fresh_clone_gives_every_arch_its_agent(lab: &Lab) {
    // A new user's nodes: the suite's own cluster goes first.
    let out = pictl(lab, &lab.inventory(), &["reset", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    populate_mirror(lab);
    let work = lab.dir().join("quickstart");
    // A new user's first run: no host keys or state from an earlier lab.
    let _ = std::fs::remove_file(work.join("known_hosts"));
    let _ = std::fs::remove_dir_all(work.join("state"));
    std::fs::create_dir_all(&work).expect("mkdir");
    let bin = install_from_a_fresh_clone(&work);
    let pictl_bin = bin.join("pictl");
    let inventory = work.join("pictl.toml");
    let _ = std::fs::remove_file(&inventory);
    let addresses: Vec<&str> = NODES
        .iter()
        .map(|n| lab.address(n).expect("address"))
        .collect();
    let out = Command::new(&pictl_bin)
        .args([
            "init",
            "--nodes",
            &addresses.join(","),
            "--user",
            "lab",
            "--accept-new",
        ])
        .arg("--identity-file")
        .arg(lab.key())
        .arg("--known-hosts")
        .arg(work.join("known_hosts"))
        .args([
            "--name",
            "quickstart",
            "--k3s-version",
            VERSION,
            "--mirror",
            lab.mirror_url(),
        ])
        .arg("--out")
        .arg(&inventory)
        .stdin(Stdio::null())
        .output()
        .expect("pictl init");
    assert!(out.status.success(), "{}", text(&out));
    let run = |args: &[&str]| {
        let mut c = pictl::command(&pictl_bin, lab, &inventory, args);
        c.env("XDG_STATE_HOME", work.join("state"));
        c
    };
    let (code, v, out) = pictl::apply_json(run(&[]));
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    for (node, arch) in [("node1", "amd64"), ("node2", "amd64"), ("node3", "arm64")] {
        let skipped = steps(&v, node, "skipped");
        assert!(
            !skipped.contains(&"health-agent".to_string()),
            "{node}: {v:#}"
        );
        let active = lab.ssh_ok(node, "root", "systemctl is-active pictl-agent");
        assert_eq!(active.unwrap_or_default().trim(), "active", "{node}");
        let on_node = lab
            .ssh_ok(node, "root", "sha256sum /usr/local/bin/pictl-agent")
            .expect("sha256sum");
        let want = sha256(&bin.join(format!("pictl-agent-{arch}")));
        assert!(
            on_node.starts_with(&want),
            "{node}: {on_node} is not pictl-agent-{arch} ({want})"
        );
    }
    let (code, v, out) = pictl::apply_json(run(&[]));
    assert_eq!(code, 0, "{}", text(&out));
    for node in NODES {
        assert!(steps(&v, node, "changed").is_empty(), "{node}: {v:#}");
    }
    // Nodes left clean, as the case found them.
    let out = run(&["reset", "--yes"]).output().expect("pictl reset");
    assert!(out.status.success(), "{}", text(&out));
}
