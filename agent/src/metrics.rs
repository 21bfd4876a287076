//! Prometheus text exposition (format 0.0.4) of a [`NodeReport`]: pure
//! rendering, every name prefixed `pictl_node_`. A fact the report lacks
//! (`None`) is left out, HELP/TYPE included, rather than exported as 0.

use std::fmt::Write;

use crate::report::{
    CertificateExpiry, DataDirFsync, Health, ListenerState, MetricsListener, NodeReport,
    PublishState, Publishing, UnitState,
};

/// The Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn render(r: &NodeReport) -> String {
    let mut m = Metrics {
        out: String::with_capacity(4096),
    };

    m.family("info", "Agent and board identity; the value is always 1.");
    let model = r.model.as_deref().unwrap_or("");
    let version = r.version.to_string();
    m.sample(
        "info",
        &[
            ("hostname", &r.hostname),
            ("arch", &r.arch),
            ("agent_version", &r.agent_version),
            ("report_version", &version),
            ("model", model),
        ],
        1.0,
    );
    m.gauge(
        "collected_timestamp_seconds",
        "Unix time the report was collected.",
        r.collected_at as f64,
    );
    if let Some(up) = r.uptime_seconds {
        m.gauge("uptime_seconds", "Seconds since boot.", up as f64);
    }
    if let Some(l) = r.load {
        m.gauge("load1", "Load average over 1 minute.", l.one);
        m.gauge("load5", "Load average over 5 minutes.", l.five);
        m.gauge("load15", "Load average over 15 minutes.", l.fifteen);
    }
    resources(&mut m, r);
    units(&mut m, r);
    if let Some(ok) = r.kubelet_healthy {
        m.gauge(
            "kubelet_healthy",
            "1 when the kubelet healthz answers ok.",
            bool01(ok),
        );
    }
    if let Some(ok) = r.clock_synchronized {
        m.gauge(
            "clock_synchronized",
            "1 when NTP synchronized the clock.",
            bool01(ok),
        );
    }
    if let Some(c) = &r.k3s_certificates {
        certificates(&mut m, c);
    }
    if let Some(f) = &r.data_dir_fsync {
        data_dir_fsync(&mut m, f);
    }
    m.family("health", "Derived node health: 1 for the current state.");
    for h in Health::ALL {
        m.sample("health", &[("state", h.as_str())], bool01(r.health == h));
    }
    m.gauge(
        "problems",
        "Number of problems behind the health state.",
        r.problems.len() as f64,
    );
    m.gauge(
        "collection_errors",
        "Number of facts that could not be collected.",
        r.collection_errors.len() as f64,
    );
    if let Some(p) = &r.publishing {
        publishing(&mut m, p);
    }
    if let Some(l) = &r.metrics_listener {
        pod_listener(&mut m, l);
    }
    m.out
}

/// Memory, swap, the root filesystem, temperature and the Pi's throttling.
fn resources(m: &mut Metrics, r: &NodeReport) {
    if let Some(mem) = r.memory {
        m.gauge(
            "memory_total_bytes",
            "Physical memory (MemTotal).",
            mem.total_bytes as f64,
        );
        m.gauge(
            "memory_available_bytes",
            "Memory available without swapping (MemAvailable).",
            mem.available_bytes as f64,
        );
    }
    if let Some(s) = r.swap {
        m.gauge(
            "swap_total_bytes",
            "Swap space (SwapTotal).",
            s.total_bytes as f64,
        );
        m.gauge(
            "swap_free_bytes",
            "Unused swap space (SwapFree).",
            s.free_bytes as f64,
        );
    }
    if let Some(fs) = &r.root_fs {
        let labels = [("mountpoint", fs.mount_point.as_str())];
        m.family("rootfs_total_bytes", "Size of the root filesystem.");
        m.sample("rootfs_total_bytes", &labels, fs.total_bytes as f64);
        m.family(
            "rootfs_available_bytes",
            "Root filesystem space available to users.",
        );
        m.sample("rootfs_available_bytes", &labels, fs.available_bytes as f64);
    }
    if let Some(t) = r.soc_temperature_celsius {
        m.gauge(
            "soc_temperature_celsius",
            "SoC temperature (thermal zone 0).",
            t,
        );
    }
    if let Some(t) = &r.throttling {
        m.gauge(
            "get_throttled",
            "Raw firmware get_throttled word.",
            f64::from(t.raw),
        );
        m.family("throttled", "Decoded get_throttled bits: 1 when set.");
        for (bit, on) in t.flags() {
            m.sample("throttled", &[("bit", bit)], bool01(on));
        }
    }
}

/// The systemd units the agent watches: active, and each one's state.
fn units(m: &mut Metrics, r: &NodeReport) {
    if !r.units.is_empty() {
        m.family("unit_active", "1 when the systemd unit is active.");
        for (unit, state) in &r.units {
            m.sample(
                "unit_active",
                &[("unit", unit)],
                bool01(*state == UnitState::Active),
            );
        }
        m.family(
            "unit_state",
            "State of the systemd unit: 1 for the current state.",
        );
        for (unit, state) in &r.units {
            for s in UnitState::ALL {
                m.sample(
                    "unit_state",
                    &[("unit", unit), ("state", s.as_str())],
                    bool01(*state == s),
                );
            }
        }
    }
}

/// The pod-network metrics listener: 0 while it waits for its address, so
/// an alert can tell "not yet bound" from "not configured" (no sample).
fn pod_listener(m: &mut Metrics, l: &MetricsListener) {
    m.family(
        "pod_metrics_listening",
        "Whether the pod-network metrics listener (metrics_listen) is bound: 1 listening, 0 waiting for its address.",
    );
    m.sample(
        "pod_metrics_listening",
        &[("address", &l.address)],
        bool01(l.state == ListenerState::Listening),
    );
}

/// Publishing to the API and the Node conditions as last published, in the
/// shape of kube-state-metrics' `kube_node_status_condition`.
fn publishing(m: &mut Metrics, p: &Publishing) {
    m.family(
        "publish_state",
        "Publishing Node conditions to the API: 1 for the current state.",
    );
    for s in PublishState::ALL {
        m.sample(
            "publish_state",
            &[("state", s.as_str())],
            bool01(p.state == s),
        );
    }
    if p.conditions.is_empty() {
        return;
    }
    m.family(
        "condition",
        "The agent's Node conditions as last published: 1 for each condition's status.",
    );
    for c in &p.conditions {
        for status in ["true", "false", "unknown"] {
            m.sample(
                "condition",
                &[("condition", &c.kind), ("status", status)],
                bool01(c.status.eq_ignore_ascii_case(status)),
            );
        }
    }
}

struct Metrics {
    out: String,
}

impl Metrics {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP pictl_node_{name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE pictl_node_{name} gauge");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "pictl_node_{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

fn bool01(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Go-style float text: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// When the node's first K3s leaf certificate ends.
fn certificates(m: &mut Metrics, c: &CertificateExpiry) {
    m.gauge(
        "k3s_certificate_expiry_timestamp_seconds",
        "Unix time the first K3s leaf certificate to end ends.",
        c.not_after as f64,
    );
    m.gauge(
        "k3s_certificate_days_left",
        "Whole days until the first K3s leaf certificate ends (K3s renews it at a start within 120 days).",
        c.days_left as f64,
    );
}

/// The data dir's fsync probe (servers only).
fn data_dir_fsync(m: &mut Metrics, f: &DataDirFsync) {
    m.family(
        "datadir_fsync_seconds",
        "Seconds a synced 2300-byte write took in the last probe of the K3s data dir's filesystem (etcd wants its WAL fsyncs' 99th percentile under 0.01).",
    );
    m.sample("datadir_fsync_seconds", &[("stat", "max")], f.max_seconds);
    m.sample("datadir_fsync_seconds", &[("stat", "mean")], f.mean_seconds);
    m.gauge(
        "datadir_fsync_slow_writes",
        "Writes of the last probe that took over 10 ms.",
        f64::from(f.slow_writes),
    );
    m.gauge(
        "datadir_fsync_same_filesystem",
        "1 when the probe wrote on the filesystem of K3s's data dir.",
        bool01(f.same_filesystem),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let r = NodeReport {
            model: Some("Pi \"4\"\\\nB".into()),
            ..NodeReport::default()
        };
        let text = render(&r);
        assert!(text.contains(r#"model="Pi \"4\"\\\nB""#), "{text}");
    }

    #[test]
    fn k3s_certificate_end_is_exported_only_when_known() {
        let r = NodeReport {
            k3s_certificates: Some(crate::report::CertificateExpiry {
                file: "/var/lib/rancher/k3s/agent/client-kubelet.crt".into(),
                not_after: 1_708_640_090,
                days_left: 100,
            }),
            ..NodeReport::default()
        };
        let text = render(&r);
        assert!(
            text.contains("\npictl_node_k3s_certificate_days_left 100\n")
                && text
                    .contains("\npictl_node_k3s_certificate_expiry_timestamp_seconds 1708640090\n"),
            "{text}"
        );
        assert!(!render(&NodeReport::default()).contains("k3s_certificate"));
    }

    #[test]
    fn numbers_render_like_prometheus_expects() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn published_conditions_are_one_per_status_like_kube_state_metrics() {
        let r = NodeReport {
            publishing: Some(Publishing {
                state: PublishState::Ok,
                conditions: vec![crate::report::NodeCondition {
                    kind: "RootDiskPressure".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Publishing::default()
            }),
            ..NodeReport::default()
        };
        let text = render(&r);
        for (line, want) in [
            ("pictl_node_publish_state{state=\"ok\"}", 1),
            ("pictl_node_publish_state{state=\"unreachable\"}", 0),
            (
                "pictl_node_condition{condition=\"RootDiskPressure\",status=\"true\"}",
                1,
            ),
            (
                "pictl_node_condition{condition=\"RootDiskPressure\",status=\"false\"}",
                0,
            ),
        ] {
            assert!(text.contains(&format!("{line} {want}\n")), "{line}: {text}");
        }
        assert!(!render(&NodeReport::default()).contains("publish_state"));
    }

    #[test]
    fn the_pod_metrics_listener_is_1_when_listening_0_while_waiting_absent_unconfigured() {
        let with = |state| NodeReport {
            metrics_listener: Some(MetricsListener {
                address: "10.42.1.1:9750".into(),
                state,
                error: None,
            }),
            ..NodeReport::default()
        };
        let line = "pictl_node_pod_metrics_listening{address=\"10.42.1.1:9750\"}";
        let text = render(&with(ListenerState::Listening));
        assert!(text.contains(&format!("{line} 1\n")), "{text}");
        assert!(text.contains("# TYPE pictl_node_pod_metrics_listening gauge\n"));
        let text = render(&with(ListenerState::Waiting));
        assert!(text.contains(&format!("{line} 0\n")), "{text}");
        assert!(!render(&NodeReport::default()).contains("pod_metrics"));
    }

    #[test]
    fn missing_facts_are_left_out_not_zero() {
        let text = render(&NodeReport::default());
        assert!(!text.contains("soc_temperature"), "{text}");
        assert!(!text.contains("kubelet_healthy"), "{text}");
        assert!(
            text.contains("pictl_node_health{state=\"ok\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_data_dirs_fsync_is_exported_only_when_probed() {
        let r = NodeReport {
            data_dir_fsync: Some(DataDirFsync {
                probe_dir: "/var/lib/pictl-agent".into(),
                same_filesystem: true,
                etcd: false,
                writes: 8,
                slow_writes: 3,
                max_seconds: 0.045,
                mean_seconds: 0.0125,
                timed_out: false,
            }),
            ..NodeReport::default()
        };
        let text = render(&r);
        for line in [
            "# TYPE pictl_node_datadir_fsync_seconds gauge\n",
            "pictl_node_datadir_fsync_seconds{stat=\"max\"} 0.045\n",
            "pictl_node_datadir_fsync_seconds{stat=\"mean\"} 0.0125\n",
            "pictl_node_datadir_fsync_slow_writes 3\n",
            "pictl_node_datadir_fsync_same_filesystem 1\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert!(!render(&NodeReport::default()).contains("datadir_fsync"));
    }
}
