//! The SSH transport against a real OpenSSH server.
//!
//! Each test starts its own unprivileged-config `sshd` on a free loopback
//! port, with a fresh host key, client keys and authorized_keys in a temp
//! dir. No mocks: quoting, stdin streaming, host-key policy, uploads and
//! timeouts are checked end to end. When `/usr/sbin/sshd` is missing the tests
//! print `SKIPPED` and pass, except with `CI=true`, where that is a failure
//! (install `openssh-server`; the system service need not run).

// Support code outside #[test] fns: a failed setup step should panic too.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pictl::secret::Secret;
use pictl::transport::{
    Auth, HostKeyPolicy, RemoteCommand, SshTarget, SshTransport, Transport, TransportError, upload,
};

const SSHD: &str = "/usr/sbin/sshd";

/// A private sshd. Killed (with its whole process group, so session children
/// go too) on drop.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn ssh_keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
}

/// A new ed25519 key pair at `path` (and `path.pub`).
fn new_key(path: &str, comment: &str, passphrase: &str) {
    ssh_keygen(&[
        "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", path,
    ]);
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Sshd {
    /// Start one, or explain why not. `None` means "skip this test".
    fn start() -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            let reason = format!("{SSHD} not found (apt-get install openssh-server)");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and {reason}");
            }
            eprintln!("SKIPPED: {reason}");
            return None;
        }
        // sshd refuses to start as root without its privilege-separation dir.
        if current_user() == "root" {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        new_key(&p("host_key"), "", "");
        new_key(&p("client_key"), "client", "");
        let pubkey = std::fs::read_to_string(p("client_key.pub")).unwrap();
        std::fs::write(p("authorized_keys"), pubkey).unwrap();
        let config = format!(
            "ListenAddress 127.0.0.1\n\
             HostKey {hk}\n\
             AuthorizedKeysFile {ak}\n\
             StrictModes no\n\
             UsePAM no\n\
             PidFile none\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             MaxSessions 64\n\
             MaxStartups 64\n\
             LogLevel {level}\n",
            hk = p("host_key"),
            ak = p("authorized_keys"),
            // Set PICTL_TEST_SSHD_LOG=DEBUG3 to see the server's side; the
            // log is printed when a test panics with the server alive.
            level = std::env::var("PICTL_TEST_SSHD_LOG").unwrap_or_else(|_| "ERROR".into()),
        );
        std::fs::write(p("sshd_config"), config).unwrap();
        let port = free_port();
        let mut sshd = Sshd {
            dir,
            port,
            child: None,
        };
        sshd.spawn();
        Some(sshd)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.path("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.path("sshd_config"))
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut banner = String::new();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                if BufReader::new(stream).read_line(&mut banner).is_ok()
                    && banner.starts_with("SSH-2.0-")
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not come up: {}",
                std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// sshd and every connection and session process under it (connection
    /// processes start their own sessions, so a process group is not enough).
    fn tree(&self) -> Vec<u32> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let mut tree = vec![child.id()];
        let mut i = 0;
        while i < tree.len() {
            if let Ok(out) = Command::new("pgrep")
                .args(["-P", &tree[i].to_string()])
                .output()
            {
                tree.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
            i += 1;
        }
        tree
    }

    fn signal_all(&self, signal: &str) {
        for pid in self.tree() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    /// Stop every process under the listener (connections and sessions):
    /// the TCP connection stays up, nothing on the node makes progress.
    fn stall_connections(&self) {
        for pid in self.tree().into_iter().skip(1) {
            let _ = Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status();
        }
    }

    fn kill(&mut self) {
        // CONT first: a stopped process would not die until resumed.
        self.signal_all("-CONT");
        self.signal_all("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Same port, brand-new host key: what a reinstalled node looks like.
    fn restart_with_new_host_key(&mut self) {
        self.kill();
        let hk = self.path("host_key");
        std::fs::remove_file(&hk).unwrap();
        std::fs::remove_file(self.path("host_key.pub")).unwrap();
        new_key(hk.to_str().unwrap(), "", "");
        self.spawn();
    }

    fn host_pub(&self) -> String {
        std::fs::read_to_string(self.path("host_key.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `SHA256:...` as `ssh-keygen -l` prints it for the current host key.
    fn host_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(self.path("host_key.pub"))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_owned()
    }

    fn lookup(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// A known_hosts file that trusts this server, plus a decoy line first.
    fn trusting_known_hosts(&self) -> PathBuf {
        let path = self.path("known_hosts");
        std::fs::write(
            &path,
            format!(
                "# pictl test\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmFC5/qhmD6bWBrx3+EPj4bxlsbNHTD1aGKIqiSooNc\n{} {}\n",
                self.lookup(),
                self.host_pub()
            ),
        )
        .unwrap();
        path
    }

    fn target(&self, known_hosts: PathBuf) -> SshTarget {
        let mut t = SshTarget::new(
            "node 1 $(x)",
            "127.0.0.1",
            current_user(),
            Auth::Key {
                path: self.path("client_key"),
                passphrase_env: None,
            },
            known_hosts,
        );
        t.port = self.port;
        t.connect_timeout = Duration::from_secs(10);
        // Never the machine's /etc/ssh/ssh_known_hosts.
        t.system_known_hosts = Some(self.path("ssh_known_hosts"));
        t
    }

    /// Sign the current host key with a (new) CA for `principal`, serve the
    /// certificate, and return the CA's public key line.
    fn certify_host_key(&mut self, principal: &str) -> String {
        let ca = self.path("ca_key");
        let _ = std::fs::remove_file(&ca);
        let _ = std::fs::remove_file(self.path("ca_key.pub"));
        new_key(ca.to_str().unwrap(), "ca", "");
        let host_pub = self.path("host_key.pub");
        ssh_keygen(&[
            "-q",
            "-s",
            ca.to_str().unwrap(),
            "-I",
            "pictl-test-host",
            "-h",
            "-n",
            principal,
            host_pub.to_str().unwrap(),
        ]);
        let mut config = std::fs::read_to_string(self.path("sshd_config")).unwrap();
        let line = format!(
            "HostCertificate {}\n",
            self.path("host_key-cert.pub").display()
        );
        if !config.contains(&line) {
            config.push_str(&line);
            std::fs::write(self.path("sshd_config"), config).unwrap();
        }
        self.kill();
        self.spawn();
        let ca_pub = std::fs::read_to_string(self.path("ca_key.pub")).unwrap();
        let mut words = ca_pub.split_whitespace();
        format!("{} {}", words.next().unwrap(), words.next().unwrap())
    }

    fn known_hosts_with(&self, text: &str) -> PathBuf {
        let path = self.path("known_hosts");
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn connect(&self) -> SshTransport {
        SshTransport::connect(self.target(self.trusting_known_hosts()))
            .await
            .expect("connect to test sshd")
    }

    /// Add a passphrase-protected client key; returns its path.
    fn add_encrypted_key(&self, passphrase: &str) -> PathBuf {
        let key = self.path("encrypted_key");
        new_key(key.to_str().unwrap(), "enc", passphrase);
        let mut keys = std::fs::read_to_string(self.path("authorized_keys")).unwrap();
        keys.push_str(&std::fs::read_to_string(self.path("encrypted_key.pub")).unwrap());
        std::fs::write(self.path("authorized_keys"), keys).unwrap();
        key
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default();
            eprintln!("--- sshd log ---\n{log}--- end sshd log ---");
        }
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

macro_rules! sshd_or_skip {
    () => {
        match Sshd::start() {
            Some(s) => s,
            None => return,
        }
    };
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

mod auth;
mod exec;
mod hold;
mod host_keys;
mod jump;
mod put_file;
mod unreachable;
