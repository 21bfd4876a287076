//! Proves the lab is real: separate hosts with their own identity, filesystem
//! and network position, a real systemd that keeps enabled units across
//! reboots, real OpenSSH with host key checking, and faults (stop, kill,
//! reboot, cut) that behave like they would on a Pi. Everything pictl's other
//! end-to-end tests claim rests on this.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pictl_e2e::{Case, Lab, LabSpec, harness};

#[path = "lab_apt.rs"]
mod lab_apt;
use lab_apt::the_base_images_debian_mirror_comes_from_the_hosts_apt_sources;

const PI_NODE: &str = "node3";

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        each_node_has_its_own_hostname_and_machine_id_as_root_and_sudo_user,
        known_hosts_holds_the_real_host_keys_and_a_wrong_key_is_refused,
        file_written_on_node1_is_absent_on_node2,
        node1_reaches_node2_by_name,
        inventory_points_at_the_lab,
        mirror_serves_the_host_directory_to_nodes,
        pi_node_presents_pi_boot_files_without_cgroup_flags,
        pi_kernel_has_memory_only_when_booted_with_cgroup_enable_memory,
        network_sysctls_are_writable_inside_nodes_only,
        enabled_unit_survives_reboot,
        kill_makes_ssh_fail_while_the_others_answer,
        stop_powers_off_cleanly_and_start_boots_again,
        cut_takes_a_node_off_the_network_and_uncut_restores_it,
        cli_errors_are_clear,
        up_is_idempotent_on_a_healthy_lab,
        down_recovers_from_a_crashed_run,
        up_recovers_from_a_crashed_run,
    ];
    let host: &[(&str, fn())] =
        pictl_e2e::host_cases![the_base_images_debian_mirror_comes_from_the_hosts_apt_sources];
    harness::run_host_and_lab(
        host,
        cases,
        LabSpec {
            nodes: 3,
            pi: &[PI_NODE],
        },
        "LAB_SKIP_LAB",
    )
}

fn sh(lab: &Lab, node: &str, cmd: &str) -> String {
    lab.ssh_ok(node, "root", cmd)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn machine_ids(lab: &Lab) -> Vec<String> {
    lab.nodes()
        .iter()
        .map(|n| sh(lab, &n.name, "cat /etc/machine-id"))
        .collect()
}

fn unique_marker() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("lab-marker-{}-{nanos}", std::process::id())
}

fn ssh_fails(lab: &Lab, node: &str) -> bool {
    let out = lab.ssh(node, "root", "true").expect("ssh runs");
    !out.status.success()
}

fn state_of(lab: &Lab, node: &str) -> String {
    lab.node_states()
        .expect("status")
        .into_iter()
        .find(|(n, _)| n == node)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("status lists no {node}"))
}

fn each_node_has_its_own_hostname_and_machine_id_as_root_and_sudo_user(lab: &Lab) {
    let mut ids = BTreeSet::new();
    for node in lab.nodes() {
        let root = sh(lab, &node.name, "hostname; cat /etc/machine-id; id -u");
        let lines: Vec<&str> = root.lines().collect();
        assert_eq!(lines.len(), 3, "unexpected output {root:?}");
        assert_eq!(lines[0], node.name, "hostname as root");
        let mid = lines[1];
        assert!(
            mid.len() == 32 && mid.chars().all(|c| c.is_ascii_hexdigit()),
            "machine-id {mid:?}"
        );
        assert_eq!(lines[2], "0");
        let user = lab
            .ssh_ok(
                &node.name,
                "lab",
                "hostname; cat /etc/machine-id; id -un; sudo -n id -u",
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            user.lines().collect::<Vec<_>>(),
            vec![node.name.as_str(), mid, "lab", "0"]
        );
        let addr = sh(
            lab,
            &node.name,
            "ip -4 -o addr show dev eth0 | awk '{print $4}'",
        );
        assert_eq!(addr, format!("{}/24", node.address));
        assert!(ids.insert(mid.to_string()), "machine-id {mid} is shared");
    }
    println!("    machine-ids: {ids:?}");
}

fn known_hosts_holds_the_real_host_keys_and_a_wrong_key_is_refused(lab: &Lab) {
    let known = std::fs::read_to_string(lab.known_hosts()).expect("known_hosts");
    let mut keys = BTreeSet::new();
    for node in lab.nodes() {
        let real = sh(
            lab,
            &node.name,
            "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub",
        );
        let want = format!("{},{} {real}", node.address, node.name);
        assert!(
            known.lines().any(|l| l == want),
            "known_hosts lacks {want:?}:\n{known}"
        );
        assert!(keys.insert(real.clone()), "host key shared between nodes");
    }
    // The same key file with node1's entry carrying node2's key must be refused.
    let dir = lab.dir().join("test-wrong-known-hosts");
    let n1 = lab.node("node1").expect("node1");
    let n2_key = known
        .lines()
        .find(|l| l.contains(",node2 "))
        .and_then(|l| l.split_once(' '))
        .map(|(_, k)| k);
    let wrong = format!(
        "{},{} {}\n",
        n1.address,
        n1.name,
        n2_key.expect("node2 key")
    );
    std::fs::write(&dir, wrong).expect("write");
    let out = lab
        .ssh_command_with_known_hosts("node1", "root", &dir)
        .expect("cmd")
        .args(["--", "true"])
        .output()
        .expect("ssh runs");
    let _ = std::fs::remove_file(&dir);
    assert!(!out.status.success(), "ssh accepted a wrong host key");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Host key verification failed")
            || err.contains("HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );
}

fn file_written_on_node1_is_absent_on_node2(lab: &Lab) {
    let marker = unique_marker();
    sh(
        lab,
        "node1",
        &format!("echo hello > /root/{marker} && sync"),
    );
    assert_eq!(sh(lab, "node1", &format!("cat /root/{marker}")), "hello");
    for other in ["node2", "node3"] {
        let out = sh(
            lab,
            other,
            &format!("test -e /root/{marker} && echo present || echo absent"),
        );
        assert_eq!(out, "absent", "{marker} leaked to {other}");
    }
    assert!(
        !std::path::Path::new("/root").join(&marker).exists(),
        "file landed on the host"
    );
    sh(lab, "node1", &format!("rm /root/{marker}"));
}

fn node1_reaches_node2_by_name(lab: &Lab) {
    let n2 = lab.address("node2").expect("node2");
    assert_eq!(
        sh(lab, "node1", "getent hosts node2 | awk '{print $1}'"),
        n2
    );
    let ping = sh(lab, "node1", "ping -c 2 -W 2 node2");
    assert!(ping.contains(&format!("from node2 ({n2})")), "{ping}");
    // And a TCP connection to node2's sshd, by name.
    let banner = sh(
        lab,
        "node1",
        "timeout 5 bash -c 'exec 3<>/dev/tcp/node2/22; head -c 8 <&3'",
    );
    assert_eq!(banner, "SSH-2.0-");
}

fn inventory_points_at_the_lab(lab: &Lab) {
    let path = lab.inventory();
    let text = std::fs::read_to_string(&path).expect("inventory");
    let inv: toml::Table = toml::from_str(&text).expect("inventory is TOML");
    let dir = path.parent().expect("dir");
    let cluster = inv["cluster"].as_table().expect("[cluster]");
    assert_eq!(cluster["mirror"].as_str(), Some(lab.mirror_url()));
    assert_eq!(cluster["k3s_version"].as_str(), Some("v1.32.5+k3s1"));
    let ssh = inv["ssh"].as_table().expect("[ssh]");
    assert_eq!(ssh["user"].as_str(), Some("lab"));
    assert_eq!(ssh["sudo"].as_bool(), Some(true));
    assert_eq!(ssh["host_key_policy"].as_str(), Some("strict"));
    let key = dir.join(ssh["identity_file"].as_str().expect("identity_file"));
    assert_eq!(key, lab.key());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key mode {mode:o}");
    assert_eq!(
        dir.join(ssh["known_hosts"].as_str().expect("known_hosts")),
        lab.known_hosts()
    );
    let nodes = inv["nodes"].as_array().expect("[[nodes]]");
    assert_eq!(nodes.len(), lab.nodes().len());
    for (i, (n, want)) in nodes.iter().zip(lab.nodes()).enumerate() {
        assert_eq!(n["name"].as_str(), Some(want.name.as_str()));
        assert_eq!(n["address"].as_str(), Some(want.address.as_str()));
        assert_eq!(
            n["role"].as_str(),
            Some(if i == 0 { "server" } else { "agent" })
        );
    }
}

fn mirror_serves_the_host_directory_to_nodes(lab: &Lab) {
    let marker = unique_marker();
    let version_dir = lab.mirror_dir().join("lab-test+probe");
    std::fs::create_dir_all(&version_dir).expect("mkdir");
    std::fs::write(version_dir.join("probe"), &marker).expect("write");
    let url = format!("{}/lab-test%2Bprobe/probe", lab.mirror_url());
    let got = sh(lab, "node2", &format!("curl -fsS --max-time 5 {url}"));
    let _ = std::fs::remove_dir_all(&version_dir);
    assert_eq!(got, marker);
}

fn pi_node_presents_pi_boot_files_without_cgroup_flags(lab: &Lab) {
    let cmdline = sh(lab, PI_NODE, "cat /boot/firmware/cmdline.txt");
    assert_eq!(cmdline.lines().count(), 1, "cmdline.txt is one line");
    assert!(
        cmdline.contains("root=PARTUUID=") && cmdline.contains("rootwait"),
        "{cmdline}"
    );
    assert!(
        !cmdline.contains("cgroup_memory") && !cmdline.contains("cgroup_enable"),
        "{cmdline}"
    );
    assert!(sh(lab, PI_NODE, "cat /boot/firmware/config.txt").contains("arm_64bit=1"));
    assert!(sh(lab, PI_NODE, "cat /etc/rpi-issue").starts_with("Raspberry Pi reference"));
    let plain = sh(
        lab,
        "node1",
        "test -e /boot/firmware/cmdline.txt || test -e /etc/rpi-issue && echo pi || echo plain",
    );
    assert_eq!(plain, "plain", "node1 must not look like a Pi");
}

/// memory's `enabled` column in /proc/cgroups, as pictl's facts read it.
fn memory_enabled(lab: &Lab, node: &str) -> String {
    sh(
        lab,
        node,
        "awk '$1 == \"memory\" { print $4 }' /proc/cgroups",
    )
}

/// The lab's Pi kernel: Raspberry Pi OS's keeps the memory cgroup off until
/// the node boots with `cgroup_enable=memory` (editing the file is not
/// enough); a memory-on kernel has it without the flag. Other nodes are PCs.
fn pi_kernel_has_memory_only_when_booted_with_cgroup_enable_memory(lab: &Lab) {
    assert_eq!(memory_enabled(lab, PI_NODE), "0", "a fresh Pi");
    assert_eq!(memory_enabled(lab, "node1"), "1", "a PC");
    let path = "/boot/firmware/cmdline.txt";
    let fresh = sh(lab, PI_NODE, &format!("cat {path}"));
    sh(
        lab,
        PI_NODE,
        &format!("sed -i '1 s/$/ cgroup_enable=memory/' {path}"),
    );
    assert_eq!(memory_enabled(lab, PI_NODE), "0", "not rebooted yet");
    lab.reboot(PI_NODE).expect("reboot");
    assert_eq!(memory_enabled(lab, PI_NODE), "1", "booted with the flag");
    sh(lab, PI_NODE, &format!("echo '{fresh}' > {path}"));
    lab.pi_kernel(PI_NODE, "memory-on").expect("pi-kernel");
    lab.reboot(PI_NODE).expect("reboot");
    assert_eq!(
        memory_enabled(lab, PI_NODE),
        "1",
        "memory-on kernel, no flag"
    );
    assert!(
        lab.pi_kernel("node1", "memory-on").is_err(),
        "node1 is no Pi"
    );
    lab.pi_kernel(PI_NODE, "memory-off").expect("pi-kernel");
    lab.reboot(PI_NODE).expect("reboot");
    assert_eq!(
        memory_enabled(lab, PI_NODE),
        "0",
        "back to Raspberry Pi OS's"
    );
}

fn network_sysctls_are_writable_inside_nodes_only(lab: &Lab) {
    let host_before =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host sysctl");
    let want = if host_before.trim() == "1" { "0" } else { "1" };
    sh(
        lab,
        "node2",
        &format!("sysctl -w net.ipv4.ip_forward={want}"),
    );
    assert_eq!(sh(lab, "node2", "cat /proc/sys/net/ipv4/ip_forward"), want);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host sysctl"),
        host_before
    );
    assert_ne!(
        sh(lab, "node1", "cat /proc/sys/net/ipv4/ip_forward"),
        want,
        "sysctl leaked to node1"
    );
    let other = if want == "1" { "0" } else { "1" };
    sh(
        lab,
        "node2",
        &format!("sysctl -w net.ipv4.ip_forward={other}"),
    );
}

fn enabled_unit_survives_reboot(lab: &Lab) {
    let node = "node2";
    let unit = "[Unit]\nDescription=lab probe\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n";
    sh(
        lab,
        node,
        &format!(
            "printf '{}' > /etc/systemd/system/lab-probe.service && systemctl daemon-reload",
            unit.replace('\n', "\\n")
        ),
    );
    sh(lab, node, "systemctl enable --now lab-probe.service");
    assert_eq!(
        sh(lab, node, "systemctl is-active lab-probe.service"),
        "active"
    );
    // /run is a tmpfs: a marker there disappears only if the node really rebooted.
    sh(lab, node, "touch /run/lab-before-reboot");
    let pid_before = sh(
        lab,
        node,
        "systemctl show -p MainPID --value lab-probe.service",
    );
    let started = Instant::now();
    let said = lab.reboot(node).unwrap_or_else(|e| panic!("{e:#}"));
    println!(
        "    {} (measured {:.1} s)",
        said.trim(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        sh(
            lab,
            node,
            "test -e /run/lab-before-reboot && echo same-boot || echo rebooted"
        ),
        "rebooted"
    );
    assert_eq!(
        sh(lab, node, "systemctl is-enabled lab-probe.service"),
        "enabled"
    );
    assert_eq!(
        sh(lab, node, "systemctl is-active lab-probe.service"),
        "active"
    );
    assert_eq!(sh(lab, node, "hostname"), node);
    let pid_after = sh(
        lab,
        node,
        "systemctl show -p MainPID --value lab-probe.service",
    );
    assert!(
        pid_after != "0" && !pid_before.is_empty(),
        "probe has no main pid"
    );
    sh(
        lab,
        node,
        "systemctl disable --now lab-probe.service && rm /etc/systemd/system/lab-probe.service",
    );
}

fn kill_makes_ssh_fail_while_the_others_answer(lab: &Lab) {
    let node = "node3";
    let id_before = sh(lab, node, "cat /etc/machine-id");
    let said = lab.kill(node).unwrap_or_else(|e| panic!("{e:#}"));
    println!("    {}", said.trim());
    assert!(ssh_fails(lab, node), "ssh to a killed node succeeded");
    assert_eq!(state_of(lab, node), "stopped");
    for other in ["node1", "node2"] {
        assert_eq!(sh(lab, other, "hostname"), other);
    }
    let said = lab.start_node(node).unwrap_or_else(|e| panic!("{e:#}"));
    println!("    {}", said.trim());
    assert_eq!(
        sh(lab, node, "cat /etc/machine-id"),
        id_before,
        "same node after restart"
    );
    assert_eq!(state_of(lab, node), "running");
}

fn stop_powers_off_cleanly_and_start_boots_again(lab: &Lab) {
    let node = "node2";
    let said = lab.stop(node).unwrap_or_else(|e| panic!("{e:#}"));
    println!("    {}", said.trim());
    assert_eq!(state_of(lab, node), "stopped");
    assert!(ssh_fails(lab, node));
    let console = std::fs::read_to_string(lab.dir().join("nodes").join(node).join("console.log"))
        .unwrap_or_default();
    let last_boot = console.rsplit("--- lab: booting").next().unwrap_or("");
    assert!(
        last_boot.contains("System Halt") || last_boot.contains("Halting system"),
        "not a clean poweroff"
    );
    let said = lab.start_node(node).unwrap_or_else(|e| panic!("{e:#}"));
    println!("    {}", said.trim());
    assert_eq!(sh(lab, node, "systemctl is-system-running"), "running");
}

fn cut_takes_a_node_off_the_network_and_uncut_restores_it(lab: &Lab) {
    let node = "node2";
    lab.cut(node).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(state_of(lab, node), "cut");
    let started = Instant::now();
    assert!(ssh_fails(lab, node), "ssh to a cut node succeeded");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "a cut node times out rather than refusing"
    );
    let ping = lab
        .ssh("node1", "root", "ping -c 1 -W 1 node2")
        .expect("ssh runs");
    assert!(!ping.status.success(), "node1 still reaches a cut node2");
    assert_eq!(sh(lab, "node1", "hostname"), "node1");
    lab.uncut(node).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(state_of(lab, node), "running");
    assert_eq!(sh(lab, node, "hostname"), node);
    sh(lab, "node1", "ping -c 1 -W 2 node2");
}

fn cli_errors_are_clear(lab: &Lab) {
    let run = |args: &[&str]| {
        std::process::Command::new(pictl_e2e::lab::tool())
            .arg("--id")
            .arg(lab.id().to_string())
            .args(args)
            .output()
            .expect("lab runs")
    };
    let out = run(&["ssh", "node9", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown node 'node9'"));
    let out = run(&["frobnicate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown verb 'frobnicate'"));
    for verb in [
        "up", "down", "status", "stop", "start", "kill", "reboot", "cut", "uncut", "ssh", "env",
    ] {
        let out = run(&[verb, "--help"]);
        assert!(out.status.success(), "{verb} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("usage: lab"),
            "{verb} --help"
        );
    }
    let out = run(&["ssh", "node1", "--user", "nobody", "true"]);
    assert!(!out.status.success(), "nobody has no key");
}

fn up_is_idempotent_on_a_healthy_lab(lab: &Lab) {
    let before = machine_ids(lab);
    let started = Instant::now();
    let said = lab.up_again().unwrap_or_else(|e| panic!("{e:#}"));
    println!(
        "    second up: {} ({:.1} s)",
        said.trim(),
        started.elapsed().as_secs_f64()
    );
    assert!(said.contains("already up"), "{said}");
    assert_eq!(machine_ids(lab), before, "a second up replaced the nodes");
}

/// A crash of whatever supervised the lab: the launchers and nspawns die,
/// the nodes themselves keep running as orphans. Returns the orphans' pids.
fn crash_supervisors(lab: &Lab) -> Vec<String> {
    let mut orphans = Vec::new();
    for node in lab.nodes() {
        let dir = lab.dir().join("nodes").join(&node.name);
        for f in ["launcher.pid", "nspawn.pid"] {
            let pid = std::fs::read_to_string(dir.join(f))
                .expect(f)
                .trim()
                .to_string();
            let st = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .expect("kill");
            assert!(st.success());
        }
        let ns = format!("pictl{}-{}", lab.id(), node.name);
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &ns])
            .output()
            .expect("ip");
        orphans.extend(
            String::from_utf8_lossy(&pids.stdout)
                .split_whitespace()
                .map(String::from),
        );
    }
    assert!(!orphans.is_empty(), "nodes should survive their supervisor");
    orphans
}

fn assert_gone(pids: &[String]) {
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let live = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'));
        assert!(!live, "orphan {pid} survived: {stat}");
    }
}

fn down_recovers_from_a_crashed_run(lab: &Lab) {
    lab.cut("node1").unwrap_or_else(|e| panic!("{e:#}"));
    let orphans = crash_supervisors(lab);
    lab.tool(&["down"]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_gone(&orphans);
    let leaks = pictl_e2e::leaks(lab.id());
    assert!(leaks.is_empty(), "down after a crash left: {leaks:#?}");
    let said = lab.up_again().unwrap_or_else(|e| panic!("{e:#}"));
    println!("    up again: {}", said.trim());
    assert!(said.contains("from cached base"), "{said}");
}

fn up_recovers_from_a_crashed_run(lab: &Lab) {
    let orphans = crash_supervisors(lab);
    let before = machine_ids(lab);
    let started = Instant::now();
    let said = lab.up_again().unwrap_or_else(|e| panic!("{e:#}"));
    println!(
        "    up after a crash: {} ({:.1} s)",
        said.trim(),
        started.elapsed().as_secs_f64()
    );
    assert_gone(&orphans);
    let after = machine_ids(lab);
    assert!(
        before.iter().all(|m| !after.contains(m)),
        "nodes were not recreated"
    );
    for (node, state) in lab.node_states().expect("status") {
        assert_eq!(state, "running", "{node}");
    }
}
