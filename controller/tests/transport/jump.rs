//! Through a jump host: two private sshds on loopback, the node reached over
//! a `direct-tcpip` channel of the bastion's session, each host key checked
//! against its own known_hosts.

use super::*;
use pictl::transport::Jump;

fn jump_via(bastion: &Sshd, known_hosts: PathBuf) -> Jump {
    Jump {
        name: "bastion".into(),
        address: "127.0.0.1".into(),
        port: bastion.port,
        user: current_user(),
        auth: Auth::Key {
            path: bastion.path("client_key"),
            passphrase_env: None,
        },
        known_hosts,
    }
}

#[tokio::test]
async fn a_node_is_reached_through_the_bastion_and_lost_with_it() {
    let mut bastion = sshd_or_skip!();
    let node = sshd_or_skip!();
    let mut target = node.target(node.trusting_known_hosts());
    target.jumps = vec![jump_via(&bastion, bastion.trusting_known_hosts())];
    let t = SshTransport::connect(target)
        .await
        .expect("connect through");
    let out = t.exec(&RemoteCommand::new("echo").arg("hi")).await.unwrap();
    assert_eq!((out.status, out.stdout.as_slice()), (0, b"hi\n".as_slice()));
    // The session runs over the bastion's: without it, it is gone.
    bastion.kill();
    let err = t.exec(&RemoteCommand::new("true")).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
}

#[tokio::test]
async fn a_bastion_with_a_changed_key_is_refused_by_name() {
    let bastion = sshd_or_skip!();
    let node = sshd_or_skip!();
    let mut target = node.target(node.trusting_known_hosts());
    // The bastion's address recorded with the node's key.
    let wrong = bastion.known_hosts_with(&format!("{} {}\n", bastion.lookup(), node.host_pub()));
    target.jumps = vec![jump_via(&bastion, wrong)];
    let err = SshTransport::connect(target).await.unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
    let named = format!("jump host bastion (127.0.0.1:{})", bastion.port);
    assert!(err.to_string().contains(&named), "{err}");
    assert!(!err.is_unreachable());
}

#[tokio::test]
async fn a_node_the_bastion_cannot_reach_is_unreachable_naming_the_bastion() {
    let bastion = sshd_or_skip!();
    let node = sshd_or_skip!();
    let mut target = node.target(node.trusting_known_hosts());
    target.port = free_port();
    target.jumps = vec![jump_via(&bastion, bastion.trusting_known_hosts())];
    let err = SshTransport::connect(target).await.unwrap_err();
    assert!(matches!(err, TransportError::JumpForward { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert!(err.to_string().starts_with("jump host bastion"), "{err}");
}
