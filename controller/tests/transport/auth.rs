//! Client keys from elsewhere: an encrypted key's passphrase from an
//! environment variable, and an ssh-agent. The `child_` tests run in a
//! copy of this binary with their environment, by their full name.

use super::*;

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
        "auth::child_passphrase_from_env",
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
            "auth::child_agent_auth",
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
