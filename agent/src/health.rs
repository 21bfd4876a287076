//! Health derivation: a pure function from the collected facts of a
//! [`NodeReport`] to its overall [`Health`] and the problems behind it.
//! No I/O here; collectors fill the report, this only judges it.

use crate::report::{Filesystem, Health, Memory, NodeReport, Throttling, UnitState};

/// Root filesystem use above which the node is failing (writes will soon fail).
pub const ROOT_FS_FAILING_PERCENT: f64 = 95.0;
/// Root filesystem use above which the node is degraded.
pub const ROOT_FS_DEGRADED_PERCENT: f64 = 85.0;
/// SoC temperature from which the node is degraded (the firmware soft limit is 80–85 °C).
pub const SOC_TEMP_DEGRADED_CELSIUS: f64 = 80.0;
/// Available memory share under which the node is degraded.
pub const MEMORY_AVAILABLE_DEGRADED_PERCENT: f64 = 10.0;

/// The verdict on one report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub health: Health,
    pub problems: Vec<String>,
}

impl Assessment {
    fn flag(&mut self, health: Health, problem: String) {
        self.health = self.health.max(health);
        self.problems.push(problem);
    }
}

/// Judges a report's facts; ignores its current `health` and `problems`.
/// Problems come in a fixed order: units, kubelet, disk, power and
/// throttling, temperature, memory, clock, then what was not collected.
pub fn assess(r: &NodeReport) -> Assessment {
    let mut a = Assessment::default();
    assess_units(r, &mut a);
    if r.kubelet_healthy == Some(false) {
        a.flag(Health::Failing, "kubelet healthz is not ok".into());
    }
    if let Some(fs) = &r.root_fs {
        assess_root_fs(fs, &mut a);
    }
    if let Some(t) = &r.throttling {
        assess_throttling_now(t, &mut a);
        assess_throttling_since_boot(t, &mut a);
    }
    if let Some(temp) = r.soc_temperature_celsius
        && temp >= SOC_TEMP_DEGRADED_CELSIUS
    {
        a.flag(Health::Degraded, format!("SoC temperature {temp:.1} °C"));
    }
    if let Some(m) = &r.memory {
        assess_memory(m, &mut a);
    }
    if r.clock_synchronized == Some(false) {
        a.flag(
            Health::Degraded,
            "clock not synchronized (NTPSynchronized=no)".into(),
        );
    }
    for e in &r.collection_errors {
        a.flag(Health::Degraded, format!("not collected: {e}"));
    }
    a
}

/// A nearly full root filesystem: degraded, then failing (writes will
/// soon fail).
fn assess_root_fs(fs: &Filesystem, a: &mut Assessment) {
    let used = fs.used_percent();
    let level = if used > ROOT_FS_FAILING_PERCENT {
        Health::Failing
    } else if used > ROOT_FS_DEGRADED_PERCENT {
        Health::Degraded
    } else {
        return;
    };
    a.flag(
        level,
        format!(
            "root filesystem {} is {used:.1}% used ({} available of {})",
            fs.mount_point,
            human_bytes(fs.available_bytes),
            human_bytes(fs.total_bytes)
        ),
    );
}

/// What the firmware says is happening now: under-voltage fails the node
/// (SD card corruption follows), the rest degrade it.
fn assess_throttling_now(t: &Throttling, a: &mut Assessment) {
    let raw = t.raw;
    let now = [
        (t.under_voltage_now, Health::Failing, "under-voltage now"),
        (t.throttled_now, Health::Degraded, "CPU throttled now"),
        (
            t.freq_capped_now,
            Health::Degraded,
            "ARM frequency capped now",
        ),
        (
            t.soft_temp_limit_now,
            Health::Degraded,
            "soft temperature limit active now",
        ),
    ];
    for (on, level, what) in now {
        if on {
            a.flag(level, format!("{what} (get_throttled {raw:#x})"));
        }
    }
}

/// What happened since boot and has stopped: one line, degraded.
fn assess_throttling_since_boot(t: &Throttling, a: &mut Assessment) {
    let occurred: Vec<&str> = [
        (t.under_voltage_occurred, "under-voltage"),
        (t.freq_capped_occurred, "frequency capping"),
        (t.throttled_occurred, "throttling"),
        (t.soft_temp_limit_occurred, "soft temperature limit"),
    ]
    .into_iter()
    .filter_map(|(on, what)| on.then_some(what))
    .collect();
    if !occurred.is_empty() {
        a.flag(
            Health::Degraded,
            format!(
                "since boot: {} occurred (get_throttled {:#x})",
                occurred.join(", "),
                t.raw
            ),
        );
    }
}

/// Little memory available: degraded (the OOM killer is near).
fn assess_memory(m: &Memory, a: &mut Assessment) {
    if m.total_bytes == 0 {
        return;
    }
    let pct = m.available_bytes as f64 * 100.0 / m.total_bytes as f64;
    if pct < MEMORY_AVAILABLE_DEGRADED_PERCENT {
        a.flag(
            Health::Degraded,
            format!(
                "memory available {pct:.1}% ({} of {})",
                human_bytes(m.available_bytes),
                human_bytes(m.total_bytes)
            ),
        );
    }
}

/// Sets `health` and `problems` from the report's facts.
pub fn apply(r: &mut NodeReport) {
    let a = assess(r);
    r.health = a.health;
    r.problems = a.problems;
}

/// The node runs whichever K3s unit is installed; that one must be active.
fn assess_units(r: &NodeReport, a: &mut Assessment) {
    let loaded: Vec<(&String, UnitState)> = r
        .units
        .iter()
        .map(|(n, s)| (n, *s))
        .filter(|(_, s)| s.is_loaded())
        .collect();
    if loaded.is_empty() {
        let absent: Vec<&str> = r
            .units
            .iter()
            .filter(|(_, s)| **s == UnitState::Absent)
            .map(|(n, _)| n.as_str())
            .collect();
        if !absent.is_empty() && absent.len() == r.units.len() {
            a.flag(
                Health::Failing,
                format!("no K3s unit installed ({} absent)", absent.join(", ")),
            );
        } else {
            a.flag(
                Health::Degraded,
                "K3s unit state unknown (systemctl not answering)".into(),
            );
        }
        return;
    }
    if loaded.iter().any(|(_, s)| *s == UnitState::Active) {
        return;
    }
    for (name, state) in loaded {
        a.flag(Health::Failing, format!("{name} is {}", state.as_str()));
    }
}

/// Binary units, one decimal: what a person reads in a problem line.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::{Filesystem, Memory, Throttling};

    /// A healthy K3s server node; each case changes one fact.
    fn healthy() -> NodeReport {
        NodeReport {
            units: BTreeMap::from([
                ("k3s.service".into(), UnitState::Active),
                ("k3s-agent.service".into(), UnitState::Absent),
            ]),
            kubelet_healthy: Some(true),
            root_fs: Some(Filesystem {
                mount_point: "/".into(),
                total_bytes: 1000,
                available_bytes: 500,
            }),
            memory: Some(Memory {
                total_bytes: 1000,
                available_bytes: 500,
            }),
            soc_temperature_celsius: Some(50.0),
            throttling: Some(Throttling::from_raw(0)),
            clock_synchronized: Some(true),
            ..NodeReport::default()
        }
    }

    fn fs(available_of_1000: u64) -> Option<Filesystem> {
        Some(Filesystem {
            mount_point: "/".into(),
            total_bytes: 1000,
            available_bytes: available_of_1000,
        })
    }

    fn units(k3s: UnitState, agent: UnitState) -> BTreeMap<String, UnitState> {
        BTreeMap::from([
            ("k3s.service".into(), k3s),
            ("k3s-agent.service".into(), agent),
        ])
    }

    #[test]
    fn health_table() {
        type Case = (&'static str, fn(&mut NodeReport), Health, &'static str);
        let cases: Vec<Case> = vec![
            ("healthy server", |_| {}, Health::Ok, ""),
            (
                "healthy agent",
                |r| r.units = units(UnitState::Absent, UnitState::Active),
                Health::Ok,
                "",
            ),
            (
                "server unit failed",
                |r| r.units = units(UnitState::Failed, UnitState::Absent),
                Health::Failing,
                "k3s.service is failed",
            ),
            (
                "agent unit inactive",
                |r| r.units = units(UnitState::Absent, UnitState::Inactive),
                Health::Failing,
                "k3s-agent.service is inactive",
            ),
            (
                "agent unit restarting",
                |r| r.units = units(UnitState::Absent, UnitState::Activating),
                Health::Failing,
                "k3s-agent.service is activating",
            ),
            (
                "no unit installed",
                |r| r.units = units(UnitState::Absent, UnitState::Absent),
                Health::Failing,
                "no K3s unit installed",
            ),
            (
                "systemctl unknown",
                |r| r.units = units(UnitState::Unknown, UnitState::Unknown),
                Health::Degraded,
                "K3s unit state unknown",
            ),
            (
                "kubelet unhealthy",
                |r| r.kubelet_healthy = Some(false),
                Health::Failing,
                "kubelet healthz is not ok",
            ),
            (
                "kubelet not asked",
                |r| r.kubelet_healthy = None,
                Health::Ok,
                "",
            ),
            (
                "root fs 96%",
                |r| r.root_fs = fs(40),
                Health::Failing,
                "root filesystem / is 96.0% used",
            ),
            (
                "root fs 95% exactly",
                |r| r.root_fs = fs(50),
                Health::Degraded,
                "95.0% used",
            ),
            (
                "root fs 86%",
                |r| r.root_fs = fs(140),
                Health::Degraded,
                "86.0% used",
            ),
            (
                "root fs 85% exactly",
                |r| r.root_fs = fs(150),
                Health::Ok,
                "",
            ),
            (
                "under-voltage now",
                |r| r.throttling = Some(Throttling::from_raw(0x1)),
                Health::Failing,
                "under-voltage now (get_throttled 0x1)",
            ),
            (
                "throttled now",
                |r| r.throttling = Some(Throttling::from_raw(0x4)),
                Health::Degraded,
                "CPU throttled now",
            ),
            (
                "freq capped now",
                |r| r.throttling = Some(Throttling::from_raw(0x2)),
                Health::Degraded,
                "ARM frequency capped now",
            ),
            (
                "occurred since boot",
                |r| r.throttling = Some(Throttling::from_raw(0x50000)),
                Health::Degraded,
                "since boot: under-voltage, throttling occurred (get_throttled 0x50000)",
            ),
            (
                "temp 80",
                |r| r.soc_temperature_celsius = Some(80.0),
                Health::Degraded,
                "SoC temperature 80.0 °C",
            ),
            (
                "temp 79.9",
                |r| r.soc_temperature_celsius = Some(79.9),
                Health::Ok,
                "",
            ),
            (
                "memory 9.9%",
                |r| {
                    r.memory = Some(Memory {
                        total_bytes: 1000,
                        available_bytes: 99,
                    })
                },
                Health::Degraded,
                "memory available 9.9%",
            ),
            (
                "memory 10%",
                |r| {
                    r.memory = Some(Memory {
                        total_bytes: 1000,
                        available_bytes: 100,
                    })
                },
                Health::Ok,
                "",
            ),
            (
                "clock unsynchronized",
                |r| r.clock_synchronized = Some(false),
                Health::Degraded,
                "clock not synchronized",
            ),
            (
                "clock unknown",
                |r| r.clock_synchronized = None,
                Health::Ok,
                "",
            ),
            (
                "collection error",
                |r| r.collection_errors = vec!["memory: /proc/meminfo unreadable".into()],
                Health::Degraded,
                "not collected: memory",
            ),
            (
                "failing beats degraded",
                |r| {
                    r.soc_temperature_celsius = Some(90.0);
                    r.kubelet_healthy = Some(false)
                },
                Health::Failing,
                "SoC temperature 90.0",
            ),
        ];
        for (name, change, want, problem) in cases {
            let mut r = healthy();
            change(&mut r);
            let a = assess(&r);
            assert_eq!(a.health, want, "{name}: {:?}", a.problems);
            if problem.is_empty() {
                assert!(a.problems.is_empty(), "{name}: {:?}", a.problems);
            } else {
                assert!(
                    a.problems.iter().any(|p| p.contains(problem)),
                    "{name}: {:?}",
                    a.problems
                );
            }
        }
    }

    #[test]
    fn pi_with_0x50005_is_failing_with_one_line_per_cause() {
        let mut r = healthy();
        r.throttling = Some(Throttling::from_raw(0x50005));
        apply(&mut r);
        assert_eq!(r.health, Health::Failing);
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(4 << 30), "4.0 GiB");
    }
}
