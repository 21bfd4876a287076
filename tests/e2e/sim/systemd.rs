//! The lab cases: the simulator installed from the lab's mirror under a
//! node's systemd with K3s's own units, and a Pi node that needs its
//! cmdline and a reboot.

use super::*;

/// install.sh's unit for `role` (server or agent), no flags.
fn install_sh_unit(role: &str) -> String {
    format!(
        "{}{role}\n",
        pictl_e2e::k3s::install_sh_unit("/etc/systemd/system/%N.service.env")
    )
}

fn install_cmd(mirror: &str, version: &str) -> String {
    let v = version.replace('+', "%2B");
    format!(
        "set -e; cd /tmp; curl -fsS -o k3s.dl {mirror}/{v}/k3s; curl -fsS -o sums.txt {mirror}/{v}/sha256sum-amd64.txt; \
         grep '  k3s$' sums.txt | sed 's/k3s$/k3s.dl/' | sha256sum -c --quiet; install -m 0755 k3s.dl /usr/local/bin/k3s; rm -f k3s.dl sums.txt"
    )
}

fn write_file_cmd(path: &str, content: &str, mode: &str) -> String {
    format!(
        "mkdir -p $(dirname {path}) && printf '%s' '{}' > {path} && chmod {mode} {path}",
        content.replace('\'', "'\\''")
    )
}

pub fn k3s_sim_under_systemd_with_k3s_units(lab: &Lab) {
    lab.populate_mirror().expect("populate mirror");
    let mirror = lab.mirror_url().trim_end_matches('/').to_string();
    let server_ip = lab.address("node1").expect("node1").to_string();
    // Server: installed from the mirror, K3s's unit, Type=notify.
    lab.ssh_ok("node1", "root", &install_cmd(&mirror, "v1.32.5+k3s1"))
        .expect("install on node1");
    let cfg = format!(
        "node-name: node1\nwrite-kubeconfig-mode: \"0600\"\ntls-san:\n  - {server_ip}\nkube-controller-manager-arg:\n  - node-monitor-grace-period=6s\n"
    );
    lab.ssh_ok(
        "node1",
        "root",
        &write_file_cmd("/etc/rancher/k3s/config.yaml", &cfg, "0600"),
    )
    .expect("config");
    lab.ssh_ok(
        "node1",
        "root",
        &write_file_cmd(
            "/etc/systemd/system/k3s.service",
            &install_sh_unit("server"),
            "0644",
        ),
    )
    .expect("unit");
    lab.ssh_ok(
        "node1",
        "root",
        "systemctl daemon-reload && systemctl enable --now k3s.service",
    )
    .expect("start k3s");
    assert_eq!(
        lab.ssh_ok("node1", "root", "systemctl is-active k3s")
            .expect("is-active"),
        "active"
    );
    assert_eq!(
        lab.ssh_ok("node1", "root", "curl -fsS http://127.0.0.1:10248/healthz")
            .expect("healthz"),
        "ok"
    );
    let token = lab
        .ssh_ok("node1", "root", "cat /var/lib/rancher/k3s/server/token")
        .expect("token");
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "token format"
    );
    assert_eq!(
        lab.ssh_ok(
            "node1",
            "root",
            "stat -c %a /var/lib/rancher/k3s/server/token"
        )
        .expect("stat"),
        "600"
    );

    // Agent on node2 with K3s's agent unit.
    lab.ssh_ok("node2", "root", &install_cmd(&mirror, "v1.32.5+k3s1"))
        .expect("install on node2");
    let acfg = format!("server: https://{server_ip}:6443\ntoken: {token}\n");
    lab.ssh_ok(
        "node2",
        "root",
        &write_file_cmd("/etc/rancher/k3s/config.yaml", &acfg, "0600"),
    )
    .expect("agent config");
    lab.ssh_ok(
        "node2",
        "root",
        &write_file_cmd(
            "/etc/systemd/system/k3s-agent.service",
            &install_sh_unit("agent"),
            "0644",
        ),
    )
    .expect("agent unit");
    lab.ssh_ok(
        "node2",
        "root",
        "systemctl daemon-reload && systemctl enable --now k3s-agent.service",
    )
    .expect("start agent");
    assert_eq!(
        lab.ssh_ok("node2", "root", "systemctl is-active k3s-agent")
            .expect("is-active"),
        "active"
    );

    // kubectl on the host, through node1's address.
    let scratch = Scratch::new("lab");
    let kc = scratch.0.join("kubeconfig");
    let text = lab
        .ssh_ok("node1", "root", "cat /etc/rancher/k3s/k3s.yaml")
        .expect("kubeconfig");
    std::fs::write(
        &kc,
        text.replace(
            "https://127.0.0.1:6443",
            &format!("https://{server_ip}:6443"),
        ),
    )
    .expect("write kc");
    let cache = scratch.0.join("cache");
    let k = |args: &[&str]| {
        let out = kubectl_with(&kc, &cache, args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    k(&[
        "wait",
        "--for=condition=Ready",
        "node/node1",
        "node/node2",
        "--timeout=30s",
    ]);
    let nodes = k(&["get", "nodes"]);
    assert!(
        nodes.lines().any(|l| l.starts_with("node1 ")
            && l.contains(" Ready ")
            && l.contains("control-plane,master")),
        "{nodes}"
    );
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node2 ") && l.contains(" Ready ") && l.contains("<none>")),
        "{nodes}"
    );
    let node2 = json(&k(&["get", "node", "node2", "-o", "json"]));
    let ip = node2["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .map(|x| x["address"].clone());
    assert_eq!(
        ip,
        Some(serde_json::json!(lab.address("node2").expect("node2")))
    );

    // Stopping the agent's unit makes node2 NotReady; restarting brings it back.
    lab.ssh_ok("node2", "root", "systemctl stop k3s-agent")
        .expect("stop agent");
    k(&[
        "wait",
        "--for=condition=Ready=Unknown",
        "node/node2",
        "--timeout=40s",
    ]);
    lab.ssh_ok("node2", "root", "systemctl start k3s-agent")
        .expect("start agent");
    k(&[
        "wait",
        "--for=condition=Ready",
        "node/node2",
        "--timeout=30s",
    ]);

    // Upgrade: the v1.33.1 binary from the mirror, restart, the node reports it.
    let cm = scratch.0.join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: survives, namespace: default}\ndata: {a: b}\n").expect("cm");
    k(&["apply", "--server-side", "-f", cm.to_str().expect("utf8")]);
    lab.ssh_ok(
        "node1",
        "root",
        &format!(
            "{} && systemctl restart k3s",
            install_cmd(&mirror, "v1.33.1+k3s1")
        ),
    )
    .expect("upgrade");
    assert_eq!(
        lab.ssh_ok("node1", "root", "systemctl is-active k3s")
            .expect("is-active"),
        "active"
    );
    assert!(
        lab.ssh_ok("node1", "root", "k3s --version")
            .expect("version")
            .starts_with("k3s version v1.33.1+k3s1")
    );
    let start = Instant::now();
    loop {
        let v = kubectl_with(
            &kc,
            &cache,
            &[
                "get",
                "node",
                "node1",
                "-o",
                "jsonpath={.status.nodeInfo.kubeletVersion}",
            ],
        );
        if String::from_utf8_lossy(&v.stdout) == "v1.33.1+k3s1" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node1 never reported v1.33.1+k3s1"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        k(&["get", "cm", "survives", "-o", "jsonpath={.data.a}"]),
        "b",
        "objects survive the upgrade"
    );
}

/// The lab's Pi node (node3) as K3s sees it: the lab's Pi kernel has no
/// memory controller until the node booted with `cgroup_enable=memory` in its
/// cmdline.txt; `k3s check-config` and `k3s server` agree.
pub fn pi_node_needs_cmdline_and_reboot(lab: &Lab) {
    lab.populate_mirror().expect("populate mirror");
    let mirror = lab.mirror_url().trim_end_matches('/').to_string();
    lab.ssh_ok("node3", "root", &install_cmd(&mirror, "v1.32.5+k3s1"))
        .expect("install on node3");
    let check = || {
        lab.ssh("node3", "root", "k3s check-config")
            .expect("check-config")
    };
    let out = check();
    assert!(
        !out.status.success(),
        "a fresh Pi lacks the memory controller"
    );
    let out = lab
        .ssh(
            "node3",
            "root",
            "k3s server --node-name pi 2>&1 | tail -n 3",
        )
        .expect("server");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("failed to find memory cgroup"), "{text}");
    lab.ssh_ok(
        "node3",
        "root",
        "sed -i '1 s/$/ cgroup_enable=memory/' /boot/firmware/cmdline.txt",
    )
    .expect("fix cmdline");
    assert!(!check().status.success(), "not rebooted yet");
    lab.reboot("node3").expect("reboot node3");
    let start = Instant::now();
    loop {
        if let Ok(o) = lab.ssh("node3", "root", "k3s check-config")
            && o.status.success()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "check-config still fails after the reboot"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
