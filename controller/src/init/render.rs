//! The inventory `pictl init` writes, rendered from what was detected on
//! each node. Pure: no I/O, so the text (its comments, names and that it
//! loads) is unit-tested without a node.
//!
//! Everything a node said (hostname, OS, Pi model) is untrusted: names are
//! reduced to what a Kubernetes node name may hold, and free text only ever
//! lands in a comment, with control characters escaped so a node cannot
//! forge a line of the inventory.

use std::collections::BTreeSet;

use crate::arch::Arch;

/// What `pictl init` found on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The address as the user gave it (what pictl connects to).
    pub address: String,
    pub hostname: String,
    pub arch: Arch,
    /// `uname -m`, for the comment.
    pub uname_m: String,
    pub pi_model: Option<String>,
    pub os: String,
}

/// How the nodes were reached: written to `[ssh]` so `apply` reaches them
/// the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub user: String,
    /// The private key file; `None`: the ssh-agent.
    pub identity_file: Option<String>,
    /// The known_hosts file the nodes' keys are in.
    pub known_hosts: String,
    pub port: u16,
    /// The environment variable holding the key's passphrase.
    pub passphrase_env: Option<String>,
}

/// Which K3s release the inventory asks for, and where it comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// `None`: follow the stable channel.
    pub pin: Option<Pin>,
    /// `None`: GitHub's releases.
    pub mirror: Option<String>,
}

/// A followed channel or a pinned release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    Channel(String),
    Version(String),
}

/// The inventory text: the first node the server, the rest agents, each
/// node's arch pinned, the playson playbook left commented out.
pub fn inventory(cluster: &str, nodes: &[Detected], reach: &Reach, release: &Release) -> String {
    let mut out = String::new();
    let server = nodes.first().map_or("the server", |n| n.address.as_str());
    out.push_str(&format!(
        "# pictl inventory for the \"{cluster}\" cluster, written by `pictl init`\n\
         # from what was found on the nodes: {server} is the K3s server (control\n\
         # plane), the others are agents (workers).\n\
         #\n\
         #   pictl validate -i FILE   # offline check, every problem at once\n\
         #   pictl plan     -i FILE   # what would change (exit 2 if anything)\n\
         #   pictl apply    -i FILE   # converge; a re-run reports changed=0\n\
         #\n\
         # Editor completion: `pictl schema > pictl.schema.json` beside this file,\n\
         # then make `#:schema ./pictl.schema.json` its first line.\n\
         # Relative paths are relative to this file; \"~/\" is your home directory.\n\n"
    ));
    out.push_str(&format!("[cluster]\nname = {}\n", quote(cluster)));
    out.push_str(&release_lines(release));
    out.push_str(&format!(
        "ha = false                         # true allows several servers (embedded etcd)\n\
         # The join token never sits in this file. Left out, pictl generates one and\n\
         # keeps it (mode 0600) in the state directory; or take it from:\n\
         # token = {{ env = \"PICTL_TOKEN\" }}\n\
         # token = {{ file = \"~/.config/pictl/{cluster}.token\" }}   # must be mode 0600\n\n"
    ));
    out.push_str(&format!("[ssh]\nuser = {}\n", quote(&reach.user)));
    match &reach.identity_file {
        Some(key) => {
            out.push_str(&format!("identity_file = {}\n", quote(key)));
            if let Some(var) = &reach.passphrase_env {
                out.push_str(&format!(
                    "passphrase_env = {}   # the key's passphrase, from the environment\n",
                    quote(var)
                ));
            }
        }
        None => out.push_str(
            "agent = true                       # keys from ssh-agent ($SSH_AUTH_SOCK)\n",
        ),
    }
    if reach.port != 22 {
        out.push_str(&format!("port = {}\n", reach.port));
    }
    out.push_str(&format!(
        "known_hosts = {}   # the nodes' host keys, recorded by pictl init\n\
         host_key_policy = \"strict\"\n",
        quote(&reach.known_hosts)
    ));
    if reach.user == "root" {
        out.push_str("sudo = false\n");
    } else {
        out.push_str(
            "sudo = true                        # passwordless sudo, or:\n\
                      # sudo_password = { env = \"PICTL_SUDO_PASSWORD\" }\n",
        );
    }
    let names = node_names(nodes);
    for (i, (n, name)) in nodes.iter().zip(&names).enumerate() {
        out.push('\n');
        out.push_str(&format!("# {}\n", describe(n)));
        out.push_str(&format!(
            "[[nodes]]\nname = {}\naddress = {}\nrole = \"{}\"\narch = \"{}\"\n",
            quote(name),
            quote(&n.address),
            if i == 0 { "server" } else { "agent" },
            n.arch.name()
        ));
    }
    out.push_str(
        "\n# Manifests applied once the nodes converge (optional): the playson\n\
         # example, relative to this file.\n\
         # [workload]\n\
         # playbooks = [\"playbooks/playson\"]\n",
    );
    out
}

/// The `[cluster]` lines that choose the K3s release and its mirror.
fn release_lines(release: &Release) -> String {
    let mut out = match &release.pin {
        Some(Pin::Version(v)) => format!(
            "k3s_version = {}          # pinned; or follow a channel instead:\n\
             # channel = \"stable\"\n",
            quote(v)
        ),
        Some(Pin::Channel(c)) => format!(
            "channel = {}                 # followed; or pin a release:\n\
             # k3s_version = \"v1.32.5+k3s1\"\n",
            quote(c)
        ),
        None => "channel = \"stable\"                 # follow K3s's stable channel, or pin a release:\n\
                 # k3s_version = \"v1.32.5+k3s1\"\n"
            .to_string(),
    };
    if let Some(mirror) = &release.mirror {
        out.push_str(&format!(
            "mirror = {}   # K3s releases in GitHub's layout\n",
            quote(mirror)
        ));
        if mirror.starts_with("http://") {
            out.push_str(
                "allow_http_mirror = true   # plain http: anyone on the path can change what is \
                 downloaded; only on a network you trust\n",
            );
        }
    }
    out
}

/// One line about a node, for its comment: model, OS, `uname -m`.
fn describe(n: &Detected) -> String {
    let mut parts = Vec::new();
    if let Some(model) = &n.pi_model {
        parts.push(model.clone());
    }
    if !n.os.is_empty() {
        parts.push(n.os.clone());
    }
    parts.push(n.uname_m.clone());
    let host = if n.hostname.is_empty() {
        String::new()
    } else {
        format!("{}: ", n.hostname)
    };
    crate::escape_controls(&format!("{host}{}", parts.join(", "))).into_owned()
}

/// Node names from hostnames: lowercased, what Kubernetes refuses replaced
/// by '-', and made unique (cloned SD cards all say "raspberrypi").
fn node_names(nodes: &[Detected]) -> Vec<String> {
    let mut used = BTreeSet::new();
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let base = sanitize(&n.hostname).unwrap_or_else(|| format!("node{}", i + 1));
            let mut name = base.clone();
            let mut k = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}-{k}");
                k += 1;
            }
            name
        })
        .collect()
}

/// A hostname as a node name (RFC 1123 subdomain), if anything is left.
fn sanitize(hostname: &str) -> Option<String> {
    let lower: String = hostname
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let labels: Vec<&str> = lower
        .split('.')
        .map(|l| l.trim_matches('-'))
        .filter(|l| !l.is_empty())
        .collect();
    let name: String = labels.join(".").chars().take(63).collect();
    let name = name.trim_end_matches(['-', '.']).to_string();
    (!name.is_empty()).then_some(name)
}

/// A TOML basic string holding `s` exactly.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::{Inventory, Role, SshAuth};

    fn pi(address: &str, hostname: &str) -> Detected {
        Detected {
            address: address.into(),
            hostname: hostname.into(),
            arch: Arch::Arm64,
            uname_m: "aarch64".into(),
            pi_model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
            os: "Debian GNU/Linux 12 (bookworm)".into(),
        }
    }

    fn reach(known_hosts: &Path) -> Reach {
        Reach {
            user: "pi".into(),
            identity_file: None,
            known_hosts: known_hosts.display().to_string(),
            port: 22,
            passphrase_env: None,
        }
    }

    fn load(text: &str, dir: &Path) -> Inventory {
        Inventory::parse(text, "init.toml", dir).unwrap_or_else(|d| panic!("{d}\n{text}"))
    }

    #[test]
    fn first_node_is_the_server_the_rest_agents_arch_pinned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, "").expect("write");
        let mut amd = pi("10.0.0.3", "nuc");
        amd.arch = Arch::Amd64;
        amd.uname_m = "x86_64".into();
        amd.pi_model = None;
        let nodes = [pi("10.0.0.1", "boolayan"), pi("10.0.0.2", "worker1"), amd];
        let text = inventory("playson", &nodes, &reach(&kh), &Release::default());
        let inv = load(&text, dir.path());
        assert_eq!(inv.cluster.name, "playson");
        let got: Vec<_> = inv
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.address.as_str(), n.role, n.arch))
            .collect();
        assert_eq!(
            got,
            [
                ("boolayan", "10.0.0.1", Role::Server, Some(Arch::Arm64)),
                ("worker1", "10.0.0.2", Role::Agent, Some(Arch::Arm64)),
                ("nuc", "10.0.0.3", Role::Agent, Some(Arch::Amd64)),
            ]
        );
        let ssh = &inv.nodes[0].ssh;
        assert_eq!(ssh.user, "pi");
        assert_eq!(ssh.auth, SshAuth::Agent);
        assert!(ssh.sudo);
        assert_eq!(ssh.known_hosts, kh);
        assert!(
            inv.workload.playbooks.is_empty(),
            "the playbook is optional"
        );
        assert!(
            text.contains("# playbooks = [\"playbooks/playson\"]"),
            "{text}"
        );
        assert!(
            text.contains("# boolayan: Raspberry Pi 4 Model B Rev 1.4, Debian GNU/Linux 12 (bookworm), aarch64\n[[nodes]]"),
            "{text}"
        );
    }

    #[test]
    fn hostnames_become_unique_valid_node_names() {
        let nodes = [
            pi("10.0.0.1", "raspberrypi"),
            pi("10.0.0.2", "raspberrypi"),
            pi("10.0.0.3", "My_Pi"),
            pi("10.0.0.4", ""),
            pi("10.0.0.5", "-.-"),
        ];
        assert_eq!(
            node_names(&nodes),
            ["raspberrypi", "raspberrypi-2", "my-pi", "node4", "node5"]
        );
        for name in node_names(&nodes) {
            crate::inventory::rules::node_name(&name).expect("a valid node name");
        }
    }

    #[test]
    fn what_a_node_says_cannot_add_a_line_to_the_inventory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, "").expect("write");
        let mut evil = pi("10.0.0.1", "pi\"\n[agent]\nenabled = false");
        evil.os = "Debian\n[agent]\nenabled = false".into();
        evil.pi_model = Some("Pi\r\n[[nodes]]".into());
        let text = inventory("c", &[evil], &reach(&kh), &Release::default());
        let inv = load(&text, dir.path());
        assert!(inv.agent.enabled, "{text}");
        assert_eq!(inv.nodes.len(), 1, "{text}");
        assert_eq!(
            text.matches("[agent]").count(),
            2,
            "only in the comment: {text}"
        );
        assert!(!text.contains("\n[agent]"), "{text}");
    }

    #[test]
    fn a_key_file_root_user_and_port_are_written_to_ssh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, "").expect("write");
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").expect("write");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let r = Reach {
            user: "root".into(),
            identity_file: Some(key.display().to_string()),
            known_hosts: kh.display().to_string(),
            port: 2222,
            passphrase_env: None,
        };
        let inv = load(
            &inventory("c", &[pi("10.0.0.1", "a")], &r, &Release::default()),
            dir.path(),
        );
        let ssh = &inv.nodes[0].ssh;
        assert_eq!(ssh.port, 2222);
        assert!(!ssh.sudo);
        assert!(matches!(&ssh.auth, SshAuth::Key { path, .. } if *path == key));
    }

    #[test]
    fn a_pinned_version_and_a_mirror_are_written_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, "").expect("write");
        let release = Release {
            pin: Some(Pin::Version("v1.33.1+k3s1".into())),
            mirror: Some("http://10.77.10.1:8080".into()),
        };
        let inv = load(
            &inventory("c", &[pi("10.0.0.1", "a")], &reach(&kh), &release),
            dir.path(),
        );
        assert_eq!(
            inv.cluster.k3s,
            crate::inventory::K3sRelease::Version("v1.33.1+k3s1".into())
        );
        assert_eq!(inv.cluster.mirror, "http://10.77.10.1:8080");
        let https = Release {
            pin: Some(Pin::Channel("latest".into())),
            mirror: Some("https://mirror.example/k3s".into()),
        };
        let text = inventory("c", &[pi("10.0.0.1", "a")], &reach(&kh), &https);
        assert!(!text.contains("allow_http_mirror"), "{text}");
        let inv = load(&text, dir.path());
        assert_eq!(
            inv.cluster.k3s,
            crate::inventory::K3sRelease::Channel("latest".into())
        );
    }

    #[test]
    fn an_encrypted_keys_passphrase_variable_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        let key = dir.path().join("id");
        std::fs::write(&kh, "").expect("write");
        std::fs::write(&key, "").expect("write");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let mut r = reach(&kh);
        r.identity_file = Some(key.display().to_string());
        r.passphrase_env = Some("PI_KEY_PASS".into());
        let text = inventory("c", &[pi("10.0.0.1", "a")], &r, &Release::default());
        let inv = load(&text, dir.path());
        assert_eq!(
            inv.nodes[0].ssh.auth,
            SshAuth::Key {
                path: key,
                passphrase_env: Some("PI_KEY_PASS".into())
            }
        );
    }
}
