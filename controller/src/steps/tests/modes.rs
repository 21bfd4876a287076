//! Files with the wrong mode or owner are chmodded or chowned back, not
//! rewritten, and restart nothing; a file rewritten anyway gets its mode
//! from the upload.

use super::*;

/// (path, mode, uid) a converged node has wrong.
fn wrong_meta(d: &Desired, path: &str, mode: u32, uid: u32) -> Facts {
    let mut f = converged(d);
    f.file_meta.insert(
        path.into(),
        FileMeta {
            mode,
            uid,
            gid: uid,
        },
    );
    f
}

#[test]
fn a_config_chmodded_644_is_chmodded_back_without_a_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let f = wrong_meta(&d, paths::CONFIG, 0o644, 0);
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-config"], "no restart, no reload: {p:?}");
    assert_eq!(
        p[0].1.iter().map(Change::to_string).collect::<Vec<_>>(),
        ["/etc/rancher/k3s/config.yaml: mode 0644 → 0600"]
    );
    let Check::Change(K3sConfigPlan::Fix(fix)) = check_one(&K3sConfig, &inv, &d, &f) else {
        panic!("expected a metadata fix")
    };
    assert_eq!(fix.want, FileMeta::root(0o600));
}

#[test]
fn a_chowned_binary_is_chowned_back_not_reinstalled_nor_restarted() {
    let inv = inventory();
    let d = desired(&inv);
    let f = wrong_meta(&d, paths::K3S_BIN, 0o755, 1000);
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-binary"], "{p:?}");
    assert_eq!(
        p[0].1,
        [Change::new(paths::K3S_BIN, "owner 1000:1000", "0:0")]
    );
    assert!(matches!(
        check_one(&K3sBinary, &inv, &d, &f),
        Check::Change(K3sBinaryPlan::Fix(_))
    ));
}

#[test]
fn a_unit_with_the_wrong_mode_is_fixed_without_reload_or_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let f = wrong_meta(&d, paths::SERVER_UNIT, 0o666, 0);
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-unit"], "{p:?}");
    assert_eq!(
        p[0].1[0].to_string(),
        format!("{}: mode 0666 → 0644", paths::SERVER_UNIT)
    );
}

#[test]
fn a_rewritten_file_gets_its_mode_from_the_upload_not_a_separate_fix() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = wrong_meta(&d, paths::CONFIG, 0o644, 1000);
    f.files.insert(paths::CONFIG.into(), "edited".into());
    let Check::Change(p) = check_one(&K3sConfig, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert!(p.rewrites());
    assert_eq!(p.changes().len(), 1, "{p:?}");
    // Content and mode both wrong: this one restarts.
    assert_eq!(names(&plan(&inv, &d, &f)), ["k3s-config", "k3s-service"]);
}
