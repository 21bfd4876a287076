//! Faults and upgrades: an unreachable node, an upgrade with a node killed
//! mid-run, a corrupted release, the sudo password, and lost controller
//! state.

use super::*;

pub fn unreachable_node_is_reported_and_the_rest_converge(lab: &Lab) {
    ensure_converged(lab);
    lab.ssh_ok(
        "node3",
        "root",
        "echo 'debug: true' >> /etc/rancher/k3s/config.yaml",
    )
    .expect("drift");
    lab.kill("node2").expect("kill");
    let status = pictl(lab, &lab.inventory(), &["status"]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node2 ") && l.contains("UNREACHABLE")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node1 ") && l.contains(" active ") && l.contains(" True ")),
        "{table}"
    );
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 4, "only unreachable: {}", text(&out));
    let n2 = node(&v, "node2");
    assert!(
        n2["unreachable"]
            .as_str()
            .is_some_and(|m| m.contains("connect")),
        "{n2:#}"
    );
    assert_eq!(
        steps(&v, "node3", "changed"),
        ["k3s-config", "k3s-service"],
        "the rest still converge: {v:#}"
    );
    lab.start_node("node2").expect("start");
    ensure_converged(lab);
    assert_eq!(
        pictl(lab, &lab.inventory(), &["plan"]).status.code(),
        Some(0)
    );
}

fn inventory_with_version(lab: &Lab, version: &str, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let path = lab.dir().join(name);
    std::fs::write(&path, text.replace(OLD, version)).expect("write inventory");
    path
}

pub fn upgrade_goes_server_first_and_survives_a_node_killed_mid_run(lab: &Lab) {
    ensure_converged(lab);
    let inv = inventory_with_version(lab, NEW, "inventory-new.toml");
    // Watch progress; kill node3 while the server is being upgraded: its SSH
    // session (opened for facts) dies mid-run, before the agents' turn.
    // --no-drain: this case is about the order and a node lost mid-run; with
    // node3 gone the playson budget would rightly block node2's drain
    // (drains are tests/e2e/upgrade.rs's). `-v`: the per-node, per-step log
    // (the default view is one line per phase).
    let mut child = pictl_cmd(lab, &inv, &["apply", "--no-drain", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("line");
        if !killed && line.starts_with("[node1] k3s-binary: applying") {
            lab.kill("node3").expect("kill");
            killed = true;
        }
        lines.push(line);
    }
    let status = child.wait().expect("wait");
    assert!(killed, "never saw node1's upgrade start: {lines:#?}");
    // node3 went away in the middle of a step: that step failed (exit 1),
    // not just "unreachable" (4).
    assert_eq!(status.code(), Some(1), "{lines:#?}");
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle}: {lines:#?}"))
    };
    // Servers first: node1 is upgraded and restarted before any agent starts.
    assert!(
        pos("[node1] k3s-service: changed") < pos("[node2] k3s-binary: applying"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[node3]") && l.contains("UNREACHABLE")),
        "{lines:#?}"
    );

    lab.start_node("node3").expect("start");
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    assert!(
        steps(&v, "node3", "changed").contains(&"k3s-binary".to_string()),
        "{v:#}"
    );
    let table = wait_all_ready(lab, NEW);
    assert!(
        table.iter().all(|(_, s, _, v)| s == "Ready" && v == NEW),
        "{table:?}"
    );
    let version = lab
        .ssh_ok("node2", "root", "/usr/local/bin/k3s --version")
        .expect("version");
    assert!(version.contains(NEW), "{version}");
    assert_eq!(pictl(lab, &inv, &["plan"]).status.code(), Some(0));
    // The later cases converge the lab's own release: back to it, forced
    // (pictl refuses a downgrade unless told; K3s does not support them).
    let back = super::inventory_with(lab, "allow_downgrade = true", "inventory-back.toml");
    let (code, v, out) = apply_json(lab, &back);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
}

pub fn corrupted_artifact_is_refused_and_nothing_is_replaced(lab: &Lab) {
    // A release whose binary does not match its checksum file.
    let bad = "v1.33.9+k3s1";
    let dst = lab.mirror_dir().join(bad);
    std::fs::create_dir_all(&dst).expect("mkdir");
    let mut bin = std::fs::read(lab.mirror_dir().join(NEW).join("k3s")).expect("read");
    bin.extend_from_slice(b"\n# another release\n");
    for (asset, sums) in [
        ("k3s", "sha256sum-amd64.txt"),
        ("k3s-arm64", "sha256sum-arm64.txt"),
        ("k3s-armhf", "sha256sum-arm.txt"),
    ] {
        std::fs::write(dst.join(asset), &bin).expect("write");
        let out = Command::new("sha256sum")
            .arg(asset)
            .current_dir(&dst)
            .output()
            .expect("sha256sum");
        std::fs::write(dst.join(sums), out.stdout).expect("sums");
    }
    // Corrupted in transit or on the mirror: one flipped byte.
    let mid = bin.len() / 2;
    bin[mid] ^= 0xff;
    std::fs::write(dst.join("k3s"), bin).expect("corrupt");

    let sha_before = lab
        .ssh_ok("node1", "root", "sha256sum /usr/local/bin/k3s")
        .expect("sha");
    let inv = inventory_with_version(lab, bad, "inventory-bad.toml");
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 1, "{}", text(&out));
    let msg = node(&v, "node1")["steps"].to_string();
    assert!(msg.contains("does not match the release checksum"), "{v:#}");
    assert_eq!(
        sha_before,
        lab.ssh_ok("node1", "root", "sha256sum /usr/local/bin/k3s")
            .expect("sha"),
        "the node's binary was replaced"
    );
    // The cache has one directory per mirror; none may hold the bad binary.
    let mirrors: Vec<PathBuf> = std::fs::read_dir(lab.dir().join("pictl-cache").join("k3s"))
        .expect("the converged lab cached its binaries")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(!mirrors.is_empty(), "nothing cached at all");
    for m in mirrors {
        assert!(
            !m.join(bad).join("k3s").exists(),
            "a corrupted binary was cached in {}",
            m.display()
        );
    }
}

pub fn sudo_password_goes_through_stdin_and_repairs_drift(lab: &Lab) {
    ensure_converged(lab);
    // A user whose sudo asks for a password (with shell metacharacters in it).
    let password = "Pa55 w0rd$(id)'\"";
    for n in ["node1", "node2", "node3"] {
        lab.ssh_ok(
            n,
            "root",
            "id ops >/dev/null 2>&1 || useradd -m -s /bin/bash ops; \
             echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops; chmod 0440 /etc/sudoers.d/ops; \
             install -d -o ops -m 700 /home/ops/.ssh; \
             install -o ops -m 600 /home/lab/.ssh/authorized_keys /home/ops/.ssh/authorized_keys",
        )
        .expect("create ops");
        let mut c = lab.ssh_command(n, "root").expect("ssh");
        let mut child = c
            .arg("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("ops:{password}\n").as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success());
    }
    let needs = lab.ssh("node2", "ops", "sudo -n true").expect("ssh");
    assert!(!needs.status.success(), "ops must need a password for sudo");

    let original = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let inv = lab.dir().join("inventory-ops.toml");
    std::fs::write(
        &inv,
        original.replace(
            "user = \"lab\"",
            "user = \"ops\"\nsudo_password = { env = \"PICTL_TEST_SUDO\" }",
        ),
    )
    .expect("write inventory");

    let missing = pictl(lab, &inv, &["plan"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("environment variable PICTL_TEST_SUDO is not set"),
        "{}",
        text(&missing)
    );

    let wrong = pictl_cmd(lab, &inv, &["plan"])
        .env("PICTL_TEST_SUDO", "not-it")
        .output()
        .expect("pictl");
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        text(&wrong).to_lowercase().contains("sudo"),
        "{}",
        text(&wrong)
    );
    assert!(
        !text(&wrong).contains("not-it"),
        "the password leaked into the output"
    );

    // A read-only run that accepts node2's key unrecorded does not send it
    // the password (a spoofed node2 would collect it).
    let kh = std::fs::read_to_string(lab.known_hosts()).expect("known_hosts");
    let addr2 = lab.address("node2").expect("address").to_owned();
    let without2: String = kh
        .lines()
        .filter(|l| {
            let hosts = l.split_whitespace().next().unwrap_or("");
            !hosts.split(',').any(|h| h == "node2" || h == addr2)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without2, kh, "node2's key was in the lab's known_hosts");
    std::fs::write(lab.dir().join("known_hosts-no-node2"), &without2).expect("kh");
    let inv_new = lab.dir().join("inventory-ops-accept-new.toml");
    let accept_new = std::fs::read_to_string(&inv).expect("inv").replace(
        "known_hosts = \"known_hosts\"\nhost_key_policy = \"strict\"",
        "known_hosts = \"known_hosts-no-node2\"\nhost_key_policy = \"accept-new\"",
    );
    assert!(accept_new.contains("accept-new"), "{accept_new}");
    std::fs::write(&inv_new, accept_new).expect("write inventory");
    let withheld = pictl_cmd(lab, &inv_new, &["plan"])
        .env("PICTL_TEST_SUDO", password)
        .output()
        .expect("pictl");
    assert_eq!(withheld.status.code(), Some(1), "{}", text(&withheld));
    assert!(
        text(&withheld).contains("the sudo password is not sent to node2"),
        "{}",
        text(&withheld)
    );
    assert_eq!(
        std::fs::read_to_string(lab.dir().join("known_hosts-no-node2")).expect("kh"),
        without2,
        "plan recorded a key"
    );

    lab.ssh_ok(
        "node2",
        "root",
        "echo 'debug: true' >> /etc/rancher/k3s/config.yaml",
    )
    .expect("drift");
    let sampler = pictl::ArgvSampler::start(lab, "node2");
    let out = pictl_cmd(lab, &inv, &["apply", "--output", "json"])
        .env("PICTL_TEST_SUDO", password)
        .output()
        .expect("pictl");
    let seen = sampler.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Sampled during the run: sudo ran, the password was in no argv.
    assert!(
        seen.iter().any(|l| l.contains("pictl-sudo")),
        "{} lines",
        seen.len()
    );
    assert!(
        !seen.iter().any(|l| l.contains(password)),
        "the sudo password in a process's argv"
    );
    assert!(
        !text(&out).contains(password),
        "the password leaked into the output"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        steps(&v, "node2", "changed"),
        ["k3s-config", "k3s-service"],
        "{v:#}"
    );
    let plan = pictl_cmd(lab, &inv, &["plan"])
        .env("PICTL_TEST_SUDO", password)
        .output()
        .expect("pictl");
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

pub fn lost_controller_state_adopts_the_running_cluster_token(lab: &Lab) {
    ensure_converged(lab);
    let state = lab.dir().join("state");
    let token = std::fs::read_to_string(state.join("token")).expect("token");
    let started: Vec<String> = ["node1", "node2"]
        .iter()
        .map(|n| unit_started(lab, n, unit_of(n)))
        .collect();

    // A new laptop: no state directory. Nothing on the nodes may change.
    std::fs::remove_dir_all(&state).expect("rm state");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let stdout = String::from_utf8_lossy(&plan.stdout);
    let changes: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(
        changes.len(),
        1,
        "only the local kubeconfig may change: {stdout}"
    );
    assert!(changes[0].contains(" kubeconfig: "), "{stdout}");
    assert!(!state.join("token").exists(), "plan wrote the token");

    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{}", text(&out));
    for n in ["node1", "node2", "node3"] {
        let changed = steps(&v, n, "changed");
        assert!(
            changed.is_empty() || changed == ["kubeconfig"],
            "{n}: {v:#}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(state.join("token")).expect("token"),
        token,
        "the running secret was adopted"
    );
    let after: Vec<String> = ["node1", "node2"]
        .iter()
        .map(|n| unit_started(lab, n, unit_of(n)))
        .collect();
    assert_eq!(started, after, "K3s was restarted");

    // A configured token that is not the cluster's is refused, not rolled out.
    let original = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let inv = lab.dir().join("inventory-token.toml");
    std::fs::write(
        &inv,
        original.replace(
            "state_dir = \"state\"",
            "state_dir = \"state\"\ntoken = { env = \"PICTL_TEST_TOKEN\" }",
        ),
    )
    .expect("write inventory");
    let out = pictl_cmd(lab, &inv, &["apply"])
        .env("PICTL_TEST_TOKEN", "not-the-cluster-secret")
        .output()
        .expect("pictl");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not the one server node1 runs with"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("not-the-cluster-secret"),
        "the token leaked into the output"
    );
    let cfg = lab
        .ssh_ok("node1", "root", "cat /etc/rancher/k3s/config.yaml")
        .expect("cat");
    assert!(
        !cfg.contains("not-the-cluster-secret"),
        "a wrong token reached the server"
    );
}
