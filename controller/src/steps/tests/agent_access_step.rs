//! The agent's access to the API (its token, CA and publish.conf):
//! skipped until the API is up, written once, rewritten when the token
//! rotates, and the token never shown.

use super::*;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.do-not-print-me";

fn with_access(inv: &Inventory) -> Desired {
    let mut d = desired(inv);
    d.agent = Some(Ok(crate::agent_binary::AgentBinary {
        sha256: "a".repeat(64),
        bytes: std::sync::Arc::new(vec![1, 2, 3]),
    }));
    d.agent_access = Some(AccessFiles {
        token: Secret::new(TOKEN),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        publish_conf: publish_conf("https://10.0.0.1:6443", "s1", None, &[]),
    });
    d
}

/// A node holding every access file with the right content and metadata.
fn holding(d: &Desired) -> Facts {
    let mut f = converged(d);
    f.agent_ids = Some((999, 998));
    let a = d.agent_access.as_ref().expect("access");
    let agent = FileMeta {
        mode: 0o600,
        uid: 999,
        gid: 998,
    };
    for (path, body, meta) in [
        (paths::AGENT_TOKEN, a.token.expose(), agent),
        (paths::AGENT_CA, a.ca_pem.as_str(), agent),
        (
            paths::AGENT_PUBLISH,
            a.publish_conf.as_str(),
            FileMeta::root(0o644),
        ),
    ] {
        f.files.insert(path.into(), sha256_hex(body.as_bytes()));
        f.file_meta.insert(path.into(), meta);
    }
    f
}

#[test]
fn agent_access_skips_until_the_api_is_up_and_blocks_without_the_agents_user() {
    let inv = inventory();
    let mut d = with_access(&inv);
    let mut f = holding(&d);
    f.agent_ids = None;
    assert!(matches!(
        check_one(&AgentAccess, &inv, &d, &f),
        Check::Blocked(_)
    ));
    d.agent_access = None;
    assert!(matches!(
        check_one(&AgentAccess, &inv, &d, &f),
        Check::Skip(_)
    ));
}

#[test]
fn a_node_holding_its_access_is_converged() {
    let inv = inventory();
    let d = with_access(&inv);
    assert_eq!(
        check_one(&AgentAccess, &inv, &d, &holding(&d)),
        Check::Converged
    );
}

#[test]
fn a_fresh_node_gets_three_files_and_one_restart_and_the_token_is_never_shown() {
    let inv = inventory();
    let d = with_access(&inv);
    let mut f = converged(&d);
    f.agent_ids = Some((999, 998));
    let Check::Change(p) = check_one(&AgentAccess, &inv, &d, &f) else {
        panic!("expected changes")
    };
    assert_eq!(
        p.changes()
            .iter()
            .map(Change::to_string)
            .collect::<Vec<_>>(),
        [
            "/etc/pictl-agent/token: absent → pictl's",
            "/etc/pictl-agent/ca.crt: absent → pictl's",
            "/etc/pictl-agent/publish.conf: absent → pictl's",
            "pictl-agent.service: running → restarted",
        ]
    );
    assert!(p.restart);
    let shown = format!(
        "{p:?} {:?} {}",
        d.agent_access,
        serde_json::to_string(&p).expect("json")
    );
    assert!(!shown.contains("do-not-print-me"), "{shown}");
}

#[test]
fn a_rotated_token_is_rewritten_and_restarts() {
    let inv = inventory();
    let mut d = with_access(&inv);
    let f = holding(&d);
    if let Some(a) = d.agent_access.as_mut() {
        a.token = Secret::new("another");
    }
    let Check::Change(p) = check_one(&AgentAccess, &inv, &d, &f) else {
        panic!("expected a rewrite")
    };
    assert_eq!(p.write, [(paths::AGENT_TOKEN, "other content")]);
    assert!(p.restart);
}

#[test]
fn a_token_made_world_readable_is_chmodded_back_without_a_restart() {
    let inv = inventory();
    let d = with_access(&inv);
    let mut f = holding(&d);
    f.file_meta.insert(
        paths::AGENT_TOKEN.into(),
        FileMeta {
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
    );
    let Check::Change(p) = check_one(&AgentAccess, &inv, &d, &f) else {
        panic!("expected a fix")
    };
    assert!(p.write.is_empty() && !p.restart);
    assert_eq!(
        p.changes()
            .iter()
            .map(Change::to_string)
            .collect::<Vec<_>>(),
        [
            "/etc/pictl-agent/token: mode 0644 → 0600",
            "/etc/pictl-agent/token: owner 0:0 → 999:998",
        ]
    );
}
