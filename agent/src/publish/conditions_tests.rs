use super::*;

fn fixture(name: &str) -> NodeReport {
    let json = match name {
        "pi-healthy" => include_str!("fixtures/pi-healthy.json"),
        "pi-failing" => include_str!("fixtures/pi-failing.json"),
        "amd64-unknowns" => include_str!("fixtures/amd64-unknowns.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(json).expect("fixture parses")
}

fn by_kind<'a>(js: &'a [Judged], kind: &str) -> &'a Judged {
    js.iter()
        .find(|j| j.kind == kind)
        .unwrap_or_else(|| panic!("{kind} missing from {js:?}"))
}

fn summary(js: &[Judged]) -> Vec<(&'static str, &'static str, &'static str)> {
    js.iter()
        .map(|j| (j.kind, j.status.as_str(), j.reason))
        .collect()
}

#[test]
fn a_healthy_pi_is_all_false_even_with_past_under_voltage() {
    let js = judge(&fixture("pi-healthy"), DEFAULT_DISK_PRESSURE_PERCENT);
    assert_eq!(
        summary(&js),
        [
            (PI_UNDER_VOLTAGE, "False", "PowerSupplyOK"),
            (PI_THROTTLED, "False", "NotThrottled"),
            (ROOT_DISK_PRESSURE, "False", "RootFilesystemHasSpace"),
            (CLOCK_UNSYNCHRONIZED, "False", "ClockSynchronized"),
            (K3S_SERVICE_DOWN, "False", "K3sServiceActive"),
            (K3S_CERTIFICATES_EXPIRING, "False", "CertificatesValid"),
        ]
    );
    assert!(
        by_kind(&js, PI_UNDER_VOLTAGE).message.contains("0x50000"),
        "{js:?}"
    );
}

#[test]
fn a_failing_pi_has_every_problem_true_with_its_figures() {
    let js = judge(&fixture("pi-failing"), DEFAULT_DISK_PRESSURE_PERCENT);
    assert_eq!(
        summary(&js),
        [
            (PI_UNDER_VOLTAGE, "True", "UnderVoltageDetected"),
            (PI_THROTTLED, "True", "FirmwareThrottling"),
            (ROOT_DISK_PRESSURE, "True", "RootFilesystemFull"),
            (CLOCK_UNSYNCHRONIZED, "True", "NTPNotSynchronized"),
            (K3S_SERVICE_DOWN, "True", "K3sServiceNotActive"),
            (K3S_CERTIFICATES_EXPIRING, "True", "InRenewalWindow"),
        ]
    );
    let disk = &by_kind(&js, ROOT_DISK_PRESSURE).message;
    assert!(
        disk.contains("96.9% used") && disk.contains("threshold 90%"),
        "{disk}"
    );
    assert_eq!(
        by_kind(&js, K3S_SERVICE_DOWN).message,
        "k3s-agent.service is failed"
    );
    assert!(
        by_kind(&js, PI_THROTTLED)
            .message
            .starts_with("CPU throttled (get_throttled 0x50005)")
    );
    assert_eq!(
        by_kind(&js, K3S_CERTIFICATES_EXPIRING).message,
        "/var/lib/rancher/k3s/agent/client-kubelet.crt ends in 100 days (2024-02-22T22:14:50Z), inside K3s's 120-day renewal window: K3s renews it only when it starts; restart K3s on this node (pictl apply does, one node at a time)"
    );
}

#[test]
fn certificates_turn_expiring_at_k3s_120_day_window_not_before() {
    let mut r = fixture("pi-healthy");
    let status = |r: &NodeReport| by_kind(&judge(r, 90.0), K3S_CERTIFICATES_EXPIRING).status;
    if let Some(c) = r.k3s_certificates.as_mut() {
        c.not_after = r.collected_at as i64 + 120 * 86_400 + 1;
    }
    assert_eq!(status(&r), Status::False);
    if let Some(c) = r.k3s_certificates.as_mut() {
        c.not_after -= 1;
    }
    assert_eq!(status(&r), Status::True);
}

#[test]
fn off_a_pi_there_are_no_pi_conditions_and_what_is_unknown_says_so() {
    let js = judge(&fixture("amd64-unknowns"), DEFAULT_DISK_PRESSURE_PERCENT);
    assert_eq!(
        summary(&js),
        [
            (ROOT_DISK_PRESSURE, "Unknown", "RootFilesystemUnknown"),
            (CLOCK_UNSYNCHRONIZED, "Unknown", "ClockStateUnknown"),
            (K3S_SERVICE_DOWN, "Unknown", "K3sServiceUnknown"),
            (
                K3S_CERTIFICATES_EXPIRING,
                "Unknown",
                "K3sCertificatesNotFound"
            ),
        ]
    );
}

#[test]
fn the_disk_threshold_is_configurable_and_strict() {
    let r = fixture("pi-healthy");
    // 37.3% used: above 37, not above 38.
    let status = |t| by_kind(&judge(&r, t), ROOT_DISK_PRESSURE).status;
    assert_eq!(status(37.0), Status::True);
    assert_eq!(status(38.0), Status::False);
}

#[test]
fn only_status_or_reason_changes_need_a_write_not_live_figures() {
    let healthy = judge(&fixture("pi-healthy"), DEFAULT_DISK_PRESSURE_PERCENT);
    let (held, first) = stamp(&healthy, &[], "2026-11-29T16:00:00Z");
    assert_eq!(first.len(), 6, "everything is new on an empty Node");
    assert!(!differs(&healthy, &held));

    let mut fuller = fixture("pi-healthy");
    if let Some(fs) = fuller.root_fs.as_mut() {
        fs.available_bytes -= 1 << 30;
    }
    let fuller = judge(&fuller, DEFAULT_DISK_PRESSURE_PERCENT);
    assert_ne!(fuller, healthy, "the message moved with the figures");
    assert!(!differs(&fuller, &held), "a figure alone is no write");

    let failing = judge(&fixture("pi-failing"), DEFAULT_DISK_PRESSURE_PERCENT);
    assert!(differs(&failing, &held));
    assert!(
        differs(&healthy, &held[1..]),
        "a missing condition is a write"
    );
}

#[test]
fn stamping_keeps_transition_times_of_unchanged_statuses() {
    let healthy = judge(&fixture("pi-healthy"), DEFAULT_DISK_PRESSURE_PERCENT);
    let (held, _) = stamp(&healthy, &[], "2026-11-29T16:00:00Z");
    let mut half = fixture("pi-healthy");
    half.clock_synchronized = Some(false);
    let half = judge(&half, DEFAULT_DISK_PRESSURE_PERCENT);
    let (next, transitions) = stamp(&half, &held, "2026-11-29T16:05:00Z");
    assert_eq!(
        transitions.iter().map(|j| j.kind).collect::<Vec<_>>(),
        [CLOCK_UNSYNCHRONIZED]
    );
    for c in &next {
        assert_eq!(c.last_heartbeat_time, "2026-11-29T16:05:00Z");
        let want = if c.kind == CLOCK_UNSYNCHRONIZED {
            "2026-11-29T16:05:00Z"
        } else {
            "2026-11-29T16:00:00Z"
        };
        assert_eq!(c.last_transition_time, want, "{c:?}");
    }
}

/// A server whose probe made `slow` of 8 writes over 10 ms.
fn server_probed(slow: u32, same_filesystem: bool) -> NodeReport {
    let mut r = fixture("pi-healthy");
    r.data_dir_fsync = Some(crate::report::DataDirFsync {
        probe_dir: "/var/lib/pictl-agent".into(),
        same_filesystem,
        etcd: true,
        writes: 8,
        slow_writes: slow,
        max_seconds: if slow > 0 { 0.045 } else { 0.002 },
        mean_seconds: 0.0125,
        timed_out: false,
    });
    r
}

#[test]
fn a_servers_disk_is_slow_for_etcd_when_two_synced_writes_miss_10_ms() {
    let judge_one =
        |r: &NodeReport| by_kind(&judge(r, DEFAULT_DISK_PRESSURE_PERCENT), ETCD_DISK_SLOW).clone();
    let slow = judge_one(&server_probed(2, true));
    assert_eq!((slow.status, slow.reason), (Status::True, "SlowFsync"));
    assert!(
        slow.message.contains("2 of 8") && slow.message.contains("45.0 ms"),
        "{slow:?}"
    );
    assert!(slow.message.contains("SSD") && slow.message.contains("etcd-arg"));
    // One write over 10 ms is within what etcd's 99th percentile allows.
    let once = judge_one(&server_probed(1, true));
    assert_eq!((once.status, once.reason), (Status::False, "FsyncFast"));
    assert_eq!(judge_one(&server_probed(0, true)).status, Status::False);
    // Measured on another filesystem than the data dir's: not judged.
    let other = judge_one(&server_probed(5, false));
    assert_eq!(
        (other.status, other.reason),
        (Status::Unknown, "DataDirOnAnotherFilesystem")
    );
}

#[test]
fn nodes_without_embedded_etcd_have_no_etcd_disk_condition() {
    // pi-failing runs k3s-agent only: nothing probed.
    let js = judge(&fixture("pi-failing"), DEFAULT_DISK_PRESSURE_PERCENT);
    assert!(js.iter().all(|j| j.kind != ETCD_DISK_SLOW), "{js:?}");
    // A single server on SQLite: probed, but no etcd to judge it for.
    let mut sqlite = server_probed(5, true);
    if let Some(f) = sqlite.data_dir_fsync.as_mut() {
        f.etcd = false;
    }
    let js = judge(&sqlite, DEFAULT_DISK_PRESSURE_PERCENT);
    assert!(js.iter().all(|j| j.kind != ETCD_DISK_SLOW), "{js:?}");
}
