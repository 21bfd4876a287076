//! Adoption: clusters laid out as K3s's install.sh leaves them, taken over
//! when the inventory carries their settings and refused by name when it
//! does not, and a node uninstalled with K3s's own script.

use super::*;

/// Lays `node` out as K3s's install.sh leaves it (its documented layout,
/// written here, not copied): the release binary, the kubectl/crictl/ctr
/// symlinks, killall and uninstall scripts, the unit with each flag quoted
/// on its own line in `ExecStart`, and the unit's `.service.env` (0600)
/// with the `K3S_` variables; then enables and starts it. Whatever pictl
/// had installed is removed first, but not /etc/rancher/node (the node
/// password, which install.sh keeps too).
fn install_sh(lab: &Lab, node: &str, flags: &[&str], env: &str) {
    let (unit, command) = if node == "node1" {
        ("k3s.service", "server")
    } else {
        ("k3s-agent.service", "agent")
    };
    let quoted: String = flags.iter().map(|f| format!("\t'{f}' \\\n")).collect();
    let script = format!(
        r#"set -eu
systemctl disable --now k3s.service k3s-agent.service >/dev/null 2>&1 || true
rm -rf /etc/rancher/k3s /var/lib/rancher /var/lib/pictl /etc/systemd/system/k3s*.service /etc/systemd/system/k3s*.service.env
curl -fsS -o /usr/local/bin/k3s {mirror}/{version}/k3s && chmod 755 /usr/local/bin/k3s
for cmd in kubectl crictl ctr; do ln -sf k3s /usr/local/bin/$cmd; done
printf '#!/bin/sh\nfor s in /etc/systemd/system/k3s*.service; do systemctl stop "$(basename "$s")"; done\n' > /usr/local/bin/k3s-killall.sh
printf '#!/bin/sh\n/usr/local/bin/k3s-killall.sh\nsystemctl disable {unit}\nrm -f /etc/systemd/system/{unit} /etc/systemd/system/{unit}.env\n' > /usr/local/bin/{name}-uninstall.sh
chmod 755 /usr/local/bin/k3s-killall.sh /usr/local/bin/{name}-uninstall.sh
install -m 600 /dev/null /etc/systemd/system/{unit}.env
cat > /etc/systemd/system/{unit}.env <<'ENV'
{env}ENV
cat > /etc/systemd/system/{unit} <<'UNIT'
{unit_text}\
    {command} \
{quoted}
UNIT
systemctl daemon-reload
systemctl enable {unit} >/dev/null 2>&1
timeout 60 systemctl start {unit}
"#,
        mirror = lab.mirror_url(),
        unit_text = pictl_e2e::k3s::install_sh_unit(&format!("/etc/systemd/system/{unit}.env")),
        version = OLD.replace('+', "%2B"),
        name = unit.trim_end_matches(".service"),
    );
    lab.ssh_ok(node, "root", &script)
        .unwrap_or_else(|e| panic!("install.sh layout on {node}: {e}"));
}

/// The whole lab as install.sh users leave it: the server without
/// traefik, the agents joined with `K3S_URL`/`K3S_TOKEN`.
fn install_sh_cluster(lab: &Lab) {
    install_sh_cluster_with(lab, &["--disable", "traefik"]);
}

/// [`install_sh_cluster`] with the server's `flags`.
fn install_sh_cluster_with(lab: &Lab, server_flags: &[&str]) {
    // The Pi has its cgroup flags (install.sh users set them by hand, as
    // K3s's docs say; here pictl's first run did).
    ensure_converged(lab);
    let _ = std::fs::remove_dir_all(lab.dir().join("state"));
    install_sh(
        lab,
        "node1",
        server_flags,
        "HTTP_PROXY='http://proxy.lab:3128'\n",
    );
    let token = lab
        .ssh_ok("node1", "root", "cat /var/lib/rancher/k3s/server/token")
        .expect("server token");
    let server = lab.address("node1").expect("node1");
    let env = format!(
        "K3S_URL='https://{server}:6443'\nK3S_TOKEN='{}'\n",
        token.trim()
    );
    for agent in ["node2", "node3"] {
        install_sh(lab, agent, &[], &env);
    }
}

pub fn an_install_sh_cluster_matching_the_inventory_is_taken_over_without_a_restart(lab: &Lab) {
    install_sh_cluster(lab);
    assert_token_links(lab);
    let before: Vec<String> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| unit_started(lab, n, unit_of(n)))
        .collect();
    let inv = inventory_with(
        lab,
        "server_config = { disable = [\"traefik\"] }",
        "inventory-adopt.toml",
    );
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    for (i, n) in ["node1", "node2", "node3"].iter().enumerate() {
        assert!(
            steps(&v, n, "changed").contains(&"k3s-adopt".to_string()),
            "{v:#}"
        );
        assert_eq!(
            unit_started(lab, n, unit_of(n)),
            before[i],
            "{n}'s K3s was restarted"
        );
        let unit = lab
            .ssh_ok(
                n,
                "root",
                &format!("head -n1 /etc/systemd/system/{}", unit_of(n)),
            )
            .expect("unit");
        assert!(unit.starts_with("# Managed by pictl"), "{n}: {unit}");
        let env = lab
            .ssh_ok(
                n,
                "root",
                &format!(
                    "cat /etc/systemd/system/{}.env; stat -c %a /etc/systemd/system/{}.env",
                    unit_of(n),
                    unit_of(n)
                ),
            )
            .expect("env");
        assert!(!env.contains("K3S_"), "{n} still has K3S_ variables: {env}");
        assert!(env.trim_end().ends_with("600"), "{n}: {env}");
    }
    let node1_env = lab
        .ssh_ok("node1", "root", "cat /etc/systemd/system/k3s.service.env")
        .expect("env");
    assert!(
        node1_env.contains("HTTP_PROXY='http://proxy.lab:3128'"),
        "{node1_env}"
    );
    // No agent token was configured, and none is made up from the symlink.
    let config = lab
        .ssh_ok("node1", "root", "cat /etc/rancher/k3s/config.yaml")
        .expect("config");
    assert!(!config.contains("agent-token"), "{config}");
    assert_token_links(lab);
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{}", text(&out));
    for (i, n) in ["node1", "node2", "node3"].into_iter().enumerate() {
        assert!(
            steps(&v, n, "changed").is_empty(),
            "second run changed {n}: {v:#}"
        );
        assert_eq!(
            unit_started(lab, n, unit_of(n)),
            before[i],
            "{n}'s K3s was restarted"
        );
    }

    // The switch: the adopted cluster gets an agent token. The server
    // restarts once to take it; the agents move to the `::node:` form.
    let adopt = std::fs::read_to_string(&inv).expect("inventory");
    let inv = lab.dir().join("inventory-adopt-agent-token.toml");
    std::fs::write(
        &inv,
        adopt.replacen("[cluster]\n", "[cluster]\nadd_agent_token = true\n", 1),
    )
    .expect("write");
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    for n in ["node1", "node2", "node3"] {
        let changed = steps(&v, n, "changed");
        assert!(changed.contains(&"k3s-service".to_string()), "{n}: {v:#}");
    }
    let config = lab
        .ssh_ok("node1", "root", "cat /etc/rancher/k3s/config.yaml")
        .expect("config");
    assert!(config.contains("agent-token: "), "{config}");
    let file = lab
        .ssh_ok(
            "node1",
            "root",
            "f=/var/lib/rancher/k3s/server/agent-token; [ ! -L $f ] && cat $f",
        )
        .expect("K3s wrote its agent token as a file of its own");
    assert!(file.contains("::node:"), "{file}");
    for n in ["node2", "node3"] {
        let config = lab
            .ssh_ok(n, "root", "cat /etc/rancher/k3s/config.yaml")
            .expect("config");
        assert!(
            config.contains("::node:") && !config.contains("::server:"),
            "{n} still holds the server token"
        );
    }
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{}", text(&out));
    for n in ["node1", "node2", "node3"] {
        assert!(steps(&v, n, "changed").is_empty(), "{n}: {v:#}");
    }
}

/// Applies `inventory`, which must succeed without restarting `node`'s K3s
/// unit (its start was `started`; `restarted` is the message if it was).
fn taken_over_as_it_runs(lab: &Lab, inventory: &Path, node: &str, started: &str, restarted: &str) {
    let (code, v, out) = apply_json(lab, inventory);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    assert_eq!(
        unit_started(lab, node, unit_of(node)),
        started,
        "{restarted}"
    );
}

/// Applies the lab's inventory carrying only the server's `disable =
/// [traefik]` (as `name`), which must fail; why `node_name` was refused, and the
/// report.
fn refused_without_carrying(lab: &Lab, node_name: &str, name: &str) -> (String, Value) {
    let inv = inventory_with(lab, "server_config = { disable = [\"traefik\"] }", name);
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 1, "{v:#}\n{}", text(&out));
    let why = node(&v, node_name)["failed"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (why, v)
}

pub fn a_setting_the_inventory_does_not_carry_is_refused_by_name_until_it_is_carried(lab: &Lab) {
    install_sh_cluster(lab);
    let token = lab
        .ssh_ok("node1", "root", "cat /var/lib/rancher/k3s/server/token")
        .expect("server token");
    let server = lab.address("node1").expect("node1");
    let env = format!(
        "K3S_URL='https://{server}:6443'\nK3S_TOKEN='{}'\n",
        token.trim()
    );
    install_sh(lab, "node2", &["--kubelet-arg", "max-pods=50"], &env);
    let started = unit_started(lab, "node2", "k3s-agent.service");
    let (why, v) = refused_without_carrying(lab, "node2", "inventory-adopt.toml");
    assert!(why.contains("kubelet-arg = [max-pods=50]"), "{v:#}");
    let unit = lab
        .ssh_ok(
            "node2",
            "root",
            "head -n1 /etc/systemd/system/k3s-agent.service",
        )
        .expect("unit");
    assert!(
        !unit.starts_with("# Managed by pictl"),
        "the refused node was taken over"
    );
    let carried = inventory_with(
        lab,
        "server_config = { disable = [\"traefik\"] }\nagent_config = { \"kubelet-arg\" = [\"max-pods=50\"] }",
        "inventory-adopt-carried.toml",
    );
    taken_over_as_it_runs(lab, &carried, "node2", &started, "node2 was restarted");
    let config = lab
        .ssh_ok("node2", "root", "cat /etc/rancher/k3s/config.yaml")
        .expect("config");
    assert!(config.contains("max-pods=50"), "{config}");
}

/// The server's K3s token files as K3s leaves them without an agent token:
/// `node-token` and `agent-token` both symlinks to `token`.
fn assert_token_links(lab: &Lab) {
    let links = lab
        .ssh_ok(
            "node1",
            "root",
            "cd /var/lib/rancher/k3s/server && readlink node-token agent-token; test ! -L token && echo token-is-a-file",
        )
        .expect("token files");
    let want =
        "/var/lib/rancher/k3s/server/token\n/var/lib/rancher/k3s/server/token\ntoken-is-a-file";
    assert_eq!(links.trim(), want, "{links}");
}

/// `extra` under `[cluster]` and `node_keys` under node1, in a copy of the
/// lab's inventory named `name`.
fn inventory_with_server_keys(lab: &Lab, extra: &str, node_keys: &str, name: &str) -> PathBuf {
    let path = inventory_with(lab, extra, name);
    let text = std::fs::read_to_string(&path).expect("inventory");
    let marker = "name = \"node1\"\n";
    std::fs::write(
        &path,
        text.replacen(marker, &format!("{marker}{node_keys}\n"), 1),
    )
    .expect("write");
    path
}

pub fn an_install_sh_server_with_extra_names_labels_and_mode_loses_nothing(lab: &Lab) {
    let flags = [
        "--disable",
        "traefik",
        "--tls-san",
        "k3s.lab.example",
        "--node-label",
        "example.com/shelf=top",
        "--write-kubeconfig-mode",
        "644",
    ];
    install_sh_cluster_with(lab, &flags);
    let before = unit_started(lab, "node1", "k3s.service");
    // Not carried by the inventory: refused, each named with where it goes.
    let (why, _) = refused_without_carrying(lab, "node1", "inventory-adopt-extras.toml");
    for want in [
        "tls-san = k3s.lab.example (add to [cluster] tls_san)",
        "node-label = example.com/shelf=top (add to the node's labels)",
        "write-kubeconfig-mode = 644 (add to [cluster] server_config",
    ] {
        assert!(why.contains(want), "{want} not in: {why}");
    }
    // Carried: taken over as it runs, nothing restarted, nothing lost.
    let carried = inventory_with_server_keys(
        lab,
        "server_config = { disable = [\"traefik\"], \"write-kubeconfig-mode\" = \"0644\" }\ntls_san = [\"k3s.lab.example\"]",
        "labels = { \"example.com/shelf\" = \"top\" }",
        "inventory-adopt-extras-carried.toml",
    );
    taken_over_as_it_runs(lab, &carried, "node1", &before, "node1's K3s was restarted");
    let config = lab
        .ssh_ok(
            "node1",
            "root",
            "cat /etc/rancher/k3s/config.yaml; stat -c 'mode=%a' /etc/rancher/k3s/k3s.yaml",
        )
        .expect("config");
    for want in [
        "k3s.lab.example",
        "write-kubeconfig-mode",
        "0644",
        "mode=644",
    ] {
        assert!(config.contains(want), "{want} not in {config}");
    }
    assert!(!config.contains("agent-token"), "{config}");
    assert_token_links(lab);
    let labels = kubectl(
        lab,
        &["get", "node", "node1", "-o", "jsonpath={.metadata.labels}"],
    );
    assert!(labels.contains("\"example.com/shelf\":\"top\""), "{labels}");
    let (code, v, out) = apply_json(lab, &carried);
    assert_eq!(code, 0, "{}", text(&out));
    for n in ["node1", "node2", "node3"] {
        assert!(
            steps(&v, n, "changed").is_empty(),
            "second run changed {n}: {v:#}"
        );
    }
    assert_eq!(
        unit_started(lab, "node1", "k3s.service"),
        before,
        "node1's K3s was restarted"
    );
}

pub fn the_uninstall_script_removes_k3s_and_apply_puts_the_node_back(lab: &Lab) {
    ensure_converged(lab);
    let links = lab
        .ssh_ok(
            "node2",
            "root",
            "readlink /usr/local/bin/kubectl /usr/local/bin/crictl /usr/local/bin/ctr",
        )
        .expect("links");
    assert_eq!(
        links.split_whitespace().collect::<Vec<_>>(),
        ["k3s", "k3s", "k3s"]
    );
    lab.ssh_ok("node2", "root", "/usr/local/bin/k3s-agent-uninstall.sh")
        .expect("uninstall");
    let left = lab
        .ssh_ok(
            "node2",
            "root",
            "for f in /usr/local/bin/k3s /usr/local/bin/kubectl /etc/systemd/system/k3s-agent.service \
             /etc/rancher/k3s /var/lib/rancher/k3s /usr/local/bin/k3s-killall.sh; do [ -e $f ] && echo $f; done; \
             systemctl is-active k3s-agent.service || true",
        )
        .expect("check");
    assert_eq!(left.trim(), "inactive", "left behind: {left}");
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    assert!(
        steps(&v, "node2", "changed").contains(&"k3s-binary".to_string()),
        "{v:#}"
    );
    let table = wait_all_ready(lab, OLD);
    assert!(table.iter().all(|(_, s, _, _)| s == "Ready"), "{table:?}");
}
