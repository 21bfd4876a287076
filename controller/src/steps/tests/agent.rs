//! The health agent's binary, unit and firewall drop-in: left alone when
//! in place, installed or fixed when not, skipped with a reason without a
//! binary.

use super::*;

#[test]
fn the_agents_files_with_wrong_modes_are_fixed_without_a_restart() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.file_meta
        .insert(paths::HEALTH_AGENT_BIN.into(), FileMeta::root(0o777));
    f.file_meta.insert(
        paths::HEALTH_AGENT_UNIT.into(),
        FileMeta {
            mode: 0o644,
            uid: 1000,
            gid: 0,
        },
    );
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.binary, None);
    assert_eq!(p.unit, None);
    assert_eq!(p.fixes.len(), 2, "{p:?}");
    assert!(p.service.is_empty(), "{p:?}");
    let shown: Vec<String> = p.changes().iter().map(Change::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("{}: mode 0777 → 0755", paths::HEALTH_AGENT_BIN),
            format!("{}: owner 1000:0 → 0:0", paths::HEALTH_AGENT_UNIT),
        ]
    );
}

fn with_agent(inv: &Inventory) -> (Desired, Facts) {
    let bin = crate::agent_binary::AgentBinary {
        sha256: "a9e7a9e7a9e7a9e7a9e7".into(),
        bytes: std::sync::Arc::new(b"agent".to_vec()),
    };
    let mut d = desired(inv);
    d.agent = Some(Ok(bin));
    let mut f = converged(&d);
    f.files.insert(
        paths::HEALTH_AGENT_BIN.into(),
        "a9e7a9e7a9e7a9e7a9e7".into(),
    );
    f.files.insert(
        paths::HEALTH_AGENT_UNIT.into(),
        sha256_hex(pictl_agent::SYSTEMD_UNIT.as_bytes()),
    );
    f.file_meta
        .insert(paths::HEALTH_AGENT_BIN.into(), FileMeta::root(0o755));
    f.file_meta
        .insert(paths::HEALTH_AGENT_UNIT.into(), FileMeta::root(0o644));
    f.files.insert(
        paths::AGENT_DROPIN.into(),
        sha256_hex(d.agent_dropin.as_bytes()),
    );
    f.file_meta
        .insert(paths::AGENT_DROPIN.into(), FileMeta::root(0o644));
    f.files.insert(
        paths::SERVER_CERTS_HOOK.into(),
        sha256_hex(crate::steps::CERTS_HOOK.as_bytes()),
    );
    f.file_meta
        .insert(paths::SERVER_CERTS_HOOK.into(), FileMeta::root(0o644));
    let running = f.unit("k3s.service");
    f.units.insert("pictl-agent.service".into(), running);
    (d, f)
}

#[test]
fn the_health_agent_is_left_alone_when_installed_and_running() {
    let inv = inventory();
    let (d, f) = with_agent(&inv);
    assert_eq!(check_one(&HealthAgent, &inv, &d, &f), Check::Converged);
}

/// K3s's certificate drop-in is written with a reload of systemd and
/// nothing restarted: neither the agent nor K3s.
#[test]
fn k3s_certificate_drop_in_is_written_with_a_reload_and_no_restart() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.files.remove(paths::SERVER_CERTS_HOOK);
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(
        (p.hook, p.hook_path),
        (Some("absent"), paths::SERVER_CERTS_HOOK)
    );
    assert!(p.service.daemon_reload, "{p:?}");
    assert_eq!(p.service.action, ServiceAction::Keep);
    let shown: Vec<String> = p.changes().iter().map(Change::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with(paths::SERVER_CERTS_HOOK), "{shown:?}");
    assert_eq!(
        check_one(&crate::steps::K3sService, &inv, &d, &f),
        Check::Converged
    );
}

#[test]
fn a_new_agent_build_is_installed_and_restarts_the_agent() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.files
        .insert(paths::HEALTH_AGENT_BIN.into(), "older".into());
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.binary, Some("other build"));
    assert_eq!(
        p.service.action,
        ServiceAction::Restart(RestartReason::Replaced)
    );
    assert!(!p.service.daemon_reload, "only the binary changed");
}

/// A unit systemd never loaded is read from disk when started: writing it
/// needs no reload. One systemd still holds (its file deleted under it) does.
#[test]
fn a_missing_unit_is_written_and_started_reloading_only_a_unit_systemd_holds() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.files.remove(paths::HEALTH_AGENT_UNIT);
    let held = f.units.remove("pictl-agent.service").expect("running");
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.unit, Some("absent"));
    assert!(!p.service.daemon_reload && p.service.enable, "{p:?}");
    assert!(matches!(p.service.action, ServiceAction::Start { .. }));
    f.units.insert("pictl-agent.service".into(), held);
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert!(p.service.daemon_reload, "{p:?}");
}

#[test]
fn a_changed_firewall_drop_in_is_rewritten_and_reloads_and_restarts_the_agent() {
    let inv = inventory();
    let (mut d, f) = with_agent(&inv);
    d.agent_dropin = dropin(
        &["10.0.0.1".into()],
        &["10.42.0.0/16".parse().expect("cidr")],
    );
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.dropin, Some("other content"));
    assert_eq!((p.binary, p.unit), (None, None));
    assert!(p.service.daemon_reload, "{p:?}");
    assert_eq!(
        p.service.action,
        ServiceAction::Restart(RestartReason::Replaced)
    );
    let shown: Vec<String> = p.changes().iter().map(Change::to_string).collect();
    assert_eq!(
        shown[0],
        format!(
            "{}: other content → pictl's firewall drop-in",
            paths::AGENT_DROPIN
        )
    );
    assert!(
        d.agent_dropin
            .contains("IPAddressAllow=10.0.0.1 10.42.0.0/16\n")
    );
}

#[test]
fn the_health_agent_is_skipped_with_the_reason_when_there_is_no_binary() {
    let inv = inventory();
    let (mut d, f) = with_agent(&inv);
    d.agent = Some(Err(crate::agent_binary::AgentBinaryError::NotFound(
        "no pictl-agent for arm64".into(),
    )));
    assert_eq!(
        check_one(&HealthAgent, &inv, &d, &f),
        Check::Skip("no pictl-agent for arm64".into())
    );
}
