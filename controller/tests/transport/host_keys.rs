//! Host-key policy: strict refuses the unknown, accept-new learns (and
//! records only when writing) into the user's file after reading the
//! system's, a changed or revoked key is an error, and host certificates
//! from a trusted CA are accepted for their principals.

use super::*;

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
