//! Bad inventories, each with the exact `FILE:LINE:COL: key: message (hint)`
//! pictl must print for it, plus "every problem at once" and a fuzz-style
//! property test that no input makes the loader panic.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pictl::inventory::{HostKeyPolicy, Inventory, K3sRelease, Role, SecretSource, SshAuth};

#[path = "inventory/bad_input.rs"]
mod bad_input;
#[path = "inventory/fuzz.rs"]
mod fuzz;
#[path = "inventory/schema.rs"]
mod schema;

const NODES: &str = r#"
[[nodes]]
name = "s1"
address = "10.0.0.1"
role = "server"

[[nodes]]
name = "a1"
address = "10.0.0.2"
role = "agent"
"#;

fn cluster_ssh() -> String {
    "[cluster]\nname = \"demo\"\nk3s_version = \"v1.32.5+k3s1\"\n\n[ssh]\nuser = \"pi\"\nagent = true\n"
        .to_string()
}

/// Loads `text` as `inv.toml` from `dir` and renders its diagnostics.
fn problems_in(dir: &Path, text: &str) -> Vec<String> {
    match Inventory::parse(text, "inv.toml", dir) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

fn problems(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    problems_in(dir.path(), text)
}

#[test]
fn a_valid_inventory_loads_with_defaults() {
    let text = format!("{}{NODES}", cluster_ssh());
    let inv = Inventory::parse(&text, "inv.toml", Path::new("/tmp")).expect("valid");
    assert_eq!(inv.cluster.name, "demo");
    assert_eq!(inv.cluster.k3s, K3sRelease::Version("v1.32.5+k3s1".into()));
    assert_eq!(inv.cluster.token, SecretSource::Generated);
    assert_eq!(inv.nodes.len(), 2);
    assert_eq!(inv.nodes[0].role, Role::Server);
    let ssh = &inv.nodes[1].ssh;
    assert_eq!(ssh.user, "pi");
    assert_eq!(ssh.port, 22);
    assert!(ssh.sudo, "a non-root user needs sudo by default");
    assert_eq!(ssh.auth, SshAuth::Agent);
    assert_eq!(ssh.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(inv.api_address(), "10.0.0.1");
}

#[test]
fn a_plain_http_channel_server_loads_when_explicitly_allowed() {
    let text = format!("{}{NODES}", cluster_ssh()).replace(
        "k3s_version = \"v1.32.5+k3s1\"",
        "channel = \"stable\"\nchannel_url = \"http://channels.lan/c/\"\nallow_http_channel = true\nallow_downgrade = true",
    );
    let inv = Inventory::parse(&text, "inv.toml", Path::new("/tmp")).expect("valid");
    assert_eq!(inv.cluster.k3s, K3sRelease::Channel("stable".into()));
    assert_eq!(inv.cluster.channel_url, "http://channels.lan/c");
    assert!(inv.cluster.allow_downgrade);
    let default = Inventory::parse(
        &format!("{}{NODES}", cluster_ssh()),
        "inv.toml",
        Path::new("/tmp"),
    )
    .expect("valid");
    assert!(
        !default.cluster.allow_downgrade,
        "downgrades are refused by default"
    );
}

#[test]
fn per_node_ssh_overrides_merge_over_defaults() {
    let text = format!(
        "{}{NODES}\n[nodes.ssh]\nport = 2222\nuser = \"root\"\n",
        cluster_ssh()
    );
    let inv = Inventory::parse(&text, "inv.toml", Path::new("/tmp")).expect("valid");
    assert_eq!(inv.nodes[0].ssh.port, 22);
    assert_eq!(inv.nodes[1].ssh.port, 2222);
    assert_eq!(inv.nodes[1].ssh.user, "root");
    assert_eq!(inv.nodes[1].ssh.auth, SshAuth::Agent);
}

/// (name, inventory text, expected diagnostics in order)
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let base = cluster_ssh();
    let full = format!("{base}{NODES}");
    vec![
        (
            "toml_syntax_error",
            "[cluster]\nname = \"demo\nk3s_version = 1\n".to_string(),
            vec!["inv.toml:2:13: TOML syntax: invalid basic string, expected `\"`"],
        ),
        (
            "empty_file",
            String::new(),
            vec![
                "inv.toml:1:1: cluster: missing table [cluster] (add [cluster] with at least name and k3s_version)",
                "inv.toml:1:1: nodes: no nodes (add at least one [[nodes]] with name, address and role = \"server\")",
            ],
        ),
        (
            "unknown_top_level_key",
            format!("{base}{NODES}\n[workloads]\nplaybooks = []\n"),
            vec!["inv.toml:19:2: workloads: unknown key (did you mean \"workload\"?)"],
        ),
        (
            "unknown_cluster_key_typo",
            full.replace("name = \"demo\"", "name = \"demo\"\nk3s_verison = \"v1\""),
            vec!["inv.toml:3:1: cluster.k3s_verison: unknown key (did you mean \"k3s_version\"?)"],
        ),
        (
            "unknown_node_key_typo",
            format!("{base}{NODES}").replace("address = \"10.0.0.2\"", "adress = \"10.0.0.2\""),
            vec![
                "inv.toml:14:1: nodes[1].address: missing required key \"address\" (the node's IP address or DNS name)",
                "inv.toml:16:1: nodes[1].adress: unknown key (did you mean \"address\"?)",
            ],
        ),
        (
            "unknown_ssh_key_without_near_match",
            full.replace("agent = true", "agent = true\nfrobnicate = 1"),
            vec![
                "inv.toml:8:1: ssh.frobnicate: unknown key (known keys: user, port, identity_file, agent, passphrase_env, known_hosts, host_key_policy, sudo, sudo_password, connect_timeout, proxy_jump, ssh_config)",
            ],
        ),
        (
            "duplicate_node_name",
            format!("{base}{NODES}").replace("name = \"a1\"", "name = \"s1\""),
            vec![
                "inv.toml:15:8: nodes[1].name: duplicate node name \"s1\" (first used at line 10, column 8 (nodes[0].name))",
            ],
        ),
        (
            "duplicate_node_address",
            format!("{base}{NODES}").replace("10.0.0.2", "10.0.0.1"),
            vec![
                "inv.toml:16:11: nodes[1].address: duplicate node address \"10.0.0.1\" (first used at line 11, column 11 (nodes[0].address))",
            ],
        ),
        (
            "no_server",
            format!("{base}{NODES}").replace("role = \"server\"", "role = \"agent\""),
            vec![
                "inv.toml:9:1: nodes: no node has role = \"server\" (a cluster needs one server (the control plane))",
            ],
        ),
        (
            "two_servers_without_ha",
            format!("{base}{NODES}").replace("role = \"agent\"", "role = \"server\""),
            vec![
                "inv.toml:17:8: nodes[1].role: 2 servers but HA is not enabled (set ha = true in [cluster] (embedded etcd), or make this node an agent)",
            ],
        ),
        (
            "even_servers_with_ha",
            format!("{base}{NODES}")
                .replace("role = \"agent\"", "role = \"server\"")
                .replace(
                    "k3s_version = \"v1.32.5+k3s1\"",
                    "k3s_version = \"v1.32.5+k3s1\"\nha = true",
                ),
            vec![
                "inv.toml:18:8: nodes[1].role: 2 servers: an even number gives etcd no extra fault tolerance (use an odd number of servers (3 or 5))",
            ],
        ),
        (
            "invalid_role",
            format!("{base}{NODES}").replace("role = \"agent\"", "role = \"worker\""),
            vec![
                "inv.toml:17:8: nodes[1].role: invalid role \"worker\" (K3s calls a worker \"agent\")",
            ],
        ),
        (
            "role_master",
            format!("{base}{NODES}").replace("role = \"server\"", "role = \"master\""),
            vec![
                "inv.toml:12:8: nodes[0].role: invalid role \"master\" (K3s calls a control-plane node \"server\")",
            ],
        ),
        (
            "invalid_ipv4_address",
            format!("{base}{NODES}").replace("10.0.0.2", "10.0.0.256"),
            vec![
                "inv.toml:16:11: nodes[1].address: \"10.0.0.256\" is not a valid IP address (an IP address or a DNS name)",
            ],
        ),
        (
            "hostile_address",
            format!("{base}{NODES}").replace("10.0.0.2", "x; rm -rf /"),
            vec![
                "inv.toml:16:11: nodes[1].address: \"x; rm -rf /\" is not a valid address (an IP address or a DNS name)",
            ],
        ),
        (
            "hostile_node_name",
            format!("{base}{NODES}").replace("name = \"a1\"", "name = \"a1$(reboot)\""),
            vec![
                "inv.toml:15:8: nodes[1].name: \"a1$(reboot)\" is not a valid node name (a Kubernetes node name: lowercase letters, digits, '-' and '.')",
            ],
        ),
        (
            "port_out_of_range",
            full.replace("agent = true", "agent = true\nport = 70000"),
            vec![
                "inv.toml:8:8: ssh.port: 70000 is out of range (expected an integer from 1 to 65535)",
            ],
        ),
        (
            "port_wrong_type",
            full.replace("agent = true", "agent = true\nport = \"22\""),
            vec!["inv.toml:8:8: ssh.port: expected an integer, found a string"],
        ),
        (
            "k3s_version_without_suffix",
            full.replace("v1.32.5+k3s1", "1.32.5"),
            vec![
                "inv.toml:3:15: cluster.k3s_version: \"1.32.5\" is not a K3s release version (expected vX.Y.Z+k3sN, e.g. \"v1.32.5+k3s1\")",
            ],
        ),
        (
            "missing_k3s_version",
            full.replace("k3s_version = \"v1.32.5+k3s1\"\n", ""),
            vec![
                "inv.toml:1:1: cluster.k3s_version: missing required key \"k3s_version\" (pin a release, e.g. k3s_version = \"v1.32.5+k3s1\" (or set channel))",
            ],
        ),
        (
            "version_and_channel",
            full.replace(
                "k3s_version = \"v1.32.5+k3s1\"",
                "k3s_version = \"v1.32.5+k3s1\"\nchannel = \"stable\"",
            ),
            vec![
                "inv.toml:4:11: cluster.channel: both k3s_version and channel are set (pin a version (reproducible) or follow a channel, not both)",
            ],
        ),
        (
            "token_in_clear_text",
            full.replace(
                "name = \"demo\"",
                "name = \"demo\"\ntoken = \"K10abc::server:s3cret\"",
            ),
            vec![
                "inv.toml:3:9: cluster.token: token is written in clear text in the inventory (use token = { env = \"VAR\" } or token = { file = \"path\" } (mode 0600), or leave it out to let pictl generate one)",
            ],
        ),
        (
            "sudo_password_in_clear_text",
            full.replace("agent = true", "agent = true\nsudo_password = \"hunter2\""),
            vec![
                "inv.toml:8:17: ssh.sudo_password: sudo_password is written in clear text in the inventory (use sudo_password = { env = \"VAR\" } or sudo_password = { file = \"path\" } (mode 0600))",
            ],
        ),
        (
            "token_source_with_both_env_and_file",
            full.replace(
                "name = \"demo\"",
                "name = \"demo\"\ntoken = { env = \"T\", file = \"t\" }",
            ),
            vec![
                "inv.toml:3:9: cluster.token: a secret source needs exactly one of env or file (token = { env = \"VAR\" } or token = { file = \"path\" })",
            ],
        ),
        (
            "invalid_env_name",
            full.replace(
                "name = \"demo\"",
                "name = \"demo\"\ntoken = { env = \"1-BAD\" }",
            ),
            vec![
                "inv.toml:3:17: cluster.token.env: \"1-BAD\" is not an environment variable name (letters, digits and '_', not starting with a digit)",
            ],
        ),
        (
            "missing_identity_file",
            full.replace("agent = true", "identity_file = \"nope/id_ed25519\""),
            vec![
                "inv.toml:7:17: ssh.identity_file: DIR/nope/id_ed25519 does not exist or cannot be read: No such file or directory (os error 2) (create a key with ssh-keygen -t ed25519, or set agent = true)",
            ],
        ),
        (
            "world_readable_identity_file",
            full.replace("agent = true", "identity_file = \"open_key\""),
            vec![
                "inv.toml:7:17: ssh.identity_file: DIR/open_key is readable by other users (mode 0644) (chmod 600 DIR/open_key)",
            ],
        ),
        (
            "host_key_checking_off_is_refused",
            full.replace("agent = true", "agent = true\nhost_key_policy = \"no\""),
            vec![
                "inv.toml:8:19: ssh.host_key_policy: invalid host key policy \"no\" (pictl never turns host key checking off; use \"accept-new\" for a first contact)",
            ],
        ),
        (
            "invalid_arch",
            format!("{base}{NODES}")
                .replace("role = \"agent\"", "role = \"agent\"\narch = \"armv6\""),
            vec![
                "inv.toml:18:8: nodes[1].arch: unknown arch \"armv6\" (expected \"amd64\", \"arm64\" or \"armhf\")",
            ],
        ),
        (
            "invalid_taint",
            format!("{base}{NODES}").replace(
                "role = \"agent\"",
                "role = \"agent\"\ntaints = [\"gpu=yes:Sometimes\"]",
            ),
            vec![
                "inv.toml:18:11: nodes[1].taints[0]: taint effect \"Sometimes\" is not valid (key=value:Effect with Effect one of NoSchedule, PreferNoSchedule, NoExecute)",
            ],
        ),
        (
            "invalid_label_key",
            format!("{base}{NODES}").replace(
                "role = \"agent\"",
                "role = \"agent\"\nlabels = { \"bad key\" = \"x\" }",
            ),
            vec![
                "inv.toml:18:12: nodes[1].labels.bad key: \"bad key\" is not a valid label key (a Kubernetes label key, e.g. \"example.com/zone\")",
            ],
        ),
        (
            // The kubelet refuses to start with it (k8s.io/kubelet's
            // IsKubeletLabel): validate refuses it before any node does.
            "label_the_kubelet_refuses",
            format!("{base}{NODES}").replace(
                "role = \"agent\"",
                "role = \"agent\"\nlabels = { \"kubernetes.io/role\" = \"worker\" }",
            ),
            vec![
                "inv.toml:18:12: nodes[1].labels.kubernetes.io/role: the kubelet refuses to start with the label \"kubernetes.io/role\" (in kubernetes.io and k8s.io the kubelet accepts only the node.kubernetes.io/ and kubelet.kubernetes.io/ prefixes and a few well-known labels (pictl sets node-role.kubernetes.io/ roles through the API); use your own prefix)",
            ],
        ),
        (
            "nodes_is_not_an_array",
            format!("nodes = \"s1\"\n{base}"),
            vec!["inv.toml:1:9: nodes: expected an array of tables ([[nodes]]), found a string"],
        ),
        (
            "missing_playbook_dir",
            format!("{base}{NODES}\n[workload]\nplaybooks = [\"nowhere\"]\n"),
            vec![
                "inv.toml:20:14: workload.playbooks[0]: DIR/nowhere is not a directory (paths are relative to the inventory file)",
            ],
        ),
        (
            "plain_http_mirror_needs_an_explicit_opt_in",
            full.replace(
                "name = \"demo\"",
                "name = \"demo\"\nmirror = \"http://mirror.lan/k3s\"",
            ),
            vec![
                "inv.toml:3:10: cluster.mirror: a plain-http mirror lets anyone on the path swap both the binaries and their checksums (use https, or set allow_http_mirror = true for a mirror on a network you trust (a lab))",
            ],
        ),
        (
            "plain_http_channel_server_needs_an_explicit_opt_in",
            full.replace(
                "k3s_version = \"v1.32.5+k3s1\"",
                "channel = \"stable\"\nchannel_url = \"http://channels.lan/v1-release/channels\"",
            ),
            vec![
                "inv.toml:4:15: cluster.channel_url: a plain-http channel server lets anyone on the path pick the K3s release every node installs (use https, or set allow_http_channel = true for a channel server on a network you trust (a lab))",
            ],
        ),
        (
            "two_playbooks_with_one_name",
            format!("{full}\n[workload]\nplaybooks = [\"a/web\", \"b/web\"]\n"),
            vec![
                "inv.toml:20:14: workload.playbooks[0]: DIR/a/web is not a directory (paths are relative to the inventory file)",
                "inv.toml:20:23: workload.playbooks[1]: a second playbook named \"web\" (a playbook's directory name names its set of objects (pruning included); rename one (workload.playbooks[0] has it))",
                "inv.toml:20:23: workload.playbooks[1]: DIR/b/web is not a directory (paths are relative to the inventory file)",
            ],
        ),
        (
            "bad_cluster_name",
            full.replace("name = \"demo\"", "name = \"Demo Cluster\""),
            vec![
                "inv.toml:2:8: cluster.name: \"Demo Cluster\" is not a valid name (use lowercase letters, digits and '-')",
            ],
        ),
    ]
}

#[test]
fn bad_inventories_report_exact_locations_and_messages() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 25, "the table must keep at least 25 cases");
    for (name, text, expected) in all {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("open_key");
        std::fs::write(&key, "not really a key").expect("write key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let text = text.replace("file = \"t\"", "file = \"missing.token\"");
        let got = problems_in(dir.path(), &text);
        let dir_s = dir.path().display().to_string();
        let got: Vec<String> = got.into_iter().map(|g| g.replace(&dir_s, "DIR")).collect();
        if got != expected {
            failures.push(format!(
                "case {name}:\n  expected: {expected:#?}\n  got:      {got:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_in_one_file_is_reported_at_once() {
    let text = "[cluster]\nname = \"Bad Name\"\nk3s_version = \"1.0\"\ntoken = \"clear\"\n\n\
                [[nodes]]\nname = \"n1\"\naddress = \"300.1.1.1\"\nrole = \"boss\"\ncolour = \"red\"\n";
    let got = problems(text);
    assert_eq!(got.len(), 6, "got: {got:#?}");
    let keys: Vec<&str> = got
        .iter()
        .map(|g| g.split(": ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "cluster.name",
            "cluster.k3s_version",
            "cluster.token",
            "nodes[0].address",
            "nodes[0].role",
            "nodes[0].colour"
        ]
    );
    // And the "no server" problem is not reported twice for a node whose role was wrong.
    assert!(
        !got.iter().any(|g| g.contains("no node has role")),
        "{got:#?}"
    );
}

#[test]
fn a_private_token_file_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = dir.path().join("tok");
    std::fs::write(&tok, "secret").expect("write");
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = format!("{}{NODES}", cluster_ssh()).replace(
        "name = \"demo\"",
        "name = \"demo\"\ntoken = { file = \"tok\" }",
    );
    let inv = Inventory::parse(&text, "inv.toml", dir.path()).expect("valid");
    assert_eq!(inv.cluster.token, SecretSource::File(tok));
}

#[test]
fn a_token_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = dir.path().join("tok");
    std::fs::write(&tok, "hunter2-token").expect("write");
    let text = format!("{}{NODES}", cluster_ssh()).replace(
        "name = \"demo\"",
        "name = \"demo\"\ntoken = { file = \"tok\" }",
    );
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let got = problems_in(dir.path(), &text);
        assert!(
            got.len() == 1 && got[0].contains("cluster.token") && got[0].contains("chmod 600"),
            "{mode:o}: {got:?}"
        );
        assert!(
            !got[0].contains("hunter2"),
            "the token's value leaked: {got:?}"
        );
    }
}

#[test]
fn junk_and_huge_inputs_are_refused_without_panicking() {
    let dir = Path::new("/tmp");
    let mut junk = b"name = 1\n".to_vec();
    junk.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80));
    let d = Inventory::parse_bytes(&junk, "junk.toml", dir).expect_err("junk");
    assert_eq!(
        d.to_string(),
        "junk.toml:2:1: byte 9 is not valid UTF-8 (an inventory is a UTF-8 TOML text file)"
    );

    let big = "x".repeat(10 << 20);
    let d = Inventory::parse_bytes(big.as_bytes(), "big.toml", dir).expect_err("big");
    assert!(d.to_string().contains("more than the 1 MiB"), "{d}");

    let deep = format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Inventory::parse_bytes(deep.as_bytes(), "deep.toml", dir).is_err());
    let deep_tables = format!("a = {}1{}", "{ b = ".repeat(50_000), " }".repeat(50_000));
    assert!(Inventory::parse_bytes(deep_tables.as_bytes(), "deep.toml", dir).is_err());
}

#[test]
fn the_reference_inventories_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Its strict known_hosts is the operator's ~/.ssh/known_hosts: stand one in.
    let home = tempfile::tempdir().expect("tempdir");
    let known_hosts = home.path().join("known_hosts");
    std::fs::write(&known_hosts, "").expect("write");
    let file = root.join("inventory/playson.toml");
    let text = std::fs::read_to_string(&file)
        .expect("read playson.toml")
        .replace("\"~/.ssh/known_hosts\"", &format!("{known_hosts:?}"));
    let inv = Inventory::parse(&text, "playson.toml", &root.join("inventory"))
        .expect("playson.toml is valid");
    assert_eq!(inv.nodes.len(), 3);
    assert_eq!(
        inv.servers().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["boolayan"]
    );
    assert_eq!(inv.cluster.k3s, K3sRelease::Version("v1.32.5+k3s1".into()));
}
