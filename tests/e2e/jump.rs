//! Nodes behind a jump host (issue 24: "SSH as people configure it"). On
//! node2 and node3 a firewall rule refuses SSH connections from the
//! controller (the host's address on the lab bridge), so only node1, the
//! bastion, reaches them. A direct `plan` finds them unreachable; `apply`
//! with `proxy_jump` in the inventory bootstraps them through node1 and a
//! second run changes nothing; an ssh_config with a Host alias and
//! `ProxyJump` reaches them the same way; a bastion whose key does not match
//! known_hosts is refused, and the error names the jump host; a node down
//! behind the bastion is unreachable through it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Once;

use pictl_e2e::pictl::{self, node, steps, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};
use serde_json::Value;

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const BEHIND: [&str; 2] = ["node2", "node3"];

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        nodes_behind_the_bastion_are_unreachable_directly,
        apply_through_proxy_jump_bootstraps_and_a_rerun_changes_nothing,
        an_ssh_config_alias_with_proxy_jump_reaches_the_nodes,
        a_bastion_whose_key_does_not_match_is_refused_naming_it,
        a_node_down_behind_the_bastion_is_unreachable_through_it,
    ];
    harness::run(cases, LabSpec { nodes: 3, pi: &[] })
}

/// Once per lab: node2 and node3 refuse new SSH connections from the
/// controller (a TCP reset, so "unreachable" comes fast); node1 still
/// reaches them.
fn wall_off(lab: &Lab) {
    static WALL: Once = Once::new();
    WALL.call_once(|| {
        let rule = format!(
            "iptables -I INPUT -s {} -p tcp --dport 22 --syn -j REJECT --reject-with tcp-reset",
            lab.host_address()
        );
        for n in BEHIND {
            lab.ssh_ok(n, "root", &rule).expect("firewall rule");
            let direct = lab.ssh(n, "root", "true").expect("run ssh");
            assert!(!direct.status.success(), "{n} still reachable directly");
        }
    });
}

/// The lab's inventory with `ssh` added to `[ssh]` and `agents` to each
/// agent's (node2's and node3's) `[nodes.ssh]`; beside the lab's, so its
/// relative paths (key, known_hosts, state) stay the lab's.
fn inventory(lab: &Lab, name: &str, ssh: &str, agents: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).expect("inventory");
    // The lab's own `ssh_config = "none"` gives way to the case's.
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ssh_config"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text
        .replacen(
            "[ssh]\n",
            &format!("[ssh]\n{ssh}\nconnect_timeout = 3\n"),
            1,
        )
        .replace(
            "role = \"agent\"\n",
            &format!("role = \"agent\"\n[nodes.ssh]\n{agents}\n"),
        );
    let path = lab.dir().join(name);
    std::fs::write(&path, text).expect("write inventory");
    path
}

fn bastion(lab: &Lab) -> &str {
    lab.address("node1").expect("node1")
}

/// An inventory whose `ssh_config` (beside it) sends the agents' addresses
/// through `Host bastion` (node1), whose key is checked in `known_hosts`.
fn ssh_config_inventory(lab: &Lab, name: &str, known_hosts: &str) -> PathBuf {
    let agents: Vec<&str> = BEHIND
        .iter()
        .map(|n| lab.address(n).expect("addr"))
        .collect();
    let text = format!(
        "Host {}\n    ProxyJump bastion\n\nHost bastion\n    HostName {}\n    User lab\n    \
         IdentityFile {}\n    UserKnownHostsFile {}\n",
        agents.join(" "),
        bastion(lab),
        lab.key().display(),
        lab.dir().join(known_hosts).display(),
    );
    let config = format!("{name}-ssh_config");
    std::fs::write(lab.dir().join(&config), text).expect("write ssh_config");
    let ssh = format!("ssh_config = \"{config}\"");
    inventory(lab, &format!("{name}.toml"), &ssh, "")
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(out)))
}

fn apply(lab: &Lab, inv: &Path) -> (i32, Value, std::process::Output) {
    pictl::apply_json(pictl::lab_command(lab, inv, &[]))
}

/// Every node reached, nothing failed, nothing left to change.
fn assert_converged_without_changes(lab: &Lab, inv: &Path) {
    let (code, v, out) = apply(lab, inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    for n in NODES {
        assert!(node(&v, n)["unreachable"].is_null(), "{n}: {v:#}");
        assert_eq!(steps(&v, n, "changed"), Vec::<String>::new(), "{n}: {v:#}");
    }
}

fn nodes_behind_the_bastion_are_unreachable_directly(lab: &Lab) {
    wall_off(lab);
    let inv = inventory(lab, "jump-direct.toml", "ssh_config = \"none\"", "");
    let out = pictl::run(lab, &inv, &["plan", "--output", "json"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    for n in BEHIND {
        let why = node(&v, n)["unreachable"].as_str().unwrap_or_default();
        let address = format!("{}:22", lab.address(n).expect("addr"));
        assert!(why.contains(&address), "{n}: {v:#}");
    }
    assert!(node(&v, "node1")["unreachable"].is_null(), "{v:#}");
}

fn apply_through_proxy_jump_bootstraps_and_a_rerun_changes_nothing(lab: &Lab) {
    wall_off(lab);
    let hop = format!("proxy_jump = \"lab@{}:22\"", bastion(lab));
    let inv = inventory(lab, "jump-inventory.toml", "ssh_config = \"none\"", &hop);
    let (code, v, out) = apply(lab, &inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    for n in BEHIND {
        let changed = steps(&v, n, "changed");
        assert!(changed.contains(&"k3s-binary".to_owned()), "{n}: {v:#}");
    }
    let nodes = pictl::lab_kubectl(lab, &["get", "nodes", "-o", "name"]);
    for n in NODES {
        assert!(
            nodes.contains(&format!("node/{n}")),
            "{n} not registered: {nodes}"
        );
    }
    assert_converged_without_changes(lab, &inv);
    let direct = lab.ssh("node2", "root", "true").expect("run ssh");
    assert!(!direct.status.success(), "the wall still stands");
}

fn an_ssh_config_alias_with_proxy_jump_reaches_the_nodes(lab: &Lab) {
    wall_off(lab);
    let inv = ssh_config_inventory(lab, "jump-alias", "known_hosts");
    assert_converged_without_changes(lab, &inv);
}

fn a_bastion_whose_key_does_not_match_is_refused_naming_it(lab: &Lab) {
    wall_off(lab);
    // node1's address recorded with node2's (real, different) key.
    let known = std::fs::read_to_string(lab.known_hosts()).expect("known_hosts");
    let key_of = |n: &str| {
        let line = known
            .lines()
            .find(|l| l.contains(&format!(",{n} ")))
            .expect("entry");
        line.split_once(' ').expect("key").1.to_owned()
    };
    let wrong = format!("{} {}\n", bastion(lab), key_of("node2"));
    std::fs::write(lab.dir().join("jump-wrong_known_hosts"), wrong).expect("write");
    let inv = ssh_config_inventory(lab, "jump-wrong", "jump-wrong_known_hosts");
    let out = pictl::run(lab, &inv, &["plan", "--output", "json"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    let named = format!("jump host bastion ({}:22)", bastion(lab));
    for n in BEHIND {
        let entry = node(&v, n).to_string();
        assert!(entry.contains(&named), "{n}: {v:#}");
        assert!(entry.contains("HAS CHANGED"), "{n}: {v:#}");
    }
    assert!(node(&v, "node1")["unreachable"].is_null(), "{v:#}");
}

/// Last: node3 stays stopped. The bastion cannot open a connection to it,
/// so node3 is unreachable (not failed), named with the jump host.
fn a_node_down_behind_the_bastion_is_unreachable_through_it(lab: &Lab) {
    wall_off(lab);
    lab.stop("node3").expect("stop node3");
    let hop = format!("proxy_jump = \"lab@{}:22\"", bastion(lab));
    let inv = inventory(lab, "jump-inventory.toml", "ssh_config = \"none\"", &hop);
    let out = pictl::run(lab, &inv, &["plan", "--output", "json"]);
    let v = json(&out);
    let why = node(&v, "node3")["unreachable"]
        .as_str()
        .unwrap_or_default();
    let via = format!("jump host {0} ({0}:22)", bastion(lab));
    assert!(why.contains(&via), "{v:#}");
    assert!(
        why.contains("could not open a connection to node3"),
        "{v:#}"
    );
    for n in ["node1", "node2"] {
        assert!(node(&v, n)["unreachable"].is_null(), "{n}: {v:#}");
    }
}
