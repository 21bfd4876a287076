//! `proxy_jump` in the inventory, ssh_config's Host entries and their
//! precedence, loaded from real files in a temporary directory.

use std::path::{Path, PathBuf};

use super::*;
use crate::inventory::{HostKeyPolicy, Inventory, Node};

const CLUSTER: &str = "[cluster]\nname = \"demo\"\nk3s_version = \"v1.32.5+k3s1\"\n";

/// Two nodes: `s1` (10.0.0.1) and `a1` (address `a1`, an ssh_config alias).
fn inventory(ssh: &str, a1_ssh: &str) -> String {
    format!(
        "{CLUSTER}\n[ssh]\n{ssh}\n\n[[nodes]]\nname = \"s1\"\naddress = \"10.0.0.1\"\n\
         role = \"server\"\n\n[[nodes]]\nname = \"a1\"\naddress = \"a1\"\nrole = \"agent\"\n\
         [nodes.ssh]\n{a1_ssh}\n"
    )
}

fn load(dir: &Path, text: &str) -> Result<Vec<Node>, Vec<String>> {
    Inventory::parse(text, "inv.toml", dir)
        .map(|inv| inv.nodes)
        .map_err(|d| d.iter().map(ToString::to_string).collect())
}

fn with_config(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ssh_config"), config).expect("write");
    dir
}

#[test]
fn chains_parse_as_openssh_writes_them() {
    let chain = parse_chain("admin@bastion:2222, 10.0.0.9,[fd00::1]:22,ssh://u@h").expect("valid");
    let hosts: Vec<_> = chain.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["bastion", "10.0.0.9", "fd00::1", "h"]);
    assert_eq!(chain[0].user.as_deref(), Some("admin"));
    assert_eq!(chain[0].port, Some(2222));
    assert_eq!(chain[1].port, None);
    assert_eq!(chain[2].port, Some(22));
    assert_eq!(parse_hop("fd00::2").expect("bare v6").host, "fd00::2");
    assert_eq!(parse_chain("none").expect("none"), Vec::new());
}

#[test]
fn bad_chains_are_refused_with_the_hop_named() {
    for bad in [
        "bastion:0",
        "bastion:ssh",
        "bad user@bastion",
        "a,,b",
        "[::1",
    ] {
        let e = parse_chain(bad).expect_err(bad);
        assert!(e.message.contains("is not a jump host"), "{bad}: {e:?}");
        assert!(e.hint.is_some());
    }
    let long = ["h"; MAX_HOPS + 1].join(",");
    assert!(parse_chain(&long).is_err());
}

#[test]
fn inventory_proxy_jump_settles_each_hop_with_the_nodes_settings() {
    let dir = with_config("");
    let text = inventory(
        "user = \"pi\"\nagent = true\nssh_config = \"none\"\nproxy_jump = \"root@gw:2200,bastion\"",
        "",
    );
    let nodes = load(dir.path(), &text).expect("valid");
    let hops = &nodes[1].ssh.proxy_jump;
    assert_eq!(hops.len(), 2);
    assert_eq!(
        (
            hops[0].name.as_str(),
            hops[0].address.as_str(),
            hops[0].port
        ),
        ("gw", "gw", 2200)
    );
    assert_eq!(hops[0].user, "root");
    assert_eq!(
        hops[1].user, "pi",
        "a hop without user@ logs in as the node's user"
    );
    assert_eq!(hops[1].auth, SshAuth::Agent);
    assert_eq!(hops[1].known_hosts, nodes[1].ssh.known_hosts);
    assert_eq!(
        nodes[0].ssh.proxy_jump,
        hops.clone(),
        "[ssh] applies to every node"
    );
}

#[test]
fn a_node_switches_off_an_inherited_chain_with_none() {
    let dir = with_config("");
    let text = inventory(
        "agent = true\nssh_config = \"none\"\nproxy_jump = \"bastion\"",
        "proxy_jump = \"none\"",
    );
    let nodes = load(dir.path(), &text).expect("valid");
    assert_eq!(nodes[0].ssh.proxy_jump.len(), 1);
    assert!(nodes[1].ssh.proxy_jump.is_empty());
}

#[test]
fn a_bad_proxy_jump_is_reported_where_it_is_written() {
    let dir = with_config("");
    let text = inventory(
        "agent = true\nssh_config = \"none\"",
        "proxy_jump = \"gw:99999\"",
    );
    let errors = load(dir.path(), &text).expect_err("invalid");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "inv.toml:19:14: nodes[1].ssh.proxy_jump: \"gw:99999\" is not a jump host"
        ),
        "{errors:?}"
    );
}

const CONFIG: &str = "\
Host a1
    HostName 10.0.0.2
    User admin
    Port 2022
    ProxyJump jump
    UserKnownHostsFile KH

Host jump
    HostName 10.0.0.9
    User hop
    IdentityFile KEY

Host *
    User fallback
    StrictHostKeyChecking no
";

fn config_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kh, key) = (dir.path().join("kh"), dir.path().join("hop_key"));
    let text = CONFIG
        .replace("KH", &kh.display().to_string())
        .replace("KEY", &key.display().to_string());
    std::fs::write(dir.path().join("ssh_config"), text).expect("write");
    (dir, kh, key)
}

#[test]
fn ssh_config_fills_what_the_inventory_leaves_unset() {
    let (dir, kh, key) = config_dir();
    let nodes = load(dir.path(), &inventory("ssh_config = \"ssh_config\"", "")).expect("valid");
    let a1 = &nodes[1].ssh;
    assert_eq!(
        nodes[1].address, "a1",
        "K3s still uses the inventory's address"
    );
    assert_eq!(a1.host_name.as_deref(), Some("10.0.0.2"));
    assert_eq!((a1.user.as_str(), a1.port), ("admin", 2022));
    assert_eq!(a1.known_hosts, kh);
    let hop = &a1.proxy_jump[..];
    assert_eq!(hop.len(), 1);
    assert_eq!(
        (hop[0].name.as_str(), hop[0].address.as_str()),
        ("jump", "10.0.0.9")
    );
    assert_eq!(hop[0].user, "hop");
    assert_eq!(
        hop[0].known_hosts, kh,
        "a hop checks keys where the node does"
    );
    assert_eq!(
        hop[0].auth,
        SshAuth::Key {
            path: key,
            passphrase_env: None
        }
    );
    assert_eq!(
        nodes[0].ssh.user, "fallback",
        "Host * applies to the others"
    );
    assert!(nodes[0].ssh.proxy_jump.is_empty());
    assert_eq!(
        a1.host_key_policy,
        HostKeyPolicy::Strict,
        "StrictHostKeyChecking is not read"
    );
}

#[test]
fn the_inventory_wins_over_ssh_config() {
    let (dir, _, _) = config_dir();
    std::fs::write(dir.path().join("mine"), "").expect("write");
    let text = inventory(
        "ssh_config = \"ssh_config\"\nuser = \"pi\"\nport = 22\nknown_hosts = \"mine\"\nagent = true",
        "proxy_jump = \"other@10.0.0.8\"",
    );
    let nodes = load(dir.path(), &text).expect("valid");
    let a1 = &nodes[1].ssh;
    assert_eq!((a1.user.as_str(), a1.port), ("pi", 22));
    assert_eq!(a1.known_hosts, dir.path().join("mine"));
    assert_eq!(a1.auth, SshAuth::Agent);
    assert_eq!(
        a1.host_name.as_deref(),
        Some("10.0.0.2"),
        "HostName has no inventory key"
    );
    assert_eq!(a1.proxy_jump.len(), 1);
    assert_eq!(a1.proxy_jump[0].address, "10.0.0.8");
    assert_eq!(a1.proxy_jump[0].user, "other");
}

#[test]
fn a_first_hops_own_proxy_jump_comes_before_it() {
    let dir = with_config("Host inner\n    ProxyJump outer:2200\nHost outer\n    User o\n");
    let text = inventory(
        "ssh_config = \"ssh_config\"\nagent = true\nproxy_jump = \"inner\"",
        "",
    );
    let nodes = load(dir.path(), &text).expect("valid");
    let names: Vec<_> = nodes[0]
        .ssh
        .proxy_jump
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["outer", "inner"]);
    assert_eq!(nodes[0].ssh.proxy_jump[0].user, "o");
    let looped = with_config("Host a\n    ProxyJump b\nHost b\n    ProxyJump a\n");
    let text = inventory(
        "ssh_config = \"ssh_config\"\nagent = true\nproxy_jump = \"a\"",
        "",
    );
    let errors = load(looped.path(), &text).expect_err("a loop");
    assert!(
        errors.iter().all(|e| e.contains("more than 8 jump hosts")),
        "{errors:?}"
    );
}

#[test]
fn ssh_config_cannot_switch_host_key_checking_off() {
    let dir = with_config("Host a1\n    UserKnownHostsFile /dev/null\n");
    let text = inventory("ssh_config = \"ssh_config\"\nagent = true", "");
    let errors = load(dir.path(), &text).expect_err("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("UserKnownHostsFile /dev/null (or none) for a1: pictl always checks"),
        "{errors:?}"
    );
    let kh = dir.path().join("kh");
    std::fs::write(&kh, "").expect("write");
    let text = inventory(
        "ssh_config = \"ssh_config\"\nagent = true\nknown_hosts = \"kh\"",
        "",
    );
    let nodes = load(dir.path(), &text).expect("the inventory's known_hosts wins");
    assert_eq!(nodes[1].ssh.known_hosts, kh);
    let hop = with_config("Host gw\n    UserKnownHostsFile none\n");
    let text = inventory(
        "ssh_config = \"ssh_config\"\nagent = true\nproxy_jump = \"gw\"",
        "",
    );
    let errors = load(hop.path(), &text).expect_err("a hop is checked too");
    assert!(errors.iter().all(|e| e.contains("for gw:")), "{errors:?}");
}

#[test]
fn a_named_ssh_config_that_cannot_be_read_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = inventory("ssh_config = \"missing\"\nagent = true", "");
    let errors = load(dir.path(), &text).expect_err("missing");
    assert_eq!(errors.len(), 1, "reported once: {errors:?}");
    assert!(errors[0].contains("ssh.ssh_config:"), "{errors:?}");
    assert!(errors[0].contains("cannot read it"), "{errors:?}");
}
