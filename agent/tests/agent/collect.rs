//! Collectors against a fake node tree in a tempdir.

use pictl_agent::collect::collect;
use pictl_agent::report::{Health, Load, Memory, REPORT_VERSION, Swap, UnitState};

use crate::support::*;

const SERVER_ACTIVE: &str = "Id=k3s.service\nLoadState=loaded\nActiveState=active\n\n\
                             Id=k3s-agent.service\nLoadState=not-found\nActiveState=inactive\n";

#[test]
fn fake_pi_is_read_field_by_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_pi(dir.path());
    let exec = FakeExec::default()
        .with(SYSTEMCTL_SHOW, SERVER_ACTIVE)
        .with(TIMEDATECTL, "yes\n");
    let r = collect(&sources(dir.path(), exec, healthy_kubelet()));

    assert_eq!(r.collection_errors, Vec::<String>::new());
    assert_eq!(r.version, REPORT_VERSION);
    assert_eq!(r.hostname, "pi-node1");
    assert_eq!(r.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(r.collected_at > 1_600_000_000);
    assert_eq!(r.uptime_seconds, Some(86400));
    assert_eq!(
        r.load,
        Some(Load {
            one: 0.52,
            five: 0.41,
            fifteen: 0.30
        })
    );
    assert_eq!(
        r.memory,
        Some(Memory {
            total_bytes: 3_884_096 * 1024,
            available_bytes: 2_942_048 * 1024
        })
    );
    assert_eq!(
        r.swap,
        Some(Swap {
            total_bytes: 102_396 * 1024,
            free_bytes: 51_198 * 1024
        })
    );
    let fs = r.root_fs.as_ref().expect("the tempdir's filesystem");
    assert!(
        fs.total_bytes > 0
            && dir
                .path()
                .canonicalize()
                .expect("c")
                .starts_with(&fs.mount_point)
    );
    assert_eq!(r.soc_temperature_celsius, Some(51.234));
    assert_eq!(r.model.as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
    let t = r.throttling.expect("get_throttled read");
    assert_eq!(t.raw, 0x50005);
    assert!(t.under_voltage_now && t.throttled_now && !t.freq_capped_now && !t.soft_temp_limit_now);
    assert!(t.under_voltage_occurred && t.throttled_occurred);
    assert!(!t.freq_capped_occurred && !t.soft_temp_limit_occurred);
    assert_eq!(r.units["k3s.service"], UnitState::Active);
    assert_eq!(r.units["k3s-agent.service"], UnitState::Absent);
    assert_eq!(r.kubelet_healthy, Some(true));
    assert_eq!(r.clock_synchronized, Some(true));

    // Under-voltage now fails the node; throttling now and the history degrade it.
    // The tempdir's real filesystem may be nearly full on a CI box: only that
    // problem may come on top.
    assert_eq!(r.health, Health::Failing, "{:?}", r.problems);
    let pi_problems = r
        .problems
        .iter()
        .filter(|p| !p.contains("root filesystem"))
        .count();
    assert_eq!(pi_problems, 3, "{:?}", r.problems);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("under-voltage now (get_throttled 0x50005)")),
        "{:?}",
        r.problems
    );
}

#[test]
fn healthy_pi_without_throttling_is_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_pi(dir.path());
    write(
        dir.path(),
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        b"0x0\n",
    );
    let exec = FakeExec::default()
        .with(SYSTEMCTL_SHOW, SERVER_ACTIVE)
        .with(TIMEDATECTL, "yes\n");
    let r = collect(&sources(dir.path(), exec, healthy_kubelet()));
    // The tempdir's real filesystem may be nearly full on a CI box; only that may show.
    let others: Vec<_> = r
        .problems
        .iter()
        .filter(|p| !p.contains("root filesystem"))
        .collect();
    assert!(others.is_empty(), "{:?}", r.problems);
}

#[test]
fn model_falls_back_to_sysfs_device_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "sys/firmware/devicetree/base/model",
        b"Raspberry Pi 5 Model B Rev 1.0\0",
    );
    let r = collect(&sources(dir.path(), FakeExec::default(), dead_port()));
    assert_eq!(r.model.as_deref(), Some("Raspberry Pi 5 Model B Rev 1.0"));
}

#[test]
fn throttling_falls_back_to_vcgencmd_only_when_installed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = FakeExec::default().with("vcgencmd get_throttled", "throttled=0x20002\n");
    let r = collect(&sources(dir.path(), exec, dead_port()));
    let t = r.throttling.expect("from vcgencmd");
    assert!(t.freq_capped_now && t.freq_capped_occurred && !t.under_voltage_now);

    let r = collect(&sources(dir.path(), FakeExec::default(), dead_port()));
    assert_eq!(r.throttling, None);
}

#[test]
fn empty_tree_reports_what_is_missing_and_not_hardware_it_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = collect(&sources(dir.path(), FakeExec::default(), dead_port()));
    let errors = r.collection_errors.join("\n");
    for what in ["hostname:", "uptime:", "load:", "memory:"] {
        assert!(errors.contains(what), "{what} missing from {errors}");
    }
    assert!(errors.contains("reading "), "{errors}");
    // Off a Pi these are simply absent, not errors.
    assert!(
        !errors.contains("temperature") && !errors.contains("model") && !errors.contains("throttl")
    );
    assert_eq!(
        (r.load, r.memory, r.soc_temperature_celsius),
        (None, None, None)
    );
    // No systemctl: units unknown, kubelet still asked (and dead), clock unknown.
    assert!(r.units.values().all(|s| *s == UnitState::Unknown));
    assert_eq!(r.kubelet_healthy, Some(false));
    assert_eq!(r.clock_synchronized, None);
    assert_eq!(r.health, Health::Failing);
}

#[test]
fn node_without_k3s_does_not_probe_the_kubelet() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_pi(dir.path());
    let none = "Id=k3s.service\nLoadState=not-found\nActiveState=inactive\n\n\
                Id=k3s-agent.service\nLoadState=not-found\nActiveState=inactive\n";
    let exec = FakeExec::default().with(SYSTEMCTL_SHOW, none);
    let r = collect(&sources(dir.path(), exec, dead_port()));
    assert_eq!(r.kubelet_healthy, None);
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("no K3s unit installed")),
        "{:?}",
        r.problems
    );
}

#[test]
fn garbage_in_proc_is_a_collection_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_pi(dir.path());
    write(dir.path(), "proc/loadavg", b"not numbers\n");
    write(dir.path(), "sys/class/thermal/thermal_zone0/temp", b"hot\n");
    let r = collect(&sources(dir.path(), FakeExec::default(), dead_port()));
    let errors = r.collection_errors.join("\n");
    assert!(
        errors.contains("load: parsing load averages in ") && errors.contains("proc/loadavg"),
        "{errors}"
    );
    assert!(
        errors.contains("SoC temperature: parsing millidegrees"),
        "{errors}"
    );
    assert_eq!(r.load, None);
}
