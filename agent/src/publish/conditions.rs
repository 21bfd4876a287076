//! The agent's judgement as Node conditions: a pure function from a
//! [`NodeReport`] to the conditions it publishes, and the rule that decides
//! whether anything changed enough to write. No I/O; [`super`] does the
//! writing.
//!
//! Names read as problems, the way node-problem-detector's do
//! (`KernelDeadlock`, `ReadonlyFilesystem`): `True` means the problem is
//! there, so `kubectl describe node` lists healthy nodes as all `False`.

use crate::health::human_bytes;
use crate::report::{NodeCondition, NodeReport, UnitState};

/// The conditions the agent owns; it never writes any other type.
pub const PI_UNDER_VOLTAGE: &str = "PiUnderVoltage";
pub const PI_THROTTLED: &str = "PiThrottled";
pub const ROOT_DISK_PRESSURE: &str = "RootDiskPressure";
pub const CLOCK_UNSYNCHRONIZED: &str = "ClockUnsynchronized";
pub const K3S_SERVICE_DOWN: &str = "K3sServiceDown";
/// True when a K3s certificate is inside K3s's renewal window (it ends
/// within 120 days): only a start of K3s renews it.
pub const K3S_CERTIFICATES_EXPIRING: &str = "K3sCertificatesExpiring";
/// True when synced writes on the data dir's filesystem miss etcd's figure
/// (on servers running embedded etcd; see [`crate::collect::fsync`]).
pub const ETCD_DISK_SLOW: &str = "EtcdDiskSlow";
/// Every condition type the agent owns.
pub const ALL: [&str; 7] = [
    PI_UNDER_VOLTAGE,
    PI_THROTTLED,
    ROOT_DISK_PRESSURE,
    CLOCK_UNSYNCHRONIZED,
    K3S_SERVICE_DOWN,
    K3S_CERTIFICATES_EXPIRING,
    ETCD_DISK_SLOW,
];

/// The kubelet's default hard eviction threshold is `nodefs.available<10%`;
/// the agent warns at the same level, before the kubelet starts evicting.
pub const DEFAULT_DISK_PRESSURE_PERCENT: f64 = 90.0;

/// Condition status as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// One judged condition, before it gets its times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub kind: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

fn judged(kind: &'static str, status: Status, reason: &'static str, message: String) -> Judged {
    Judged {
        kind,
        status,
        reason,
        message,
    }
}

/// The conditions for `r`, in a fixed order. The Pi conditions appear only
/// when the node reports firmware throttling state (a Raspberry Pi).
pub fn judge(r: &NodeReport, disk_pressure_percent: f64) -> Vec<Judged> {
    let mut out = Vec::with_capacity(6);
    if let Some(t) = &r.throttling {
        let raw = t.raw;
        out.push(if t.under_voltage_now {
            judged(
                PI_UNDER_VOLTAGE,
                Status::True,
                "UnderVoltageDetected",
                format!("the power supply is under-voltage now (get_throttled {raw:#x})"),
            )
        } else {
            judged(
                PI_UNDER_VOLTAGE,
                Status::False,
                "PowerSupplyOK",
                format!("no under-voltage now (get_throttled {raw:#x})"),
            )
        });
        let now: Vec<&str> = [
            (t.throttled_now, "CPU throttled"),
            (t.freq_capped_now, "ARM frequency capped"),
            (t.soft_temp_limit_now, "soft temperature limit active"),
        ]
        .into_iter()
        .filter_map(|(on, what)| on.then_some(what))
        .collect();
        out.push(if now.is_empty() {
            judged(
                PI_THROTTLED,
                Status::False,
                "NotThrottled",
                format!("running at full speed (get_throttled {raw:#x})"),
            )
        } else {
            judged(
                PI_THROTTLED,
                Status::True,
                "FirmwareThrottling",
                format!("{} (get_throttled {raw:#x})", now.join(", ")),
            )
        });
    }
    out.push(root_disk(r, disk_pressure_percent));
    out.push(clock(r));
    out.push(k3s_service(r));
    out.push(k3s_certificates(r));
    out.extend(etcd_disk(r));
    out
}

/// On servers running embedded etcd only: whether the data dir's disk
/// keeps etcd's figure. With 8 writes, one over 10 ms can be the 1 in 100
/// etcd allows (8% of probes of a disk that meets it); two or more is what
/// a disk that meets it shows in under 0.3% of probes, so that is the rule.
fn etcd_disk(r: &NodeReport) -> Option<Judged> {
    let f = r.data_dir_fsync.as_ref().filter(|f| f.etcd)?;
    let (dir, max, mean) = (&f.probe_dir, f.max_seconds * 1e3, f.mean_seconds * 1e3);
    let figures = format!(
        "{} of {} synced 2300-byte writes in {dir} took over 10 ms (slowest {max:.1} ms, mean {mean:.1} ms{})",
        f.slow_writes,
        f.writes,
        if f.timed_out {
            ", stopped by its 2 s budget"
        } else {
            ""
        }
    );
    if !f.same_filesystem {
        return Some(judged(
            ETCD_DISK_SLOW,
            Status::Unknown,
            "DataDirOnAnotherFilesystem",
            format!(
                "{dir} is not on the filesystem of {} (or K3s keeps its data dir elsewhere): {figures}",
                crate::collect::fsync::DATA_DIR
            ),
        ));
    }
    Some(if f.slow_writes >= 2 || f.timed_out {
        judged(
            ETCD_DISK_SLOW,
            Status::True,
            "SlowFsync",
            format!(
                "{figures}; etcd wants 99% of its WAL fsyncs under 10 ms, else it loses leader elections: move K3s's data dir to an SSD or USB disk, or raise etcd's heartbeat-interval and election-timeout (etcd-arg)"
            ),
        )
    } else {
        judged(ETCD_DISK_SLOW, Status::False, "FsyncFast", figures)
    })
}

fn k3s_certificates(r: &NodeReport) -> Judged {
    use crate::collect::certs::{RENEW_DAYS, in_renewal_window};
    let Some(c) = &r.k3s_certificates else {
        return judged(
            K3S_CERTIFICATES_EXPIRING,
            Status::Unknown,
            "K3sCertificatesNotFound",
            "no K3s certificate found: none readable under /var/lib/rancher/k3s and no note at /run/pictl-agent/k3s-certificates.json (K3s's drop-in writes it after each start)".into(),
        );
    };
    let when = crate::publish::rfc3339::format(u64::try_from(c.not_after).unwrap_or(0));
    let (file, days) = (&c.file, c.days_left);
    if in_renewal_window(c.not_after, r.collected_at) {
        judged(
            K3S_CERTIFICATES_EXPIRING,
            Status::True,
            "InRenewalWindow",
            format!(
                "{file} ends in {days} days ({when}), inside K3s's {RENEW_DAYS}-day renewal window: K3s renews it only when it starts; restart K3s on this node (pictl apply does, one node at a time)"
            ),
        )
    } else {
        judged(
            K3S_CERTIFICATES_EXPIRING,
            Status::False,
            "CertificatesValid",
            format!("the first K3s certificate to end, {file}, ends in {days} days ({when})"),
        )
    }
}

fn root_disk(r: &NodeReport, threshold: f64) -> Judged {
    let Some(fs) = &r.root_fs else {
        return judged(
            ROOT_DISK_PRESSURE,
            Status::Unknown,
            "RootFilesystemUnknown",
            "the root filesystem could not be measured".into(),
        );
    };
    let used = fs.used_percent();
    let message = format!(
        "root filesystem {} is {used:.1}% used ({} available of {}; threshold {threshold}%)",
        fs.mount_point,
        human_bytes(fs.available_bytes),
        human_bytes(fs.total_bytes)
    );
    if used > threshold {
        judged(
            ROOT_DISK_PRESSURE,
            Status::True,
            "RootFilesystemFull",
            message,
        )
    } else {
        judged(
            ROOT_DISK_PRESSURE,
            Status::False,
            "RootFilesystemHasSpace",
            message,
        )
    }
}

fn clock(r: &NodeReport) -> Judged {
    match r.clock_synchronized {
        Some(true) => judged(
            CLOCK_UNSYNCHRONIZED,
            Status::False,
            "ClockSynchronized",
            "systemd reports NTPSynchronized=yes".into(),
        ),
        Some(false) => judged(
            CLOCK_UNSYNCHRONIZED,
            Status::True,
            "NTPNotSynchronized",
            "systemd reports NTPSynchronized=no: certificates and leases may be judged wrongly"
                .into(),
        ),
        None => judged(
            CLOCK_UNSYNCHRONIZED,
            Status::Unknown,
            "ClockStateUnknown",
            "timedatectl did not answer".into(),
        ),
    }
}

fn k3s_service(r: &NodeReport) -> Judged {
    let loaded: Vec<(&String, UnitState)> = r
        .units
        .iter()
        .map(|(n, s)| (n, *s))
        .filter(|(_, s)| s.is_loaded())
        .collect();
    if let Some((name, _)) = loaded.iter().find(|(_, s)| *s == UnitState::Active) {
        return judged(
            K3S_SERVICE_DOWN,
            Status::False,
            "K3sServiceActive",
            format!("{name} is active"),
        );
    }
    if loaded.is_empty() {
        return judged(
            K3S_SERVICE_DOWN,
            Status::Unknown,
            "K3sServiceUnknown",
            "no K3s unit is known to systemd".into(),
        );
    }
    let states: Vec<String> = loaded
        .iter()
        .map(|(n, s)| format!("{n} is {}", s.as_str()))
        .collect();
    judged(
        K3S_SERVICE_DOWN,
        Status::True,
        "K3sServiceNotActive",
        states.join(", "),
    )
}

/// Whether `now` differs from what the Node holds in a way worth a write:
/// a condition's status or reason changed, or one is missing. Messages carry
/// live figures (percent used), so a message alone never causes a write.
pub fn differs(now: &[Judged], held: &[NodeCondition]) -> bool {
    now.iter().any(|j| {
        held.iter()
            .find(|c| c.kind == j.kind)
            .is_none_or(|c| c.status != j.status.as_str() || c.reason != j.reason)
    })
}

/// The conditions to write at `now_rfc3339`: a condition keeps its
/// `lastTransitionTime` from `held` unless its status changed. Also returns
/// the conditions whose status changed (or that are new), for Events.
pub fn stamp(
    now: &[Judged],
    held: &[NodeCondition],
    now_rfc3339: &str,
) -> (Vec<NodeCondition>, Vec<Judged>) {
    let mut out = Vec::with_capacity(now.len());
    let mut transitions = Vec::new();
    for j in now {
        let prev = held.iter().find(|c| c.kind == j.kind);
        let transition = match prev {
            Some(c) if c.status == j.status.as_str() => c.last_transition_time.clone(),
            _ => {
                transitions.push(j.clone());
                now_rfc3339.to_owned()
            }
        };
        out.push(NodeCondition {
            kind: j.kind.to_owned(),
            status: j.status.as_str().to_owned(),
            reason: j.reason.to_owned(),
            message: j.message.clone(),
            last_heartbeat_time: now_rfc3339.to_owned(),
            last_transition_time: transition,
        });
    }
    (out, transitions)
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
