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
        ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "",
            "-f",
            &p("host_key"),
        ]);
        ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "client",
            "-f",
            &p("client_key"),
        ]);
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
        ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "",
            "-f",
            hk.to_str().unwrap(),
        ]);
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
        ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ca",
            "-f",
            ca.to_str().unwrap(),
        ]);
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
        ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "enc",
            "-f",
            key.to_str().unwrap(),
        ]);
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

/// Words that would break any naive quoting.
const HOSTILE: &[&str] = &[
    "plain",
    "",
    "with space",
    "it's",
    "\"dq\"",
    "$(touch /tmp/pictl-pwned)",
    "`touch /tmp/pictl-pwned`",
    "line\nbreak",
    "semi; rm -rf /",
    "*",
    "/etc/*",
    "-n",
    "--help",
    "$HOME",
    "back\\slash",
    "a'\"b",
    "é 中 🙂",
    "&|<>(){}!#~",
];

fn split_nul(bytes: &[u8]) -> Vec<String> {
    let mut parts: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    assert_eq!(parts.pop().as_deref(), Some(""), "output must end with NUL");
    parts
}

#[tokio::test]
async fn exec_passes_hostile_arguments_byte_exact() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let out = t
        .exec(
            &RemoteCommand::new("printf")
                .arg("%s\\0")
                .args(HOSTILE.iter().copied()),
        )
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(split_nul(&out.stdout), HOSTILE);

    // Same words as script positional parameters, and as an env value.
    let out = t
        .exec(
            &RemoteCommand::script("printf '%s\\0' \"$V\" \"$@\"")
                .env("V", "$(evil) 'v'")
                .args(HOSTILE.iter().copied()),
        )
        .await
        .unwrap();
    let mut expected = vec!["$(evil) 'v'"];
    expected.extend_from_slice(HOSTILE);
    assert_eq!(split_nul(&out.stdout), expected);
    assert!(
        !Path::new("/tmp/pictl-pwned").exists(),
        "a word was executed"
    );
}

#[tokio::test]
async fn exec_delivers_stdin_and_separates_stdout_stderr() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let out = t
        .exec(&RemoteCommand::new("cat").stdin(data.clone()))
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "stdin came back altered");

    let out = t
        .exec(&RemoteCommand::script("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(
        (
            out.status,
            out.stdout_text().as_str(),
            out.stderr_text().as_str()
        ),
        (3, "out\n", "err\n")
    );
    assert!(!out.success());
}

#[tokio::test]
async fn exec_reports_exit_codes_and_signals() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    for code in [0, 1, 42, 255] {
        let out = t
            .exec(&RemoteCommand::script(format!("exit {code}")))
            .await
            .unwrap();
        assert_eq!(out.status, code);
    }
    // `exec` so the killed process is the session's own command.
    let out = t
        .exec(&RemoteCommand::script("exec kill -KILL $$"))
        .await
        .unwrap();
    assert!(!out.success());
    assert!(
        (out.status == -9 && out.signal.as_deref() == Some("KILL")) || out.status == 137,
        "{out:?}"
    );
}

#[tokio::test]
async fn exec_timeout_kills_the_remote_process_and_session_survives() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let marker = format!("{}.{}", 40 + sshd.port % 50, std::process::id());
    let started = Instant::now();
    let err = t
        .exec(
            &RemoteCommand::new("sleep")
                .arg(&marker)
                .timeout(Duration::from_millis(400)),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, TransportError::CommandTimeout { .. }),
        "{err:?}"
    );
    assert!(!err.is_unreachable());
    assert!(err.to_string().contains("`sleep`"), "{err}");
    // The sshd is local, so its processes are ours to look at.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = Command::new("pgrep")
            .args(["-f", &format!("sleep {marker}")])
            .output()
            .unwrap();
        if !alive.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "remote sleep still running after timeout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = t.exec(&RemoteCommand::new("true")).await.unwrap();
    assert!(out.success());
}

#[tokio::test]
async fn strict_policy_refuses_unknown_host_and_writes_nothing() {
    let sshd = sshd_or_skip!();
    let kh = sshd.path("strict_known_hosts");
    let original = "# nothing about this host\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmFC5/qhmD6bWBrx3+EPj4bxlsbNHTD1aGKIqiSooNc\n";
    std::fs::write(&kh, original).unwrap();
    let err = SshTransport::connect(sshd.target(kh.clone()))
        .await
        .unwrap_err();
    match &err {
        TransportError::HostKeyUnknown {
            fingerprint,
            lookup,
            ..
        } => {
            assert_eq!(fingerprint, &sshd.host_fingerprint());
            assert_eq!(lookup, &sshd.lookup());
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    assert!(!err.is_unreachable());
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), original);

    // A missing file is not created either.
    let missing = sshd.path("absent/known_hosts");
    let err = SshTransport::connect(sshd.target(missing.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err:?}"
    );
    assert!(!missing.exists());
}

#[tokio::test]
async fn accept_new_in_a_read_only_run_trusts_without_recording() {
    let sshd = sshd_or_skip!();
    let kh = sshd.path("readonly_known_hosts");
    std::fs::write(&kh, "# nothing known yet\n").unwrap();
    let mut target = sshd.target(kh.clone());
    target.policy = HostKeyPolicy::AcceptNew;
    target.record_new_keys = false;
    let t = SshTransport::connect(target)
        .await
        .expect("accept-new trusts a new host");
    drop(t);
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        "# nothing known yet\n",
        "plan must not write known_hosts"
    );
}

#[tokio::test]
async fn accept_new_learns_then_a_changed_key_is_a_hard_error() {
    let mut sshd = sshd_or_skip!();
    let kh = sshd.path("tofu_known_hosts");
    std::fs::write(&kh, "# first line\n\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmFC5/qhmD6bWBrx3+EPj4bxlsbNHTD1aGKIqiSooNc\n").unwrap();
    let mut target = sshd.target(kh.clone());
    target.policy = HostKeyPolicy::AcceptNew;
    let t = SshTransport::connect(target.clone())
        .await
        .expect("accept-new trusts a new host");
    drop(t);
    let learned = std::fs::read_to_string(&kh).unwrap();
    let line4 = learned.lines().nth(3).expect("a 4th line was appended");
    assert_eq!(line4, format!("{} {}", sshd.lookup(), sshd.host_pub()));

    // Learned: strict now accepts it too.
    let mut strict = target.clone();
    strict.policy = HostKeyPolicy::Strict;
    SshTransport::connect(strict)
        .await
        .expect("learned key is trusted");

    sshd.restart_with_new_host_key();
    let err = SshTransport::connect(target).await.unwrap_err();
    let msg = err.to_string();
    eprintln!("changed-key error reads: {msg}");
    match &err {
        TransportError::HostKeyChanged {
            host,
            line,
            fingerprint,
            known_hosts,
            ..
        } => {
            assert_eq!(host, "node 1 $(x)");
            assert_eq!(*line, 4);
            assert_eq!(fingerprint, &sshd.host_fingerprint());
            assert_eq!(known_hosts, &std::fs::canonicalize(&kh).unwrap());
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    assert!(
        msg.contains(&format!(
            "{}:4",
            std::fs::canonicalize(&kh).unwrap().display()
        )),
        "{msg}"
    );
    assert!(msg.contains(&sshd.host_fingerprint()), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        learned,
        "changed key must not be recorded"
    );
}

#[tokio::test]
async fn system_known_hosts_is_read_and_new_keys_go_to_the_users_file() {
    let mut sshd = sshd_or_skip!();
    let user = sshd.path("home/.ssh/known_hosts");
    let system = sshd.path("ssh_known_hosts");
    std::fs::write(&system, format!("{} {}\n", sshd.lookup(), sshd.host_pub())).unwrap();
    let mut target = sshd.target(user.clone());
    target.policy = HostKeyPolicy::AcceptNew;
    SshTransport::connect(target.clone())
        .await
        .expect("a key in the system file is known");
    assert!(!user.exists(), "nothing new to record");

    // Reinstalled node: the system file's line makes it a changed key.
    sshd.restart_with_new_host_key();
    let err = SshTransport::connect(target.clone()).await.unwrap_err();
    match &err {
        TransportError::HostKeyChanged {
            known_hosts, line, ..
        } => {
            assert_eq!(known_hosts, &system.canonicalize().unwrap());
            assert_eq!(*line, 1);
        }
        other => panic!("{other:?}"),
    }

    // A host the system file does not know is learned into the user's file.
    std::fs::write(&system, "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmFC5/qhmD6bWBrx3+EPj4bxlsbNHTD1aGKIqiSooNc\n").unwrap();
    let system_before = std::fs::read_to_string(&system).unwrap();
    SshTransport::connect(target).await.expect("accept-new");
    let learned = std::fs::read_to_string(&user).unwrap();
    assert!(learned.contains(&sshd.host_pub()), "{learned}");
    assert_eq!(std::fs::read_to_string(&system).unwrap(), system_before);
    assert_eq!(
        mode_of(user.parent().unwrap()),
        0o700,
        "~/.ssh is created 0700"
    );
}

#[tokio::test]
async fn host_certificate_from_a_trusted_ca_is_accepted() {
    let mut sshd = sshd_or_skip!();
    let ca = sshd.certify_host_key("127.0.0.1");
    // Only the CA: the host key itself is in no file.
    let kh = sshd.known_hosts_with(&format!("@cert-authority [127.0.0.1]:* {ca}\n"));
    let t = SshTransport::connect(sshd.target(kh.clone()))
        .await
        .expect("certificate signed by the trusted CA");
    assert!(t.exec(&RemoteCommand::new("true")).await.unwrap().success());
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("@cert-authority [127.0.0.1]:* {ca}\n"),
        "nothing recorded"
    );
}

#[tokio::test]
async fn host_certificate_is_refused_for_other_hosts_principals_or_revoked_cas() {
    let mut sshd = sshd_or_skip!();
    let ca = sshd.certify_host_key("some-other-name");
    let unknown = |r: Result<SshTransport, TransportError>| match r {
        Err(TransportError::HostKeyUnknown { .. }) => {}
        Err(other) => panic!("expected unknown, got {other:?}"),
        Ok(_) => panic!("expected unknown, connected"),
    };
    // Valid for another principal: falls back to the plain key, unknown.
    let kh = sshd.known_hosts_with(&format!("@cert-authority * {ca}\n"));
    unknown(SshTransport::connect(sshd.target(kh)).await);

    let ca = sshd.certify_host_key("127.0.0.1");
    // The CA is trusted for other hosts only.
    let kh = sshd.known_hosts_with(&format!("@cert-authority *.lan {ca}\n"));
    unknown(SshTransport::connect(sshd.target(kh)).await);

    // The CA is revoked.
    let kh = sshd.known_hosts_with(&format!("@cert-authority * {ca}\n@revoked * {ca}\n"));
    match SshTransport::connect(sshd.target(kh)).await {
        Err(TransportError::HostKeyRevoked { line, .. }) => assert_eq!(line, 2),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a revoked CA was accepted"),
    }
}

#[tokio::test]
async fn revoked_host_key_is_refused_even_when_listed() {
    let sshd = sshd_or_skip!();
    let kh = sshd.known_hosts_with(&format!(
        "{} {}\n@revoked * {}\n",
        sshd.lookup(),
        sshd.host_pub(),
        sshd.host_pub()
    ));
    let mut target = sshd.target(kh);
    target.policy = HostKeyPolicy::AcceptNew;
    match SshTransport::connect(target).await {
        Err(e @ TransportError::HostKeyRevoked { .. }) => {
            assert!(e.to_string().contains(&sshd.host_fingerprint()), "{e}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a revoked key was accepted"),
    }
}

#[tokio::test]
async fn wrong_client_key_is_an_auth_error_not_unreachable() {
    let sshd = sshd_or_skip!();
    let other = sshd.path("stranger");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        other.to_str().unwrap(),
    ]);
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.auth = Auth::Key {
        path: other,
        passphrase_env: None,
    };
    let err = SshTransport::connect(target).await.unwrap_err();
    assert!(matches!(err, TransportError::Auth { .. }), "{err:?}");
    assert!(!err.is_unreachable());
}

#[tokio::test]
async fn refused_and_silent_endpoints_are_unreachable() {
    let sshd = sshd_or_skip!();
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.port = free_port();
    let err = SshTransport::connect(target.clone()).await.unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert!(err.is_unreachable());

    // Accepts TCP, never speaks SSH: only the connect timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    target.port = silent.local_addr().unwrap().port();
    target.connect_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let err = SshTransport::connect(target).await.unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectTimeout { .. }),
        "{err:?}"
    );
    assert!(err.is_unreachable());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn lost_connection_is_unreachable() {
    let mut sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    assert!(t.exec(&RemoteCommand::new("true")).await.unwrap().success());
    sshd.kill();
    let err = t.exec(&RemoteCommand::new("true")).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
}

#[tokio::test]
async fn stalled_node_is_detected_by_keepalive() {
    let sshd = sshd_or_skip!();
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.keepalive = Duration::from_millis(300);
    let t = SshTransport::connect(target).await.unwrap();
    assert!(t.exec(&RemoteCommand::new("true")).await.unwrap().success());
    // The TCP connection stays up but nothing answers: a hung or cut node.
    sshd.signal_all("-STOP");
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), t.exec(&RemoteCommand::new("true")))
        .await
        .expect("keepalive should end the exec, not the test's own timeout");
    let err = result.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    eprintln!("stalled node detected after {:?}", started.elapsed());
}

#[tokio::test]
async fn encrypted_key_without_passphrase_source_names_the_variable() {
    let sshd = sshd_or_skip!();
    let key = sshd.add_encrypted_key("correct horse");
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.auth = Auth::Key {
        path: key.clone(),
        passphrase_env: Some("PICTL_TEST_SURELY_UNSET_VAR".into()),
    };
    let err = SshTransport::connect(target.clone()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::KeyPassphraseMissing { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("PICTL_TEST_SURELY_UNSET_VAR"),
        "{err}"
    );

    // A prompt callback (what the CLI does on a TTY) unlocks it.
    target.passphrase_prompt = Some(Arc::new(|_: &Path| Some(Secret::new("correct horse"))));
    let t = SshTransport::connect(target.clone())
        .await
        .expect("prompted passphrase works");
    assert!(t.exec(&RemoteCommand::new("true")).await.unwrap().success());

    // A wrong one fails to load the key and never leaks into the message.
    target.passphrase_prompt = Some(Arc::new(|_: &Path| Some(Secret::new("battery staple"))));
    let err = SshTransport::connect(target).await.unwrap_err();
    assert!(matches!(err, TransportError::KeyLoad { .. }), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("battery staple"));
}

/// Runs `child_test` in a fresh copy of this test binary with extra
/// environment (setting variables in-process would race other tests).
fn run_child_test(child_test: &str, envs: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            child_test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "child test did not run:\n{stdout}\n{stderr}"
    );
}

#[test]
fn encrypted_key_passphrase_from_environment_variable() {
    if !Path::new(SSHD).exists() && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("SKIPPED: {SSHD} not found");
        return;
    }
    run_child_test(
        "child_passphrase_from_env",
        &[("PICTL_TEST_KEY_PASSPHRASE", "pass with 'quotes' $(x)")],
    );
}

#[tokio::test]
#[ignore = "run by encrypted_key_passphrase_from_environment_variable with its env"]
async fn child_passphrase_from_env() {
    let passphrase = std::env::var("PICTL_TEST_KEY_PASSPHRASE").expect("run via parent test");
    let sshd = sshd_or_skip!();
    let key = sshd.add_encrypted_key(&passphrase);
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.auth = Auth::Key {
        path: key,
        passphrase_env: Some("PICTL_TEST_KEY_PASSPHRASE".into()),
    };
    let t = SshTransport::connect(target)
        .await
        .expect("passphrase from env");
    assert!(t.exec(&RemoteCommand::new("true")).await.unwrap().success());
}

#[test]
fn ssh_agent_authentication() {
    if !Path::new(SSHD).exists() && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("SKIPPED: {SSHD} not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = std::panic::catch_unwind(|| {
        run_child_test(
            "child_agent_auth",
            &[("SSH_AUTH_SOCK", sock.to_str().unwrap())],
        )
    });
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
#[ignore = "run by ssh_agent_authentication with SSH_AUTH_SOCK set"]
async fn child_agent_auth() {
    assert!(
        std::env::var_os("SSH_AUTH_SOCK").is_some(),
        "run via parent test"
    );
    let sshd = sshd_or_skip!();
    // The agent holds the authorized key; the key file is not given to pictl.
    let added = Command::new("ssh-add")
        .arg(sshd.path("client_key"))
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.auth = Auth::Agent;
    let t = SshTransport::connect(target).await.expect("agent auth");
    assert!(t.exec(&RemoteCommand::new("true")).await.unwrap().success());
}

/// Paths that must survive the upload script's quoting.
fn hostile_dir(root: &Path) -> PathBuf {
    root.join("up load")
        .join("it's \"q\" $(x) `y`;*")
        .join("-n\nline")
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".pictl-"))
        .collect()
}

#[tokio::test]
async fn put_file_is_atomic_verified_and_sets_mode() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let dir = hostile_dir(sshd.dir.path());
    let target = dir.join("config $(id).yaml");
    let target_str = target.to_str().unwrap();

    let before = t.round_trips();
    t.put_file(b"first\n", target_str, 0o600, false)
        .await
        .unwrap();
    assert_eq!(t.round_trips() - before, 1, "an upload is one round trip");
    assert_eq!(std::fs::read(&target).unwrap(), b"first\n");
    assert_eq!(mode_of(&target), 0o600);

    let second: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    t.put_file(&second, target_str, 0o755, true).await.unwrap();
    assert!(std::fs::read(&target).unwrap() == second);
    assert_eq!(mode_of(&target), 0o755);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[tokio::test]
async fn stalled_upload_times_out_naming_node_and_path() {
    let sshd = sshd_or_skip!();
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.upload_timeout = Duration::from_secs(1);
    let t = SshTransport::connect(target).await.unwrap();
    let path = sshd.path("stalled.bin");
    let path = path.to_str().unwrap();
    sshd.stall_connections();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        t.put_file(&[7u8; 1000], path, 0o644, false),
    )
    .await
    .expect("the upload deadline should end the upload, not the test's own timeout");
    let err = result.unwrap_err();
    assert!(
        matches!(err, TransportError::CommandTimeout { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("node 1 $(x)") && msg.contains(path), "{msg}");
    assert!(!err.is_unreachable());
    // 1 s plus one second for the 1000 bytes at the minimum rate.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn put_file_rejects_relative_paths() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let err = t
        .put_file(b"x", "relative/file", 0o644, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Upload { status: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn upload_with_wrong_hash_leaves_target_untouched() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let dir = hostile_dir(sshd.dir.path());
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("k3s");
    std::fs::write(&target, b"old binary").unwrap();
    let target_str = target.to_str().unwrap();

    // The real upload script, told to expect a hash the data cannot have
    // (what a corrupted transfer looks like to the node).
    let claimed = upload::sha256_hex(b"what we meant to send");
    let out = t
        .exec(
            &upload::put_command(target_str, 0o755, &claimed, 12, false)
                .stdin(b"what arrived".to_vec()),
        )
        .await
        .unwrap();
    let err = upload::check_put("node 1 $(x)", target_str, &claimed, &out).unwrap_err();
    match &err {
        TransportError::UploadVerify {
            expected, actual, ..
        } => {
            assert_eq!(expected, &claimed);
            assert_eq!(actual, &upload::sha256_hex(b"what arrived"));
        }
        other => panic!("expected UploadVerify, got {other:?}"),
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"old binary");
    assert!(leftovers(&dir).is_empty(), "temp file left behind");
}

#[tokio::test]
async fn large_upload_streams_and_verifies() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..32 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let target = sshd.path("k3s");
    let started = Instant::now();
    t.put_file(&data, target.to_str().unwrap(), 0o755, false)
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "uploaded {} MiB in {:?} ({:.0} MiB/s)",
        data.len() >> 20,
        took,
        (data.len() >> 20) as f64 / took.as_secs_f64()
    );
    let mut written = Vec::new();
    std::fs::File::open(&target)
        .unwrap()
        .read_to_end(&mut written)
        .unwrap();
    assert!(written == data, "uploaded bytes differ");
}

#[tokio::test]
async fn sudo_as_root_runs_directly() {
    let sshd = sshd_or_skip!();
    if current_user() != "root" {
        eprintln!("SKIPPED: needs to log in as root");
        return;
    }
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.sudo = pictl::transport::SudoMode::None;
    let t = SshTransport::connect(target).await.unwrap();
    let out = t
        .exec(&RemoteCommand::new("id").arg("-u").sudo(true))
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), "0");
}

#[tokio::test]
async fn concurrent_execs_share_one_session() {
    let sshd = sshd_or_skip!();
    let t: Arc<dyn Transport> = Arc::new(sshd.connect().await);
    // Each exec waits (up to 20 s) until all eight are running at once:
    // serialised execs could never all be there, so they fail instead.
    let meet = tempfile::tempdir().expect("tempdir");
    let dir = meet.path().display().to_string();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (t, dir) = (Arc::clone(&t), dir.clone());
            tokio::spawn(async move {
                let out = t
                    .exec(
                        &RemoteCommand::script(
                            ": > \"$1/$2\"; n=0; \
                             while [ \"$(ls \"$1\" | wc -l)\" -lt 8 ]; do \
                             n=$((n + 1)); [ $n -gt 400 ] && { echo serialised; exit 1; }; sleep 0.05; done; \
                             echo \"$2\"",
                        )
                        .arg(dir)
                        .arg(i.to_string()),
                    )
                    .await
                    .unwrap();
                assert_eq!(out.stdout_text(), format!("{i}\n"), "execs were serialised");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(t.round_trips(), 8);
}

#[tokio::test]
async fn noop_exec_latency_over_loopback() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let cmd = RemoteCommand::new("true");
    let mut samples = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        assert!(t.exec(&cmd).await.unwrap().success());
        samples.push(started.elapsed());
    }
    samples.sort();
    eprintln!(
        "no-op exec over loopback: median {:?}, min {:?}, max {:?}",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1]
    );
    assert!(samples[samples.len() / 2] < Duration::from_secs(1));
}
