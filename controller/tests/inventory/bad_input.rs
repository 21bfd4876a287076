//! Issue 10, hardening: bad input gets a clear error and nothing is lost.
//! Each test names the item of the issue it came from.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pictl::inventory::Inventory;

use super::{NODES, cluster_ssh, problems, problems_in};

/// Issue 10: an inventory path that is not a regular file is refused at
/// once, without opening it (a FIFO would block, a device never ends).
#[test]
fn an_inventory_path_that_is_not_a_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("inv.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let cases = [
        (dir.path().to_path_buf(), "a directory"),
        (fifo, "a FIFO (named pipe)"),
        (Path::new("/dev/zero").to_path_buf(), "a device"),
    ];
    for (path, kind) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Inventory::load(&p));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("loading {} hung", path.display()))
            .expect_err("refused");
        let p = path.display();
        assert_eq!(
            got.to_string(),
            format!(
                "{p}:1:1: cannot read the inventory: {p} is {kind}, not a file (pass the file with -i/--inventory)"
            )
        );
    }
}

#[test]
fn an_inventory_file_is_loaded_and_a_huge_one_refused_by_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("inv.toml");
    std::fs::write(&good, format!("{}{NODES}", cluster_ssh())).expect("write");
    let inv = Inventory::load(&good).expect("valid");
    assert_eq!(inv.source, good);
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(3 << 20)).expect("write");
    let got = Inventory::load(&big).expect_err("too big").to_string();
    assert_eq!(
        got,
        format!(
            "{}:1:1: the file is 3145728 bytes, more than the 1 MiB an inventory may be (is this the right file?)",
            big.display()
        )
    );
}

/// Issue 10: locating a problem must not rescan the text, so thousands of
/// problems cost little more than thousands of nodes.
#[test]
fn thousands_of_problems_are_all_reported_quickly() {
    let mut text = cluster_ssh();
    for i in 0..5_000 {
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"n{i}\"\naddress = \"10.0.{i}.1\"\nrole = \"boss\"\n"
        ));
    }
    let started = std::time::Instant::now();
    let got = problems(&text);
    println!(
        "5,000 bad nodes: {} problems in {:?}",
        got.len(),
        started.elapsed()
    );
    // Addresses 10.0.256.1 and up are out of range; every role is wrong.
    assert_eq!(got.len(), 5_000 + (5_000 - 256));
    assert!(
        got[0].starts_with("inv.toml:12:8: nodes[0].role: invalid role \"boss\""),
        "{}",
        got[0]
    );
    assert!(
        got.last()
            .is_some_and(|g| g.starts_with("inv.toml:25007:8: nodes[4999].role")),
        "{got:?}"
    );
}

/// Issue 10: no value can forge a line of output.
#[test]
fn control_characters_in_values_are_escaped_in_every_message() {
    let text = format!("{}{NODES}", cluster_ssh()).replace(
        "k3s_version = \"v1.32.5+k3s1\"",
        "k3s_version = \"v1\\ninv.toml:1:1: all good\\r\\u001b[2K\"",
    );
    let got = problems(&text);
    assert_eq!(
        got,
        [
            "inv.toml:3:15: cluster.k3s_version: \"v1\\ninv.toml:1:1: all good\\r\\u{1b}[2K\" is not a K3s release version (expected vX.Y.Z+k3sN, e.g. \"v1.32.5+k3s1\")"
        ]
    );
    assert!(got.iter().all(|g| !g.chars().any(char::is_control)));
}

/// Issue 10: what can be written and can never work is refused at validate.
#[test]
fn settings_that_can_never_work_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let private = |name: &str, content: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    private("id_ed25519.pub", "ssh-ed25519 AAAAC3Nza pi@host\n");
    private("renamed_pub", "ssh-ed25519 AAAAC3Nza pi@host\n");
    private("empty.token", "");
    let base = format!("{}{NODES}", cluster_ssh());
    let cases = [
        (
            base.replace("agent = true", "agent = true\nknown_hosts = \"nowhere\""),
            "inv.toml:8:15: ssh.known_hosts: DIR/nowhere does not exist, and host_key_policy is \"strict\": no node could be trusted (create it (e.g. ssh-keyscan HOST >> FILE, checking the fingerprints), or use host_key_policy = \"accept-new\" for a first contact)",
        ),
        (
            base.replace("agent = true", "identity_file = \"id_ed25519.pub\""),
            "inv.toml:7:17: ssh.identity_file: DIR/id_ed25519.pub is a public key (name the private key (the same path without .pub))",
        ),
        (
            base.replace("agent = true", "identity_file = \"renamed_pub\""),
            "inv.toml:7:17: ssh.identity_file: DIR/renamed_pub is a public key (name the private key (the same path without .pub))",
        ),
        (
            base.replace(
                "name = \"demo\"",
                "name = \"demo\"\ntoken = { file = \"empty.token\" }",
            ),
            "inv.toml:3:18: cluster.token.file: DIR/empty.token is empty (write the secret into it)",
        ),
    ];
    let dir_s = dir.path().display().to_string();
    for (text, expected) in cases {
        let got: Vec<String> = problems_in(dir.path(), &text)
            .into_iter()
            .map(|g| g.replace(&dir_s, "DIR"))
            .collect();
        assert_eq!(got, [expected]);
    }
    // accept-new creates the file on first contact, so a missing one is fine.
    let text = base.replace(
        "agent = true",
        "agent = true\nknown_hosts = \"nowhere\"\nhost_key_policy = \"accept-new\"",
    );
    assert_eq!(problems_in(dir.path(), &text), Vec::<String>::new());
}

/// Issue 10: `inet_aton` forms of IPv4 and the unspecified address.
#[test]
fn non_canonical_and_unspecified_addresses_are_refused() {
    let hint = "write an IPv4 address as four decimal numbers without leading zeros, e.g. 10.0.0.1; tools read hex, octal and shortened forms differently";
    for bad in ["10.1", "0x7f.1", "010.0.0.1", "0x7f000001"] {
        let text = format!("{}{NODES}", cluster_ssh()).replace("10.0.0.2", bad);
        assert_eq!(
            problems(&text),
            [format!(
                "inv.toml:16:11: nodes[1].address: \"{bad}\" is not a valid IP address ({hint})"
            )]
        );
    }
    let text = format!("{}{NODES}", cluster_ssh()).replace("10.0.0.2", "0.0.0.0");
    assert_eq!(
        problems(&text),
        [
            "inv.toml:16:11: nodes[1].address: \"0.0.0.0\" is the unspecified address, which reaches no node (write the node's own address)"
        ]
    );
}

/// Issue 10: toml says "duplicate key"; the reader needs to know which.
#[test]
fn a_duplicate_key_is_named() {
    let text = format!("{}{NODES}", cluster_ssh())
        .replace("name = \"demo\"", "name = \"demo\"\nname = \"again\"");
    assert_eq!(
        problems(&text),
        ["inv.toml:3:1: TOML syntax: duplicate key `name`"]
    );
}

/// Issue 23 (round 3's new keys): `add_agent_token` is a boolean, and a
/// misspelling is named rather than silently ignored.
#[test]
fn round_threes_keys_refuse_what_they_cannot_mean() {
    let base = format!("{}{NODES}", cluster_ssh());
    let with = |line: &str| base.replace("name = \"demo\"", &format!("name = \"demo\"\n{line}"));
    assert_eq!(
        problems(&with("add_agent_token = true")),
        Vec::<String>::new()
    );
    let text = problems(&with("add_agent_token = \"yes\"")).join("\n");
    assert!(
        text.starts_with("inv.toml:3:19: cluster.add_agent_token:") && text.contains("a boolean"),
        "{text}"
    );
    let text = problems(&with("add_agent_tokens = true")).join("\n");
    assert!(
        text.contains("add_agent_tokens") && text.contains("add_agent_token"),
        "{text}"
    );
    // The agents' secret never sits in the file.
    let text = problems(&with("agent_token = \"s3cret\"")).join("\n");
    assert!(
        text.contains("cluster.agent_token: agent_token is written in clear text in the inventory"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(
        problems(&with("agent_token = { env = \"AGENT_TOKEN\" }")),
        Vec::<String>::new()
    );
}
