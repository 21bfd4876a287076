//! `exec`: hostile arguments byte-exact, stdin, stdout and stderr apart,
//! exit codes and signals, timeouts, sudo, concurrent execs on one
//! session, and a no-op's latency.

use super::*;

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
