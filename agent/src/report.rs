//! Versioned health report types, shared by the agent (writer) and the
//! controller (reader). Serde only: no I/O lives here, so a reader depends on
//! nothing but serde.
//!
//! Forward compatibility: unknown fields are ignored and missing ones take
//! their default (`#[serde(default)]` on every struct), so a controller can read
//! a newer agent's report and vice versa. [`REPORT_VERSION`] is bumped only when
//! a field changes meaning or type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The architecture of the running agent in K3s's names (`amd64`, `arm64`,
/// `armhf`), or Rust's name for any other.
pub fn running_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        other => other,
    }
}

/// The report schema version; bumped on any incompatible change.
/// v2: nested load/memory/swap/root_fs, decoded throttling, unit states,
/// clock, and the derived `health` with its `problems`.
pub const REPORT_VERSION: u32 = 2;

/// The systemd units a K3s node runs: a server runs the first, an agent the second.
pub const K3S_UNITS: [&str; 2] = ["k3s.service", "k3s-agent.service"];

/// What one node says about itself at `/v1/report` and from `pictl-agent report`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeReport {
    /// Schema version ([`REPORT_VERSION`] of the writer).
    pub version: u32,
    pub hostname: String,
    /// The architecture this agent runs as, in K3s's names (`amd64`, `arm64`,
    /// `armhf`): its build target, which only runs on a node of that arch.
    /// Empty from agents older than this field.
    pub arch: String,
    /// The agent's crate version.
    pub agent_version: String,
    /// Unix seconds when the report was collected.
    pub collected_at: u64,
    pub uptime_seconds: Option<u64>,
    pub load: Option<Load>,
    pub memory: Option<Memory>,
    pub swap: Option<Swap>,
    pub root_fs: Option<Filesystem>,
    /// SoC temperature (thermal zone 0), degrees Celsius.
    pub soc_temperature_celsius: Option<f64>,
    /// The device-tree model, e.g. "Raspberry Pi 4 Model B Rev 1.4".
    pub model: Option<String>,
    /// Firmware throttling state; absent off a Raspberry Pi.
    pub throttling: Option<Throttling>,
    /// State of each of [`K3S_UNITS`], by unit name.
    pub units: BTreeMap<String, UnitState>,
    /// Whether the kubelet answers `ok` on its healthz port; `None` when no
    /// K3s unit is installed, so there is no kubelet to ask.
    pub kubelet_healthy: Option<bool>,
    /// NTP synchronization as systemd sees it; `None` when unknown.
    pub clock_synchronized: Option<bool>,
    /// What could not be collected, one line each (counted as problems).
    pub collection_errors: Vec<String>,
    /// Derived from the fields above by the agent.
    pub health: Health,
    /// Why `health` is not `ok`, one human-readable line each, with the value.
    pub problems: Vec<String>,
    /// Publishing to the Node's conditions; `None` when not configured (or
    /// from `pictl-agent report`, which does not publish).
    pub publishing: Option<Publishing>,
    /// The K3s leaf certificate that ends first; `None` when the node has
    /// none (K3s not installed), and left out of the JSON then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s_certificates: Option<CertificateExpiry>,
    /// The pod-network metrics listener (`metrics_listen` in publish.conf);
    /// `None`, and left out of the JSON, when not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listener: Option<MetricsListener>,
    /// Synced writes on the filesystem of K3s's data dir (servers only);
    /// `None`, and left out of the JSON, when not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir_fsync: Option<DataDirFsync>,
}

/// One probe of synced 2300-byte writes (see `collect::fsync`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataDirFsync {
    /// The directory written in.
    pub probe_dir: String,
    /// Whether that directory is on the filesystem of K3s's data dir.
    pub same_filesystem: bool,
    /// Whether embedded etcd runs here (something listens on etcd's peer
    /// port 2380; K3s on SQLite does not): only then is the disk judged.
    pub etcd: bool,
    /// Writes made, each followed by `fdatasync`.
    pub writes: u32,
    /// Of those, the writes that took longer than etcd's 10 ms.
    pub slow_writes: u32,
    pub max_seconds: f64,
    pub mean_seconds: f64,
    /// The probe's time budget ran out before all its writes were made.
    pub timed_out: bool,
}

/// When the node's first K3s certificate ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateExpiry {
    /// The certificate's file on the node, e.g.
    /// `/var/lib/rancher/k3s/server/tls/client-admin.crt`.
    pub file: String,
    /// Its notAfter, unix seconds.
    pub not_after: i64,
    /// Whole days left when the report was collected (negative once expired).
    pub days_left: i64,
}

/// The second, metrics-only listener on the node's pod-network address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsListener {
    /// `IPv4:PORT` it binds (the node's `cni0` address).
    pub address: String,
    pub state: ListenerState,
    /// While `waiting`: why the last bind failed, one line.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerState {
    /// The address cannot be bound yet (usually: `cni0` does not exist until
    /// the first Pod lands on the node); retried every few seconds.
    #[default]
    Waiting,
    /// Bound and answering its peers.
    Listening,
}

/// How publishing the node's conditions to the Kubernetes API goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Publishing {
    /// The API server's URL.
    pub server: String,
    /// The Node the agent publishes to.
    pub node: String,
    pub state: PublishState,
    /// Why the last attempt failed (`state` is not `ok`), one line.
    pub error: Option<String>,
    /// Unix seconds of the last write (a PATCH of `nodes/NAME/status`).
    pub last_write_at: Option<u64>,
    /// Writes (status PATCHes and Events) since the agent started.
    pub writes: u64,
    /// The conditions as last published.
    pub conditions: Vec<NodeCondition>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishState {
    /// Nothing attempted yet.
    #[default]
    Pending,
    /// The Node holds the conditions below.
    Ok,
    /// The API could not be reached (connection, TLS or timeout).
    Unreachable,
    /// The API answered with an error (401, 403, 404, ...).
    Refused,
    /// The token or CA file could not be read.
    Misconfigured,
}

impl PublishState {
    pub const ALL: [PublishState; 5] = [
        PublishState::Pending,
        PublishState::Ok,
        PublishState::Unreachable,
        PublishState::Refused,
        PublishState::Misconfigured,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PublishState::Pending => "pending",
            PublishState::Ok => "ok",
            PublishState::Unreachable => "unreachable",
            PublishState::Refused => "refused",
            PublishState::Misconfigured => "misconfigured",
        }
    }
}

/// One Node condition as the agent publishes it (core/v1 NodeCondition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339, when the agent last wrote this condition.
    pub last_heartbeat_time: String,
    /// RFC 3339, when `status` last changed.
    pub last_transition_time: String,
}

/// Load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Load {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    pub total_bytes: u64,
    /// `MemAvailable`: what can be allocated without swapping.
    pub available_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Swap {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// The filesystem holding `/` (on a Pi, usually the SD card or USB disk).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filesystem {
    pub mount_point: String,
    pub total_bytes: u64,
    /// Available to unprivileged users (excludes reserved blocks).
    pub available_bytes: u64,
}

impl Filesystem {
    /// Percent of the filesystem not available to users (reserved blocks count as used).
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        let used = self.total_bytes.saturating_sub(self.available_bytes);
        used as f64 * 100.0 / self.total_bytes as f64
    }
}

/// The firmware's `get_throttled` word, raw and decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throttling {
    pub raw: u32,
    pub under_voltage_now: bool,
    pub freq_capped_now: bool,
    pub throttled_now: bool,
    pub soft_temp_limit_now: bool,
    pub under_voltage_occurred: bool,
    pub freq_capped_occurred: bool,
    pub throttled_occurred: bool,
    pub soft_temp_limit_occurred: bool,
}

impl Throttling {
    /// Decodes the bit layout documented for `vcgencmd get_throttled`:
    /// bits 0–3 are the current state, bits 16–19 "has occurred since boot".
    pub fn from_raw(raw: u32) -> Self {
        let bit = |n: u32| raw & (1 << n) != 0;
        Self {
            raw,
            under_voltage_now: bit(0),
            freq_capped_now: bit(1),
            throttled_now: bit(2),
            soft_temp_limit_now: bit(3),
            under_voltage_occurred: bit(16),
            freq_capped_occurred: bit(17),
            throttled_occurred: bit(18),
            soft_temp_limit_occurred: bit(19),
        }
    }

    /// Each decoded flag with its name, in bit order (for metrics and problems).
    pub fn flags(&self) -> [(&'static str, bool); 8] {
        [
            ("under_voltage_now", self.under_voltage_now),
            ("freq_capped_now", self.freq_capped_now),
            ("throttled_now", self.throttled_now),
            ("soft_temp_limit_now", self.soft_temp_limit_now),
            ("under_voltage_occurred", self.under_voltage_occurred),
            ("freq_capped_occurred", self.freq_capped_occurred),
            ("throttled_occurred", self.throttled_occurred),
            ("soft_temp_limit_occurred", self.soft_temp_limit_occurred),
        ]
    }
}

/// A systemd unit's state, as `systemctl` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    Active,
    Activating,
    Deactivating,
    Reloading,
    Inactive,
    Failed,
    /// The unit is not installed (systemd says `not-found`).
    Absent,
    /// systemd could not be asked, or said something this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl UnitState {
    pub const ALL: [UnitState; 8] = [
        UnitState::Active,
        UnitState::Activating,
        UnitState::Deactivating,
        UnitState::Reloading,
        UnitState::Inactive,
        UnitState::Failed,
        UnitState::Absent,
        UnitState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Active => "active",
            UnitState::Activating => "activating",
            UnitState::Deactivating => "deactivating",
            UnitState::Reloading => "reloading",
            UnitState::Inactive => "inactive",
            UnitState::Failed => "failed",
            UnitState::Absent => "absent",
            UnitState::Unknown => "unknown",
        }
    }

    /// Whether the unit is installed (known to systemd), whatever its state.
    pub fn is_loaded(self) -> bool {
        !matches!(self, UnitState::Absent | UnitState::Unknown)
    }
}

/// The node's overall health, worst first when compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Ok,
    Degraded,
    Failing,
}

impl Health {
    pub const ALL: [Health; 3] = [Health::Ok, Health::Degraded, Health::Failing];

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Failing => "failing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeReport {
        NodeReport {
            version: REPORT_VERSION,
            hostname: "node1".into(),
            arch: "arm64".into(),
            agent_version: "0.1.0".into(),
            collected_at: 1_700_000_000,
            uptime_seconds: Some(3600),
            load: Some(Load {
                one: 0.5,
                five: 0.25,
                fifteen: 0.125,
            }),
            memory: Some(Memory {
                total_bytes: 4 << 30,
                available_bytes: 1 << 30,
            }),
            swap: Some(Swap {
                total_bytes: 0,
                free_bytes: 0,
            }),
            root_fs: Some(Filesystem {
                mount_point: "/".into(),
                total_bytes: 32 << 30,
                available_bytes: 20 << 30,
            }),
            soc_temperature_celsius: Some(51.2),
            model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
            throttling: Some(Throttling::from_raw(0x50005)),
            units: BTreeMap::from([
                ("k3s.service".into(), UnitState::Active),
                ("k3s-agent.service".into(), UnitState::Absent),
            ]),
            kubelet_healthy: Some(true),
            clock_synchronized: Some(false),
            k3s_certificates: Some(CertificateExpiry {
                file: "/var/lib/rancher/k3s/agent/client-kubelet.crt".into(),
                not_after: 1_708_640_000,
                days_left: 100,
            }),
            collection_errors: vec![],
            health: Health::Failing,
            problems: vec!["under-voltage now (get_throttled 0x50005)".into()],
            publishing: None,
            metrics_listener: Some(MetricsListener {
                address: "10.42.1.1:9750".into(),
                state: ListenerState::Waiting,
                error: Some("Cannot assign requested address (os error 99)".into()),
            }),
            data_dir_fsync: Some(DataDirFsync {
                probe_dir: "/var/lib/pictl-agent".into(),
                same_filesystem: true,
                etcd: true,
                writes: 8,
                slow_writes: 1,
                max_seconds: 0.0125,
                mean_seconds: 0.003,
                timed_out: false,
            }),
        }
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = sample();
        let json = serde_json::to_string(&r).expect("serialize");
        let back: NodeReport = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, r);
        assert!(json.contains("\"soc_temperature_celsius\":51.2"), "{json}");
        assert!(json.contains("\"k3s.service\":\"active\""), "{json}");
        assert!(json.contains("\"health\":\"failing\""), "{json}");
        assert!(json.contains("\"slow_writes\":1"), "{json}");
        assert!(
            json.contains(r#""metrics_listener":{"address":"10.42.1.1:9750","state":"waiting","#),
            "{json}"
        );
    }

    #[test]
    fn an_unconfigured_metrics_listener_is_left_out_and_old_reports_read_without_it() {
        let r = NodeReport {
            metrics_listener: None,
            ..sample()
        };
        let json = serde_json::to_string(&r).expect("serialize");
        assert!(!json.contains("metrics_listener"), "{json}");
        let back: NodeReport = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.metrics_listener, None);
        let listening: MetricsListener =
            serde_json::from_str(r#"{"address":"10.42.1.1:9750","state":"listening"}"#)
                .expect("reads");
        assert_eq!(
            (listening.state, listening.error),
            (ListenerState::Listening, None)
        );
    }

    #[test]
    fn throttling_decodes_0x50005_as_under_voltage_and_throttling_now_and_since_boot() {
        let t = Throttling::from_raw(0x50005);
        assert!(t.under_voltage_now && t.throttled_now);
        assert!(!t.freq_capped_now && !t.soft_temp_limit_now);
        assert!(t.under_voltage_occurred && t.throttled_occurred);
        assert!(!t.freq_capped_occurred && !t.soft_temp_limit_occurred);
        assert_eq!(t.flags().iter().filter(|(_, on)| *on).count(), 4);
    }

    #[test]
    fn newer_report_with_unknown_fields_and_states_still_reads() {
        let json = r#"{"version":3,"hostname":"n","future_field":{"x":1},
            "units":{"k3s.service":"hibernating"},"health":"degraded"}"#;
        let r: NodeReport = serde_json::from_str(json).expect("forward compatible");
        assert_eq!(r.version, 3);
        assert_eq!(r.units["k3s.service"], UnitState::Unknown);
        assert_eq!(r.health, Health::Degraded);
        assert_eq!(r.memory, None);
    }

    #[test]
    fn v1_report_reads_with_defaults_for_the_new_shape() {
        let json = r#"{"version":1,"hostname":"old","k3s_unit_active":true,
            "kubelet_healthy":false,"mem_total_bytes":1,"mem_available_bytes":1,
            "load_1m":0.5,"soc_temp_celsius":40.0,"throttled":null}"#;
        let r: NodeReport = serde_json::from_str(json).expect("old report reads");
        assert_eq!(r.version, 1);
        assert_eq!(r.kubelet_healthy, Some(false));
        assert!(r.units.is_empty());
    }

    #[test]
    fn used_percent_counts_reserved_blocks_as_used() {
        let fs = Filesystem {
            mount_point: "/".into(),
            total_bytes: 100,
            available_bytes: 4,
        };
        assert!((fs.used_percent() - 96.0).abs() < 1e-9);
        assert_eq!(Filesystem::default().used_percent(), 0.0);
    }
}
