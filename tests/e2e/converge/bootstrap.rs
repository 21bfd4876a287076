//! Bootstrap, re-runs and drift: a fresh lab planned and applied, a second
//! run that changes nothing, config, mode and service drift repaired on that
//! node only, the plan's diff, the lock, and label and taint changes.

use super::*;

pub fn plan_on_a_fresh_lab_lists_every_change_and_exits_2(lab: &Lab) {
    // Controller state left by an earlier run against another lab would not be "fresh".
    let _ = std::fs::remove_dir_all(lab.dir().join("state"));
    let out = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for n in ["node1", "node2", "node3"] {
        assert!(
            stdout.contains(&format!(
                "{n} k3s-binary: /usr/local/bin/k3s: absent → {OLD}"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("node3 pi-cgroups: /boot/firmware/cmdline.txt"),
        "{stdout}"
    );
    // plan changed nothing: the nodes still have no k3s, and no secret was generated.
    assert!(
        lab.ssh("node1", "root", "test -e /usr/local/bin/k3s")
            .expect("ssh")
            .status
            .code()
            == Some(1)
    );
    assert!(!lab.dir().join("state").join("token").exists());
}

pub fn first_apply_bootstraps_three_ready_nodes(lab: &Lab) {
    let boot_before = boot_id(lab, "node3");
    // node1 (server) and node2 (agent) are watched while the apply runs.
    let samplers = ["node1", "node2"].map(|n| pictl::ArgvSampler::start(lab, n));
    let (code, v, out) = apply_json(lab, &lab.inventory());
    let samples = samplers.map(pictl::ArgvSampler::stop);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    for n in ["node1", "node2", "node3"] {
        assert!(
            steps(&v, n, "changed").contains(&"k3s-binary".to_string()),
            "{v:#}"
        );
        assert!(
            steps(&v, n, "ok").contains(&"node-ready".to_string()),
            "{v:#}"
        );
    }
    assert_eq!(steps(&v, "node3", "changed")[0], "pi-cgroups");
    eprintln!(
        "first bootstrap: {:.2} s wall",
        v["seconds"].as_f64().unwrap_or_default()
    );

    let table = wait_all_ready(lab, OLD);
    assert_eq!(table.len(), 3, "{table:?}");
    for (name, status, roles, version) in &table {
        assert_eq!(status, "Ready", "{table:?}");
        assert_eq!(version, OLD);
        let want = if name == "node1" {
            "control-plane,master"
        } else {
            "<none>"
        };
        assert_eq!(roles, want, "{table:?}");
    }
    // The health agent runs on every node, unprivileged, and answers.
    for n in ["node1", "node2", "node3"] {
        let state = lab
            .ssh_ok(
                n,
                "root",
                "systemctl is-active pictl-agent; ps -o user= -C pictl-agent",
            )
            .expect("agent");
        assert_eq!(
            state.split_whitespace().collect::<Vec<_>>(),
            ["active", "pictl-agent"],
            "{n}: {state}"
        );
        let report = lab
            .ssh_ok(n, "lab", "curl -sf http://127.0.0.1:9750/v1/report")
            .expect("report");
        let report: Value = serde_json::from_str(&report).expect("report json");
        assert_eq!(report["hostname"], n);
        assert_eq!(report["kubelet_healthy"], true, "{report:#}");
    }
    // The Pi node got its cgroup flags and was rebooted for them, once.
    let cmdline = lab
        .ssh_ok("node3", "root", "cat /boot/firmware/cmdline.txt")
        .expect("cmdline");
    assert!(
        cmdline.trim_end().ends_with(&pictl::memory_flags()),
        "{cmdline}"
    );
    let boot_after = boot_id(lab, "node3");
    assert_ne!(boot_before, boot_after, "node3 was not rebooted");
    // Secrets are 0600, on the node and on the controller.
    let mode = lab
        .ssh_ok("node2", "root", "stat -c %a /etc/rancher/k3s/config.yaml")
        .expect("stat");
    assert_eq!(mode.trim(), "600");
    for f in ["token", "kubeconfig"] {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(lab.dir().join("state").join(f))
            .expect("state file")
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600, "{f}");
    }
    // The secret is in no process's argv on the nodes, during the run (every
    // process sampled, pictl's sudo wrappers among them) or after it.
    let token = std::fs::read_to_string(lab.dir().join("state").join("token")).expect("token");
    for (n, seen) in ["node1", "node2"].iter().zip(&samples) {
        assert!(
            seen.iter().any(|l| l.contains("pictl-sudo")),
            "{n}: the sampler saw none of pictl's commands ({} lines)",
            seen.len()
        );
        let leaked: Vec<&String> = seen.iter().filter(|l| l.contains(token.trim())).collect();
        assert!(
            leaked.is_empty(),
            "{n}: the cluster secret in argv: {leaked:?}"
        );
    }
    let argv = lab
        .ssh_ok(
            "node1",
            "root",
            "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '",
        )
        .expect("argv");
    assert!(
        !argv.contains(token.trim()),
        "the cluster secret is visible in a process argv"
    );
}

pub fn second_apply_changes_nothing_and_restarts_nothing(lab: &Lab) {
    let before: Vec<String> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| unit_started(lab, n, unit_of(n)))
        .collect();
    let boot3 = boot_id(lab, "node3");
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{}", text(&out));
    for n in ["node1", "node2", "node3"] {
        assert!(
            steps(&v, n, "changed").is_empty(),
            "{n} changed on a re-run: {v:#}"
        );
        let trips = node(&v, n)["ssh_round_trips"].as_u64().unwrap_or(99);
        assert!(trips <= 2, "{n}: {trips} SSH round trips on a no-op re-run");
    }
    let stdout = pictl(lab, &lab.inventory(), &["apply"]).stdout;
    let recap = String::from_utf8_lossy(&stdout);
    assert_eq!(recap.matches("changed=0 ").count(), 3, "{recap}");
    let after: Vec<String> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| unit_started(lab, n, unit_of(n)))
        .collect();
    assert_eq!(before, after, "a unit was restarted by a no-op re-run");
    assert_eq!(boot3, boot_id(lab, "node3"));
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let status = pictl(lab, &lab.inventory(), &["status", "--output", "json"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let rows: Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(rows.as_array().map(Vec::len), Some(3));
    assert!(
        rows.as_array()
            .into_iter()
            .flatten()
            .all(|r| r["ready"] == "True" && r["service"] == "active"),
        "{rows:#}"
    );
    // The agents' reports are in the status: the lab's nodes have no NTP.
    for r in rows.as_array().into_iter().flatten() {
        assert_ne!(r["agent"]["health"], "failing", "{r:#}");
        let problems = r["agent"]["problems"].to_string();
        assert!(problems.contains("clock not synchronized"), "{problems}");
    }
    eprintln!(
        "no-op re-run: {:.2} s wall",
        v["seconds"].as_f64().unwrap_or_default()
    );
}

pub fn config_drift_is_planned_and_repaired_on_that_node_only(lab: &Lab) {
    ensure_converged(lab);
    // A same-size edit with the mtime put back is still found: the node's
    // hash cache is keyed on ctime, which touch cannot restore.
    lab.ssh_ok(
        "node3",
        "root",
        "f=/etc/rancher/k3s/config.yaml; cp -p $f /tmp/orig; sed -i 's/node-name: node3/node-name: node9/' $f; \
         touch -r /tmp/orig $f; cmp -s /tmp/orig $f && exit 1; [ $(stat -c %s $f) = $(stat -c %s /tmp/orig) ]",
    )
    .expect("same-size edit");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("node3 k3s-config:"),
        "{}",
        text(&plan)
    );
    ensure_converged(lab);
    lab.ssh_ok(
        "node2",
        "root",
        "echo 'debug: true' >> /etc/rancher/k3s/config.yaml",
    )
    .expect("drift");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(
        stdout.contains("node2 k3s-config: /etc/rancher/k3s/config.yaml"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "node2 k3s-service: k3s-agent.service: running → restarted (k3s-config changed)"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("  node1 ") && !stdout.contains("  node3 "),
        "only node2 drifted: {stdout}"
    );

    let n1 = unit_started(lab, "node1", "k3s.service");
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(
        steps(&v, "node2", "changed"),
        ["k3s-config", "k3s-service"],
        "{v:#}"
    );
    assert!(
        steps(&v, "node1", "changed").is_empty() && steps(&v, "node3", "changed").is_empty(),
        "{v:#}"
    );
    assert_eq!(n1, unit_started(lab, "node1", "k3s.service"));
    let cfg = lab
        .ssh_ok("node2", "root", "cat /etc/rancher/k3s/config.yaml")
        .expect("cat");
    assert!(!cfg.contains("debug: true"));
    assert_eq!(
        pictl(lab, &lab.inventory(), &["plan"]).status.code(),
        Some(0)
    );
}

/// `stat -c '%a %u %g %n'` of `paths` on `node`.
fn modes(lab: &Lab, node: &str, paths: &str) -> String {
    lab.ssh_ok(node, "root", &format!("stat -c '%a %u %g %n' {paths}"))
        .expect("stat")
}

pub fn config_mode_drift_is_chmodded_back_without_a_restart(lab: &Lab) {
    ensure_converged(lab);
    for n in ["node1", "node2", "node3"] {
        let records = modes(lab, n, "/var/lib/pictl /var/lib/pictl/*");
        for line in records.lines() {
            let want = if line.ends_with(" /var/lib/pictl") {
                "700 0 0 "
            } else {
                "600 0 0 "
            };
            assert!(line.starts_with(want), "{n}: {records}");
        }
        assert!(
            records.contains("/var/lib/pictl/k3s-started-with"),
            "{records}"
        );
        assert!(records.contains("/var/lib/pictl/hashes"), "{records}");
    }
    lab.ssh_ok("node2", "root", "chmod 644 /etc/rancher/k3s/config.yaml")
        .expect("chmod");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(
        stdout.contains("node2 k3s-config: /etc/rancher/k3s/config.yaml: mode 0644 → 0600"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("k3s-service"),
        "a mode fix restarts nothing: {stdout}"
    );
    // Nothing to diff: the content is right.
    let diff = pictl(lab, &lab.inventory(), &["plan", "--diff"]);
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff));
    assert!(
        !String::from_utf8_lossy(&diff.stdout).contains("+++"),
        "{}",
        text(&diff)
    );

    let n2 = unit_started(lab, "node2", "k3s-agent.service");
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(steps(&v, "node2", "changed"), ["k3s-config"], "{v:#}");
    assert_eq!(
        n2,
        unit_started(lab, "node2", "k3s-agent.service"),
        "K3s was restarted for a mode change"
    );
    assert_eq!(
        modes(lab, "node2", "/etc/rancher/k3s/config.yaml").trim(),
        "600 0 0 /etc/rancher/k3s/config.yaml"
    );
    assert_eq!(
        pictl(lab, &lab.inventory(), &["plan"]).status.code(),
        Some(0)
    );
}

pub fn plan_diff_shows_config_drift_with_the_token_redacted(lab: &Lab) {
    ensure_converged(lab);
    let token = lab
        .ssh_ok(
            "node2",
            "root",
            "sed -n 's/^token: *//p' /etc/rancher/k3s/config.yaml",
        )
        .expect("token");
    let token = token.trim().trim_matches(['"', '\'']);
    assert!(token.len() > 20, "no token in node2's config");
    lab.ssh_ok(
        "node2",
        "root",
        "echo 'debug: true' >> /etc/rancher/k3s/config.yaml",
    )
    .expect("drift");
    let plan = pictl(lab, &lab.inventory(), &["plan", "--diff"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let all = text(&plan);
    assert!(all.contains("      -debug: true"), "{all}");
    assert!(all.contains("token: <redacted>"), "{all}");
    assert!(!all.contains(token), "the token leaked into plan --diff");
    let json = pictl(
        lab,
        &lab.inventory(),
        &["plan", "--diff", "--output", "json"],
    );
    assert!(
        !text(&json).contains(token),
        "the token leaked into the JSON plan"
    );
    assert!(!all.contains("sha256"), "{all}");
    ensure_converged(lab);
}

pub fn stopped_service_is_planned_and_repaired(lab: &Lab) {
    ensure_converged(lab);
    lab.ssh_ok("node3", "root", "systemctl stop k3s-agent")
        .expect("stop");
    let plan = pictl(lab, &lab.inventory(), &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(
        stdout.contains("node3 k3s-service: k3s-agent.service: inactive → active"),
        "{stdout}"
    );
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(steps(&v, "node3", "changed"), ["k3s-service"]);
    assert!(steps(&v, "node2", "changed").is_empty(), "{v:#}");
    assert_eq!(
        lab.ssh_ok("node3", "root", "systemctl is-active k3s-agent")
            .expect("active")
            .trim(),
        "active"
    );
}

pub fn a_second_concurrent_apply_is_refused_by_the_lock(lab: &Lab) {
    ensure_converged(lab);
    // Hold the lock from a slow apply: node2 is cut, so its connect waits.
    lab.cut("node2").expect("cut");
    let mut first = pictl_cmd(lab, &lab.inventory(), &["apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    let second = pictl(lab, &lab.inventory(), &["apply"]);
    let _ = first.kill();
    let _ = first.wait();
    lab.uncut("node2").expect("uncut");
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another pictl apply holds the lock for cluster lab"),
        "{}",
        text(&second)
    );
}

pub fn a_node_another_controller_holds_stops_apply_before_any_change(lab: &Lab) {
    ensure_converged(lab);
    // Another controller's run holds node2 (its protocol: flock on
    // /run/pictl.lock, its words in the file, held while its session lives).
    let mut other = lab
        .ssh_command("node2", "root")
        .expect("ssh")
        .arg(
            "exec 9>>/run/pictl.lock; flock -n 9 || exit 9; \
             printf 'alice@other-laptop (pictl pid 7), pid %s on the node\\n' $$ >/run/pictl.lock; \
             echo locked; exec cat >/dev/null",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn holder");
    let mut line = String::new();
    BufReader::new(other.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "locked\n", "the holder could not lock node2");
    let config = "/etc/rancher/k3s/config.yaml";
    lab.ssh_ok("node1", "root", &format!("echo 'debug: true' >> {config}"))
        .expect("drift");

    let refused = pictl(lab, &lab.inventory(), &["apply"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("node node2 is being changed by another pictl run (alice@other-laptop (pictl pid 7), pid "),
        "{}",
        text(&refused)
    );
    assert!(stderr.contains("sudo kill PID"), "{stderr}");
    let kept = lab
        .ssh("node1", "root", &format!("grep -c '^debug: true' {config}"))
        .expect("ssh");
    assert_eq!(
        String::from_utf8_lossy(&kept.stdout).trim(),
        "1",
        "node1 was changed"
    );

    // The other run ends (its session closes): the lock is gone with it.
    drop(other.stdin.take());
    let _ = other.wait();
    let out = pictl(lab, &lab.inventory(), &["apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        steps(&v, "node1", "changed"),
        ["k3s-config", "k3s-service"],
        "{v:#}"
    );
    // pictl's own lock ended with its run: a holder gets it at once.
    let free = lab
        .ssh(
            "node2",
            "root",
            "flock -n /run/pictl.lock true && cat /run/pictl.lock",
        )
        .expect("ssh");
    assert!(free.status.success(), "pictl's lock outlived its run");
    assert!(
        String::from_utf8_lossy(&free.stdout).contains("(pictl pid "),
        "pictl wrote no holder: {}",
        String::from_utf8_lossy(&free.stdout)
    );
}

/// The lab's inventory with `extra` lines added to node `name`'s table.
fn inventory_with_node_keys(lab: &Lab, name: &str, extra: &str, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let marker = format!("name = \"{name}\"\n");
    assert!(text.contains(&marker), "{name} not in the lab inventory");
    let path = lab.dir().join(file);
    std::fs::write(
        &path,
        text.replacen(&marker, &format!("{marker}{extra}\n"), 1),
    )
    .expect("write");
    path
}

pub fn label_and_taint_changes_reach_the_node_without_a_restart(lab: &Lab) {
    ensure_converged(lab);
    let started = unit_started(lab, "node2", "k3s-agent.service");
    let inv = inventory_with_node_keys(
        lab,
        "node2",
        "labels = { \"example.com/zone\" = \"shelf-1\", \"node-role.kubernetes.io/worker\" = \"true\" }\ntaints = [\"dedicated=edge:NoSchedule\"]",
        "inventory-labels.toml",
    );
    let out = pictl(lab, &inv, &["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("node2 node-labels: label example.com/zone"),
        "{}",
        text(&out)
    );
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    assert_eq!(steps(&v, "node2", "changed"), ["node-labels"], "{v:#}");
    let labels = kubectl(
        lab,
        &["get", "node", "node2", "-o", "jsonpath={.metadata.labels}"],
    );
    assert!(
        labels.contains("\"example.com/zone\":\"shelf-1\""),
        "{labels}"
    );
    let roles = kubectl(lab, &["get", "node", "node2", "--no-headers"]);
    assert!(roles.contains("worker"), "{roles}");
    let taints = kubectl(
        lab,
        &["get", "node", "node2", "-o", "jsonpath={.spec.taints}"],
    );
    assert!(
        taints.contains("\"dedicated\"") && taints.contains("NoSchedule"),
        "{taints}"
    );
    assert_eq!(
        unit_started(lab, "node2", "k3s-agent.service"),
        started,
        "K3s restarted for a label"
    );
    // Back to the lab inventory: pictl's labels and taint are removed.
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let labels = kubectl(
        lab,
        &["get", "node", "node2", "-o", "jsonpath={.metadata.labels}"],
    );
    assert!(
        !labels.contains("example.com/zone") && !labels.contains("node-role.kubernetes.io/worker"),
        "{labels}"
    );
    let taints = kubectl(
        lab,
        &["get", "node", "node2", "-o", "jsonpath={.spec.taints}"],
    );
    assert!(!taints.contains("dedicated"), "{taints}");
    let (_, v, _) = apply_json(lab, &lab.inventory());
    assert!(steps(&v, "node2", "changed").is_empty(), "{v:#}");
}
