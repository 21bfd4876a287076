//! `pictl init`: a first inventory from the nodes themselves. Connects to
//! each address over SSH (a new host key is recorded only once the user
//! confirmed its fingerprint, or with `--accept-new`), gathers facts in one
//! round trip, and writes the inventory [`render`] makes of them, never
//! over an existing file.
//!
//! The edge: the SSH transport and [`runner::gather`] do the talking; how
//! a host key is confirmed is the caller's ([`HostKeys`]), so the CLI owns
//! the terminal and nothing here reads stdin.

pub mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::arch::Arch;
use crate::inventory::{HostKeyPolicy, Node, Role, SshAuth, SshSettings, resolve_path, rules};
use crate::runner::{self, GatherError};
use crate::transport::{SshTarget, SshTransport, SudoMode, TransportError};

pub use render::{Detected, Pin, Reach, Release};

/// Asked whether to trust a host key: (address, SHA256 fingerprint) → yes.
pub type ConfirmKey = dyn Fn(&str, &str) -> bool + Send + Sync;

/// What to do with a host key known_hosts does not hold.
#[derive(Clone)]
pub enum HostKeys {
    /// Trust it and record it (`--accept-new`).
    AcceptNew,
    /// Show its fingerprint and ask; recorded only when confirmed.
    Ask(Arc<ConfirmKey>),
    /// Nobody to ask (not a terminal): refuse, saying how to go on.
    Refuse,
}

impl std::fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostKeys::AcceptNew => "AcceptNew",
            HostKeys::Ask(_) => "Ask",
            HostKeys::Refuse => "Refuse",
        })
    }
}

/// `pictl init`'s flags, resolved.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub cluster: String,
    pub addresses: Vec<String>,
    pub user: String,
    pub port: u16,
    /// A private key file; `None`: the ssh-agent.
    pub identity_file: Option<PathBuf>,
    /// As written (`~/` allowed): also what the inventory says.
    pub known_hosts: String,
    pub host_keys: HostKeys,
    pub out: PathBuf,
    pub connect_timeout: Duration,
    /// The K3s release and mirror the inventory will name.
    pub release: Release,
    /// The variable holding the identity file's passphrase.
    pub passphrase_env: Option<String>,
    /// Asks for the key's passphrase when the variable is unset.
    pub passphrase_prompt: Prompt,
}

/// A passphrase prompt, or none (no terminal).
#[derive(Clone, Default)]
pub struct Prompt(pub Option<crate::transport::PassphrasePrompt>);

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prompt({})", self.0.is_some())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{} already exists; pictl init never overwrites a file (choose another --out)", path.display())]
    OutExists { path: PathBuf },
    #[error("--nodes: {message}")]
    BadAddress { message: String },
    #[error("--name: {message} (the cluster name is a DNS label: lowercase letters, digits, '-')")]
    BadName { message: String },
    #[error("--user: {message}")]
    BadUser { message: String },
    #[error("{flag}: {message}")]
    BadRelease { flag: &'static str, message: String },
    #[error(
        "the host key of {address} is unknown ({fingerprint}) and there is no terminal to confirm it: \
         verify the fingerprint out of band, then run again with --accept-new (or add the key to {known_hosts})"
    )]
    HostKeyNotConfirmed {
        address: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error("the host key of {address} ({fingerprint}) was not confirmed; nothing was written")]
    HostKeyRefused {
        address: String,
        fingerprint: String,
    },
    #[error("connecting to {address}")]
    ConnectFailed {
        address: String,
        #[source]
        source: Box<TransportError>,
    },
    #[error("gathering facts from {address}")]
    GatherFailed {
        address: String,
        #[source]
        source: Box<GatherError>,
    },
    #[error("{address} is {uname_m}: K3s ships no build for it ({why})")]
    UnsupportedArch {
        address: String,
        uname_m: String,
        why: String,
    },
    #[error("writing {}", path.display())]
    WriteFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Connects to every node, detects them and writes the inventory; returns
/// what was detected, in the order given.
pub async fn init(opts: &InitOptions) -> Result<Vec<Detected>, InitError> {
    check_options(opts)?;
    let mut detected = Vec::new();
    for address in &opts.addresses {
        detected.push(detect(opts, address).await?);
    }
    let reach = Reach {
        user: opts.user.clone(),
        identity_file: opts
            .identity_file
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .map(|p| p.display().to_string()),
        known_hosts: inventory_path(&opts.known_hosts),
        port: opts.port,
        passphrase_env: opts.passphrase_env.clone(),
    };
    let text = render::inventory(&opts.cluster, &detected, &reach, &opts.release);
    write_new(&opts.out, &text)?;
    Ok(detected)
}

/// A path as the inventory should say it: relative paths there are
/// relative to the inventory, so one given relative to the working
/// directory is made absolute; `~/` stays, as the loader expands it.
fn inventory_path(raw: &str) -> String {
    if raw.starts_with("~/") {
        return raw.to_string();
    }
    std::path::absolute(raw).map_or_else(|_| raw.to_string(), |p| p.display().to_string())
}

/// Everything that can be refused before a node is contacted.
fn check_options(opts: &InitOptions) -> Result<(), InitError> {
    if opts.out.exists() {
        return Err(InitError::OutExists {
            path: opts.out.clone(),
        });
    }
    rules::dns_label(&opts.cluster).map_err(|message| InitError::BadName { message })?;
    rules::unix_user(&opts.user).map_err(|message| InitError::BadUser { message })?;
    check_release(opts)?;
    if opts.addresses.is_empty() {
        return Err(InitError::BadAddress {
            message: "no address given".into(),
        });
    }
    for (i, a) in opts.addresses.iter().enumerate() {
        rules::address(a).map_err(|v| InitError::BadAddress { message: v.message })?;
        if opts.addresses[..i]
            .iter()
            .any(|b| b.eq_ignore_ascii_case(a))
        {
            return Err(InitError::BadAddress {
                message: format!("{a} is given twice"),
            });
        }
    }
    Ok(())
}

/// The release, mirror and passphrase variable as the loader would check them.
fn check_release(opts: &InitOptions) -> Result<(), InitError> {
    let bad = |flag| move |message| InitError::BadRelease { flag, message };
    match &opts.release.pin {
        Some(Pin::Version(v)) => rules::k3s_version(v).map_err(bad("--k3s-version"))?,
        Some(Pin::Channel(c)) => rules::channel(c).map_err(bad("--channel"))?,
        None => {}
    }
    if let Some(m) = &opts.release.mirror {
        rules::http_url(m).map_err(bad("--mirror"))?;
    }
    if let Some(var) = &opts.passphrase_env {
        rules::env_name(var).map_err(bad("--passphrase-env"))?;
        if opts.identity_file.is_none() {
            return Err(InitError::BadRelease {
                flag: "--passphrase-env",
                message: "needs --identity-file (the ssh-agent holds decrypted keys)".into(),
            });
        }
    }
    Ok(())
}

/// The node as the runner's fact gathering sees it: an agent, so that no
/// server hands over its join token or kubeconfig.
fn probe_node(opts: &InitOptions, address: &str) -> Node {
    Node {
        name: address.to_string(),
        address: address.to_string(),
        role: Role::Agent,
        ssh: SshSettings {
            user: opts.user.clone(),
            port: opts.port,
            auth: auth(opts),
            known_hosts: resolve_path(Path::new("."), &opts.known_hosts),
            host_key_policy: HostKeyPolicy::Strict,
            sudo: opts.user != "root",
            sudo_password: None,
            connect_timeout: opts.connect_timeout,
            host_name: None,
            proxy_jump: Vec::new(),
        },
        arch: None,
        labels: Default::default(),
        taints: Vec::new(),
        k3s_config: Default::default(),
        adopt_drop: Vec::new(),
        airgap_images: None,
    }
}

fn auth(opts: &InitOptions) -> SshAuth {
    match &opts.identity_file {
        Some(path) => SshAuth::Key {
            path: path.clone(),
            passphrase_env: opts.passphrase_env.clone(),
        },
        None => SshAuth::Agent,
    }
}

async fn detect(opts: &InitOptions, address: &str) -> Result<Detected, InitError> {
    let node = probe_node(opts, address);
    let t = connect(opts, &node).await?;
    let facts = runner::gather(&t, &node).await;
    t.close().await;
    let facts = facts.map_err(|source| InitError::GatherFailed {
        address: address.to_string(),
        source: Box::new(source),
    })?;
    let arch: Arch = facts
        .arch
        .clone()
        .map_err(|why| InitError::UnsupportedArch {
            address: address.to_string(),
            uname_m: facts.uname_m.clone(),
            why,
        })?;
    Ok(Detected {
        address: address.to_string(),
        hostname: facts.hostname,
        arch,
        uname_m: facts.uname_m,
        pi_model: facts.pi_model,
        os: facts.os,
    })
}

/// Connects under the host-key choice: a key known_hosts lacks is
/// recorded with `--accept-new`, or after the user confirmed exactly that
/// key (a different key on the second connection is refused).
async fn connect(opts: &InitOptions, node: &Node) -> Result<SshTransport, InitError> {
    let target = |policy: HostKeyPolicy, confirmed: Option<String>| {
        let s = &node.ssh;
        let mut t = SshTarget::new(
            &node.address,
            &node.address,
            &s.user,
            s.auth.clone(),
            &s.known_hosts,
        );
        t.port = s.port;
        t.connect_timeout = s.connect_timeout;
        t.jumps = s.proxy_jump.clone();
        t.policy = policy;
        t.record_new_keys = true;
        t.passphrase_prompt = opts.passphrase_prompt.0.clone();
        t.confirmed_new_key = confirmed;
        t.sudo = if s.sudo {
            SudoMode::Passwordless
        } else {
            SudoMode::None
        };
        t
    };
    let failed = |source| InitError::ConnectFailed {
        address: node.address.clone(),
        source: Box::new(source),
    };
    let first = match opts.host_keys {
        HostKeys::AcceptNew => HostKeyPolicy::AcceptNew,
        HostKeys::Ask(_) | HostKeys::Refuse => HostKeyPolicy::Strict,
    };
    match SshTransport::connect(target(first, None)).await {
        Err(TransportError::HostKeyUnknown { fingerprint, .. }) => match &opts.host_keys {
            HostKeys::Ask(confirm) if confirm(&node.address, &fingerprint) => {
                SshTransport::connect(target(HostKeyPolicy::AcceptNew, Some(fingerprint)))
                    .await
                    .map_err(failed)
            }
            HostKeys::Ask(_) => Err(InitError::HostKeyRefused {
                address: node.address.clone(),
                fingerprint,
            }),
            _ => Err(InitError::HostKeyNotConfirmed {
                address: node.address.clone(),
                fingerprint,
                known_hosts: opts.known_hosts.clone(),
            }),
        },
        other => other.map_err(failed),
    }
}

/// Writes `text` to a file that must not exist yet (checked again at the
/// create, so a file that appeared meanwhile is not overwritten either).
fn write_new(path: &Path, text: &str) -> Result<(), InitError> {
    let failed = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            InitError::OutExists {
                path: path.to_path_buf(),
            }
        } else {
            InitError::WriteFailed {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(failed)?;
    f.write_all(text.as_bytes()).map_err(failed)?;
    f.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(out: PathBuf) -> InitOptions {
        InitOptions {
            cluster: "home".into(),
            addresses: vec!["10.0.0.1".into()],
            user: "pi".into(),
            port: 22,
            identity_file: None,
            known_hosts: "~/.ssh/known_hosts".into(),
            host_keys: HostKeys::Refuse,
            out,
            connect_timeout: Duration::from_secs(1),
            release: Default::default(),
            passphrase_env: None,
            passphrase_prompt: Default::default(),
        }
    }

    #[test]
    fn an_existing_file_is_refused_before_any_node_is_contacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("inv.toml");
        std::fs::write(&out, "mine").expect("write");
        let err = check_options(&opts(out.clone())).expect_err("exists");
        assert!(matches!(err, InitError::OutExists { .. }), "{err}");
        assert!(write_new(&out, "theirs").is_err());
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "mine");
    }

    #[test]
    fn bad_addresses_names_and_users_are_refused_up_front() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = opts(dir.path().join("inv.toml"));
        let mut o = base.clone();
        o.addresses = vec!["10.0.0.1".into(), "1.2.3".into()];
        assert!(matches!(
            check_options(&o),
            Err(InitError::BadAddress { .. })
        ));
        o.addresses = vec!["pi.local".into(), "PI.local".into()];
        assert!(matches!(
            check_options(&o),
            Err(InitError::BadAddress { .. })
        ));
        let mut o = base.clone();
        o.cluster = "My Cluster".into();
        assert!(matches!(check_options(&o), Err(InitError::BadName { .. })));
        let mut o = base.clone();
        o.user = "-oProxyCommand=x".into();
        assert!(matches!(check_options(&o), Err(InitError::BadUser { .. })));
        assert!(check_options(&base).is_ok());
    }

    #[test]
    fn a_bad_version_channel_mirror_or_passphrase_variable_is_refused_by_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("inv.toml");
        let refused = |o: &InitOptions| match check_options(o) {
            Err(InitError::BadRelease { flag, .. }) => flag,
            other => panic!("{other:?}"),
        };
        let mut o = opts(out.clone());
        o.release.pin = Some(Pin::Version("1.33".into()));
        assert_eq!(refused(&o), "--k3s-version");
        o.release.pin = Some(Pin::Channel("v1.33 beta".into()));
        assert_eq!(refused(&o), "--channel");
        o.release.pin = Some(Pin::Version("v1.33.1+k3s1".into()));
        o.release.mirror = Some("ftp://mirror".into());
        assert_eq!(refused(&o), "--mirror");
        o.release.mirror = Some("http://10.77.10.1:8080".into());
        o.passphrase_env = Some("PASS".into());
        assert_eq!(refused(&o), "--passphrase-env", "no identity file");
        o.identity_file = Some(dir.path().join("id"));
        o.passphrase_env = Some("1PASS".into());
        assert_eq!(refused(&o), "--passphrase-env");
        o.passphrase_env = Some("PASS".into());
        check_options(&o).expect("all good");
        assert!(!out.exists(), "nothing written by a check");
    }
}
