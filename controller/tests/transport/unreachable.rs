//! What is unreachable and what is not: a wrong client key is an auth
//! error; refused, silent, lost and stalled endpoints are unreachable.

use super::*;

#[tokio::test]
async fn wrong_client_key_is_an_auth_error_not_unreachable() {
    let sshd = sshd_or_skip!();
    let other = sshd.path("stranger");
    new_key(other.to_str().unwrap(), "", "");
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
