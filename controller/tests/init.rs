//! `pictl init` against a real OpenSSH server on loopback (issue 14): it
//! writes an inventory that validates, records a host key only with
//! --accept-new (or a confirmation nobody can give without a terminal),
//! and never overwrites a file. Skipped without `/usr/sbin/sshd`, except
//! with `CI=true`, where that is a failure.

// Support code outside #[test] fns: a failed setup step should panic too.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// A private sshd accepting the current user with a fresh client key;
/// killed (its process group) on drop.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Sshd {
    fn start() -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {SSHD} is missing (apt-get install openssh-server)"
            );
            eprintln!("SKIPPED: {SSHD} not found");
            return None;
        }
        if user() == "root" {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        keygen(&p("host_key"));
        keygen(&p("client_key"));
        std::fs::copy(p("client_key.pub"), p("authorized_keys")).unwrap();
        std::fs::write(
            p("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\n\
                 UsePAM no\nPidFile none\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
                p("host_key").display(),
                p("authorized_keys").display()
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(p("sshd_config"))
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p("sshd.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let sshd = Sshd { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut banner = String::new();
                if BufReader::new(s).read_line(&mut banner).is_ok()
                    && banner.starts_with("SSH-2.0-")
                {
                    return Some(sshd);
                }
            }
            assert!(Instant::now() < deadline, "sshd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `pictl init` for this server, stdin not a terminal.
    fn init(&self, out: &Path, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pictl"))
            .args([
                "init",
                "--nodes",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
            ])
            .args(["--user", &user(), "--name", "loop"])
            .arg("--identity-file")
            .arg(self.path("client_key"))
            .arg("--known-hosts")
            .arg(self.path("known_hosts"))
            .arg("--out")
            .arg(out)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn init_writes_an_inventory_that_validates_and_never_overwrites_it() {
    let Some(sshd) = Sshd::start() else { return };
    let out = sshd.path("inv.toml");
    let first = sshd.init(&out, &["--accept-new"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let known = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    assert!(
        known.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)),
        "{known}"
    );
    let inventory = std::fs::read_to_string(&out).unwrap();
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert!(inventory.contains("role = \"server\""), "{inventory}");
    assert!(
        inventory.contains(&format!("arch = \"{host_arch}\"")),
        "{inventory}"
    );
    let valid = Command::new(env!("CARGO_BIN_EXE_pictl"))
        .arg("validate")
        .arg("-i")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        valid.status.code(),
        Some(0),
        "{}\n{inventory}",
        text(&valid.stderr)
    );
    let again = sshd.init(&out, &["--accept-new"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), inventory);
}

#[test]
fn without_a_terminal_or_accept_new_an_unknown_host_key_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let out = sshd.path("inv.toml");
    let refused = sshd.init(&out, &[]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("no terminal to confirm it"), "{stderr}");
    assert!(
        stderr.contains("SHA256:"),
        "shows the fingerprint: {stderr}"
    );
    assert!(stderr.contains("--accept-new"), "{stderr}");
    assert!(!out.exists());
    assert!(
        std::fs::read_to_string(sshd.path("known_hosts"))
            .unwrap_or_default()
            .is_empty(),
        "nothing recorded"
    );
}

/// What a confirmation means: the second connection records the key the
/// user saw, and refuses any other (a key swapped between the two).
#[test]
fn a_confirmed_key_is_the_only_new_key_recorded() {
    use pictl::transport::{Auth, HostKeyPolicy, SshTarget, SshTransport, TransportError};
    let Some(sshd) = Sshd::start() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = |confirmed: Option<String>| {
        let mut t = SshTarget::new(
            "n1",
            "127.0.0.1",
            user(),
            Auth::Key {
                path: sshd.path("client_key"),
                passphrase_env: None,
            },
            sshd.path("known_hosts"),
        );
        t.port = sshd.port;
        t.system_known_hosts = None;
        t.policy = HostKeyPolicy::AcceptNew;
        t.confirmed_new_key = confirmed;
        rt.block_on(SshTransport::connect(t))
    };
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    let offered = match connect(Some(wrong)) {
        Err(TransportError::HostKeyUnknown { fingerprint, .. }) => fingerprint,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a key other than the confirmed one was accepted"),
    };
    assert!(
        std::fs::read_to_string(sshd.path("known_hosts"))
            .unwrap_or_default()
            .is_empty()
    );
    let t = connect(Some(offered)).unwrap();
    rt.block_on(t.close());
    let known = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 1, "{known}");
}

/// The terminal path without a terminal: init shows the fingerprint to the
/// confirmation it is given, writes nothing when told no, and records
/// the key and writes the inventory when told yes.
#[test]
fn the_host_key_is_recorded_only_after_it_is_confirmed() {
    use std::sync::{Arc, Mutex};

    use pictl::init::{HostKeys, InitError, InitOptions, init};
    let Some(sshd) = Sshd::start() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let asked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let opts = |answer: bool| {
        let asked = asked.clone();
        InitOptions {
            cluster: "loop".into(),
            addresses: vec!["127.0.0.1".into()],
            user: user(),
            port: sshd.port,
            identity_file: Some(sshd.path("client_key")),
            known_hosts: sshd.path("known_hosts").display().to_string(),
            host_keys: HostKeys::Ask(Arc::new(move |address: &str, fingerprint: &str| {
                asked
                    .lock()
                    .unwrap()
                    .push((address.to_string(), fingerprint.to_string()));
                answer
            })),
            out: sshd.path("inv.toml"),
            connect_timeout: Duration::from_secs(10),
            release: Default::default(),
            passphrase_env: None,
            passphrase_prompt: Default::default(),
        }
    };
    let no = rt.block_on(init(&opts(false)));
    assert!(
        matches!(no, Err(InitError::HostKeyRefused { .. })),
        "{no:?}"
    );
    assert!(!sshd.path("inv.toml").exists());
    assert!(
        !sshd.path("known_hosts").exists()
            || std::fs::read_to_string(sshd.path("known_hosts"))
                .unwrap()
                .is_empty()
    );
    let yes = rt.block_on(init(&opts(true))).unwrap();
    assert_eq!(yes.len(), 1);
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "asked once per run: {asked:?}");
    assert_eq!(asked[0], asked[1], "the same key both times");
    assert_eq!(asked[0].0, "127.0.0.1");
    assert!(asked[0].1.starts_with("SHA256:"), "{asked:?}");
    let known = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 1, "{known}");
    assert!(sshd.path("inv.toml").exists());
}
