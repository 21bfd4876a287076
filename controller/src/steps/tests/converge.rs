//! A converged node has nothing to do; a fresh, drifted, stopped,
//! interrupted or outdated node gets exactly the changes that repair it; a
//! Pi is judged by its cgroup controllers; an upgrade skipping a minor
//! release is refused.

use super::*;

#[test]
fn a_converged_node_has_nothing_to_do() {
    let inv = inventory();
    let d = desired(&inv);
    assert!(plan(&inv, &d, &converged(&d)).is_empty());
}

#[test]
fn a_fresh_node_gets_everything_and_a_start() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.files.clear();
    f.started_with.clear();
    f.units.clear();
    f.k3s_version = None;
    let p = plan(&inv, &d, &f);
    assert_eq!(
        names(&p),
        [
            "k3s-binary",
            "k3s-tools",
            "k3s-config",
            "k3s-unit",
            "k3s-service"
        ]
    );
    assert_eq!(
        p[0].1[0],
        Change::new(paths::K3S_BIN, "absent", "v1.32.5+k3s1")
    );
    let service: Vec<&str> = p[4].1.iter().map(|c| c.after.as_str()).collect();
    // A unit systemd never loaded needs no reload: starting it reads it.
    assert_eq!(service, ["enabled", "active"]);
}

#[test]
fn config_drift_rewrites_the_config_and_restarts_only_the_service() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.files.insert(paths::CONFIG.into(), "edited".into());
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-config", "k3s-service"]);
    assert_eq!(p[1].1[0].after, "restarted (k3s-config changed)");
}

#[test]
fn config_drift_is_shown_without_a_hash_of_the_secret_file() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    let edited = sha256_hex(b"edited");
    f.files.insert(paths::CONFIG.into(), edited.clone());
    let p = plan(&inv, &d, &f);
    assert_eq!(
        p[0].1,
        [Change::new(paths::CONFIG, "modified", "pictl's config")]
    );
    let DesiredConfig::Known(cfg) = &d.config else {
        panic!("known config")
    };
    let want = sha256_hex(cfg.expose().as_bytes());
    let shown = format!("{p:?}");
    for hash in [&edited, &want] {
        assert!(!shown.contains(&hash[..8]), "{shown}");
    }
    assert!(!shown.contains("sha256"), "{shown}");
}

#[test]
fn an_interrupted_run_is_finished_by_restarting() {
    // Files already new, but K3s still runs with the old binary.
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.started_with.insert(paths::K3S_BIN.into(), "old".into());
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-service"]);
    assert_eq!(
        p[0].1[0].before,
        format!("running with an older {}", paths::K3S_BIN)
    );
}

#[test]
fn a_stopped_service_is_started_not_reinstalled() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    if let Some(u) = f.units.get_mut("k3s.service") {
        u.active = false;
        u.active_state = "inactive".into();
    }
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-service"]);
    assert_eq!(p[0].1, [Change::new("k3s.service", "inactive", "active")]);
}

#[test]
fn an_upgrade_replaces_the_binary_and_restarts() {
    let inv = inventory();
    let mut d = desired(&inv);
    d.version = "v1.33.1+k3s1".into();
    d.binary_sha256 = "newer".into();
    let p = plan(&inv, &d, &converged(&desired(&inv)));
    assert_eq!(names(&p), ["k3s-binary", "k3s-service"]);
    assert_eq!(
        p[0].1[0],
        Change::new(paths::K3S_BIN, "v1.32.5+k3s1", "v1.33.1+k3s1")
    );
}

#[test]
fn a_pi_is_judged_by_its_controllers_not_its_cmdline_flags() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    // Memory on and no flags: converged, nothing to edit or reboot.
    f.boot_cmdline = Some((
        "/boot/firmware/cmdline.txt".into(),
        "console=tty1 rootwait".into(),
    ));
    assert_eq!(check_one(&PiCgroups, &inv, &d, &f), Check::Converged);
    assert!(
        plan(&inv, &d, &f).is_empty(),
        "a converged Pi plans nothing"
    );
    // Memory off on 6.12: cgroup_enable=memory only, and a reboot.
    f.cgroup_controllers.retain(|c| c != "memory");
    let Check::Change(p) = check_one(&PiCgroups, &inv, &d, &f) else {
        panic!("expected changes")
    };
    assert_eq!(p.add, ["cgroup_enable=memory"]);
    assert_eq!(p.changes()[1].what, "reboot");
    // After the reboot the flag is there but the controller is still off.
    f.boot_cmdline = Some((
        "/boot/firmware/cmdline.txt".into(),
        with_flags("console=tty1 rootwait", &p.add),
    ));
    assert!(
        matches!(check_one(&PiCgroups, &inv, &d, &f), Check::Blocked(why) if why.contains("memory cgroup") && why.contains("6.12.25"))
    );
}

#[test]
fn an_upgrade_that_skips_a_minor_release_is_refused_with_the_path() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.k3s_version = Some("v1.30.4+k3s1".into());
    f.files.insert(paths::K3S_BIN.into(), "older".into());
    let Check::Blocked(why) = check_one(&K3sBinary, &inv, &d, &f) else {
        panic!("expected a refusal")
    };
    assert!(why.contains("would skip v1.31"), "{why}");
    assert!(why.contains("channel = \"v1.31\""), "{why}");
}
