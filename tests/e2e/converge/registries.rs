//! `[registries]` and secret K3s settings against the simulator, which
//! reads registries.yaml only when K3s starts (as K3s's containerd setup
//! does): the hosts file K3s writes from it shows the restart happened
//! after pictl's write, and an unchanged file restarts nothing.

use super::*;

const PASSWORD: &str = "lab-registry-pw-7f3a";
const S3_SECRET: &str = "lab-s3-secret-91c2";

const REGISTRIES: &str = r#"
[registries.mirrors."docker.io"]
endpoint = ["https://registry.lan:5000"]
rewrite = { "^library/(.*)" = "mirror/library/$1" }
[registries.configs."registry.lan:5000"]
auth = { username = "pi", password = { env = "PICTL_LAB_REGISTRY_PW" } }
"#;

fn with_secrets(lab: &Lab, inv: &Path, args: &[&str]) -> Output {
    pictl_cmd(lab, inv, args)
        .env("PICTL_LAB_REGISTRY_PW", PASSWORD)
        .env("PICTL_LAB_S3_SECRET", S3_SECRET)
        .output()
        .expect("run pictl")
}

fn on(lab: &Lab, node: &str, cmd: &str) -> String {
    lab.ssh_ok(node, "root", cmd)
        .unwrap_or_else(|e| panic!("{node}: {cmd}: {e}"))
}

pub fn registries_reach_k3s_with_a_restart_only_when_changed(lab: &Lab) {
    ensure_converged(lab);
    let base = inventory_with(
        lab,
        "server_config = { \"etcd-s3-secret-key\" = { env = \"PICTL_LAB_S3_SECRET\" } }",
        "inventory-registries.toml",
    );
    let mut body = std::fs::read_to_string(&base).expect("inventory");
    body.push_str(REGISTRIES);
    std::fs::write(&base, body).expect("write inventory");

    let plan = with_secrets(lab, &base, &["plan", "--diff"]);
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    for n in ["node1", "node2", "node3"] {
        assert!(shown.contains(&format!("{n} k3s-registries")), "{shown}");
    }
    assert!(shown.contains("password: <redacted>"), "{shown}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains(S3_SECRET),
        "{shown}"
    );

    let out = with_secrets(lab, &base, &["apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(!all.contains(PASSWORD) && !all.contains(S3_SECRET), "{all}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json report");
    for n in ["node1", "node2", "node3"] {
        let changed = steps(&v, n, "changed");
        assert!(
            changed.contains(&"k3s-registries".to_string()),
            "{n}: {v:#}"
        );
        assert!(changed.contains(&"k3s-service".to_string()), "{n}: {v:#}");
        assert_eq!(
            on(lab, n, "stat -c '%a %U' /etc/rancher/k3s/registries.yaml").trim(),
            "600 root"
        );
        // Written by K3s from registries.yaml when it started: the restart came after the write.
        let hosts = on(
            lab,
            n,
            "cat /var/lib/rancher/k3s/agent/etc/containerd/certs.d/docker.io/hosts.toml",
        );
        assert!(
            hosts.contains("[host.\"https://registry.lan:5000/v2\"]"),
            "{n}: {hosts}"
        );
        assert!(hosts.contains("mirror/library/$1"), "{n}: {hosts}");
        let auth = on(
            lab,
            n,
            "cat /var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        );
        assert!(
            auth.contains(&format!("password = \"{PASSWORD}\"")),
            "{n}: {auth}"
        );
    }
    let config = on(lab, "node1", "cat /etc/rancher/k3s/config.yaml");
    assert!(
        config.contains(&format!("etcd-s3-secret-key: {S3_SECRET}")),
        "{config}"
    );

    // Nothing changed: nothing written, nothing restarted.
    let started: Vec<String> = ["node1", "node2"]
        .iter()
        .map(|n| unit_started(lab, n, unit_of(n)))
        .collect();
    let out = with_secrets(lab, &base, &["apply", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json report");
    for n in ["node1", "node2", "node3"] {
        assert!(steps(&v, n, "changed").is_empty(), "{n}: {v:#}");
    }
    for (i, n) in ["node1", "node2"].iter().enumerate() {
        assert_eq!(
            unit_started(lab, n, unit_of(n)),
            started[i],
            "{n} restarted"
        );
    }

    // An unset variable stops the run by name before any node is touched.
    let out = pictl_cmd(lab, &base, &["apply"])
        .env_remove("PICTL_LAB_REGISTRY_PW")
        .env("PICTL_LAB_S3_SECRET", S3_SECRET)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("PICTL_LAB_REGISTRY_PW is not set"),
        "{}",
        text(&out)
    );

    // Back to the lab's inventory: the file is no longer pictl's and is left.
    for n in ["node1", "node2", "node3"] {
        on(lab, n, "rm -f /etc/rancher/k3s/registries.yaml");
    }
    ensure_converged(lab);
}

/// An endpoint K3s would skip with a warning in its log is refused by
/// `validate`, naming its line.
pub fn a_registry_endpoint_k3s_would_skip_is_refused_by_validate_with_its_line(lab: &Lab) {
    let path = lab.dir().join("inventory-bad-registry.toml");
    let mut body = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let line = body.lines().count() + 3;
    body.push_str(
        "\n[registries.mirrors.\"docker.io\"]\nendpoint = [\"https://registry lan:5000\"]\n",
    );
    std::fs::write(&path, body).expect("write");
    let out = pictl(lab, &path, &["validate"]);
    let shown = text(&out);
    assert_ne!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!("inventory-bad-registry.toml:{line}:")),
        "{shown}"
    );
    assert!(shown.contains("is not a URL"), "{shown}");
}
