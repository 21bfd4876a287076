use super::*;
use crate::collect::{Exec, ExecError};
use std::path::PathBuf;

const NOW: u64 = 1_800_000_000;

struct NoExec;
impl Exec for NoExec {
    fn stdout(&self, program: &str, _: &[&str]) -> std::result::Result<String, ExecError> {
        Err(ExecError::NotInstalled {
            program: program.into(),
        })
    }
}

fn sources(root: PathBuf) -> Sources {
    Sources {
        root,
        kubelet_healthz: crate::collect::KUBELET_HEALTHZ,
        kubelet_timeout: std::time::Duration::from_millis(1),
        exec: Box::new(NoExec),
        fsync: crate::collect::fsync::Probe::new(std::time::Duration::ZERO),
    }
}

/// A PEM leaf ending `secs` after [`NOW`] (an issuer's CA appended, as K3s's files have it).
fn leaf(secs: i64) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(vec!["node1".to_string()]).expect("params");
    p.not_before = time::OffsetDateTime::from_unix_timestamp(NOW as i64 - 86_400).expect("t");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(NOW as i64 + secs).expect("t");
    let ca = rcgen::CertificateParams::new(vec![]).expect("ca");
    let ca = ca.self_signed(&key).expect("ca");
    format!("{}{}", p.self_signed(&key).expect("cert").pem(), ca.pem())
}

fn put(root: &std::path::Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

#[test]
fn the_earliest_leaf_over_server_and_agent_dirs_is_reported_and_cas_are_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    put(
        root,
        "/var/lib/rancher/k3s/server/tls/client-admin.crt",
        &leaf(300 * 86_400),
    );
    // A CA ending sooner is not a leaf K3s renews: skipped.
    put(
        root,
        "/var/lib/rancher/k3s/server/tls/server-ca.crt",
        &leaf(5 * 86_400),
    );
    put(
        root,
        "/var/lib/rancher/k3s/agent/client-ca.crt",
        &leaf(5 * 86_400),
    );
    put(
        root,
        "/var/lib/rancher/k3s/agent/serving-kubelet.crt",
        &leaf(100 * 86_400 + 5),
    );
    put(
        root,
        "/var/lib/rancher/k3s/agent/serving-kubelet.key",
        "not a cert",
    );
    let got = collect(&sources(root.to_path_buf()), NOW)
        .expect("collect")
        .expect("found");
    assert_eq!(got.file, "/var/lib/rancher/k3s/agent/serving-kubelet.crt");
    assert_eq!(got.not_after, NOW as i64 + 100 * 86_400 + 5);
    assert_eq!(got.days_left, 100);
    assert!(in_renewal_window(got.not_after, NOW));
}

#[test]
fn a_node_without_k3s_has_no_certificates_and_a_broken_file_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    assert_eq!(
        collect(&sources(dir.path().to_path_buf()), NOW).expect("ok"),
        None
    );
    put(
        dir.path(),
        "/var/lib/rancher/k3s/agent/client-kubelet.crt",
        "garbage",
    );
    let err = collect(&sources(dir.path().to_path_buf()), NOW).expect_err("broken");
    assert!(
        crate::error_chain(&err).contains("client-kubelet.crt"),
        "{}",
        crate::error_chain(&err)
    );
}

#[test]
fn the_window_is_k3s_120_days_inclusive_and_days_round_down() {
    assert!(in_renewal_window(NOW as i64 + 120 * 86_400, NOW));
    assert!(!in_renewal_window(NOW as i64 + 120 * 86_400 + 1, NOW));
    assert_eq!(days_left(NOW as i64 + 86_399, NOW), 0);
    assert_eq!(days_left(NOW as i64 - 1, NOW), -1);
}

#[test]
fn utc_and_generalized_times_parse_to_unix_seconds() {
    assert_eq!(parse_time(0x17, "700101000000Z"), Some(0));
    assert_eq!(parse_time(0x17, "270101000000Z"), Some(1_798_761_600));
    assert_eq!(parse_time(0x18, "20991231235959Z"), Some(4_102_444_799));
    assert_eq!(parse_time(0x17, "2701010000Z"), None);
    // A certificate past 2049 carries a GeneralizedTime.
    let dir = tempfile::tempdir().expect("tmp");
    put(
        dir.path(),
        "/var/lib/rancher/k3s/agent/a.crt",
        &leaf(40 * 365 * 86_400),
    );
    let got = collect(&sources(dir.path().to_path_buf()), NOW)
        .expect("ok")
        .expect("found");
    assert_eq!(got.not_after, NOW as i64 + 40 * 365 * 86_400);
}

#[test]
fn the_note_written_as_root_is_what_the_unprivileged_daemon_reads() {
    let root_view = tempfile::tempdir().expect("tmp");
    put(
        root_view.path(),
        "/var/lib/rancher/k3s/agent/client-kubelet.crt",
        &leaf(90 * 86_400),
    );
    // The daemon's view: the note only (the certificate directories are
    // root's); the days are counted at the daemon's own time.
    let daemon_view = tempfile::tempdir().expect("tmp");
    let note = daemon_view.path().join(SNAPSHOT.trim_start_matches('/'));
    write_note(&sources(root_view.path().to_path_buf()), NOW, &note).expect("write");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&note).expect("note").permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let text = std::fs::read_to_string(&note).expect("note");
    assert!(
        !text.contains("PRIVATE") && text.contains("client-kubelet.crt"),
        "{text}"
    );
    let got = collect(
        &sources(daemon_view.path().to_path_buf()),
        NOW + 10 * 86_400,
    )
    .expect("collect")
    .expect("from the note");
    assert_eq!(got.not_after, NOW as i64 + 90 * 86_400);
    assert_eq!(got.days_left, 80);
    // K3s gone: the note goes too.
    std::fs::remove_dir_all(root_view.path().join("var")).expect("rm");
    write_note(&sources(root_view.path().to_path_buf()), NOW, &note).expect("write");
    assert!(!note.exists());
    assert_eq!(
        collect(&sources(daemon_view.path().to_path_buf()), NOW).expect("ok"),
        None
    );
}
