//! Collectors: each file reads one fact about the node. Files are read under a
//! configurable root (default `/`) and commands go through [`Exec`], so tests
//! point the whole set at a fake tree and fake commands. The edge: collectors
//! only gather; judging is [`crate::health`]'s job.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::report::{NodeReport, REPORT_VERSION, UnitState};
use crate::{Error, Result, error_chain};

pub mod certs;
pub mod clock;
pub mod exec;
pub mod fsync;
pub mod hostname;
pub mod kubelet;
pub mod loadavg;
pub mod meminfo;
pub mod model;
pub mod rootfs;
pub mod thermal;
pub mod throttling;
pub mod units;
pub mod uptime;

pub use exec::{Exec, ExecError, SystemExec};

/// The kubelet's default healthz endpoint (K3s keeps the upstream port).
pub const KUBELET_HEALTHZ: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10248));

/// Where the collectors look.
pub struct Sources {
    /// Prefix for every file read (`/proc/...`, `/sys/...`) and the path whose
    /// filesystem is reported as the root filesystem.
    pub root: PathBuf,
    /// The kubelet's healthz listener.
    pub kubelet_healthz: SocketAddr,
    /// Connect + read budget for the kubelet probe.
    pub kubelet_timeout: Duration,
    /// Runs `systemctl`, `timedatectl`, `vcgencmd`.
    pub exec: Box<dyn Exec>,
    /// The data dir's fsync probe and its last figures.
    pub fsync: fsync::Probe,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("root", &self.root)
            .field("kubelet_healthz", &self.kubelet_healthz)
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// The real node: `/`, the kubelet on loopback, real commands.
    pub fn system() -> Self {
        Self {
            root: PathBuf::from("/"),
            kubelet_healthz: KUBELET_HEALTHZ,
            kubelet_timeout: Duration::from_secs(1),
            exec: Box::new(SystemExec::default()),
            fsync: fsync::Probe::new(fsync::INTERVAL),
        }
    }

    /// `rel` (an absolute node path like `/proc/loadavg`) under [`Sources::root`].
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Reads a small text file under the root.
    pub fn read(&self, rel: &str) -> Result<(PathBuf, String)> {
        let path = self.path(rel);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok((path, s)),
            Err(source) => Err(Error::ReadFailed { path, source }),
        }
    }

    /// Like [`Sources::read`], but a missing file is `None` (hardware without it).
    pub fn read_optional(&self, rel: &str) -> Result<Option<(PathBuf, String)>> {
        match self.read(rel) {
            Ok(found) => Ok(Some(found)),
            Err(Error::ReadFailed { source, .. }) if is_absent(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Collects every fact once and derives health. Never fails: what cannot be
/// read is `None` and a line in `collection_errors`.
pub fn collect(src: &Sources) -> NodeReport {
    let mut errors = Vec::new();
    let mut keep = |what: &str, e: Error| errors.push(format!("{what}: {}", error_chain(&e)));

    let hostname = hostname::collect(src).unwrap_or_else(|e| {
        keep("hostname", e);
        String::new()
    });
    let uptime_seconds = uptime::collect(src).map_err(|e| keep("uptime", e)).ok();
    let load = loadavg::collect(src).map_err(|e| keep("load", e)).ok();
    let (memory, swap) = match meminfo::collect(src) {
        Ok((m, s)) => (Some(m), Some(s)),
        Err(e) => {
            keep("memory", e);
            (None, None)
        }
    };
    let root_fs = rootfs::collect(&src.root)
        .map_err(|e| keep("root filesystem", e))
        .ok();
    let soc_temperature_celsius = thermal::collect(src).unwrap_or_else(|e| {
        keep("SoC temperature", e);
        None
    });
    let model = model::collect(src).unwrap_or_else(|e| {
        keep("model", e);
        None
    });
    let throttling = throttling::collect(src).unwrap_or_else(|e| {
        keep("throttling", e);
        None
    });
    let units = units::collect(src.exec.as_ref());
    let no_k3s = !units.is_empty() && units.values().all(|s| *s == UnitState::Absent);
    let kubelet_healthy =
        (!no_k3s).then(|| kubelet::probe(src.kubelet_healthz, src.kubelet_timeout));
    let clock_synchronized = clock::collect(src.exec.as_ref());
    let data_dir_fsync = fsync::collect(src, &units).unwrap_or_else(|e| {
        keep("data dir fsync", e);
        None
    });
    let collected_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let k3s_certificates = certs::collect(src, collected_at).unwrap_or_else(|e| {
        keep("K3s certificates", e);
        None
    });

    let mut report = NodeReport {
        version: REPORT_VERSION,
        hostname,
        arch: crate::report::running_arch().to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        collected_at,
        uptime_seconds,
        load,
        memory,
        swap,
        root_fs,
        soc_temperature_celsius,
        model,
        throttling,
        units,
        kubelet_healthy,
        clock_synchronized,
        k3s_certificates,
        data_dir_fsync,
        collection_errors: errors,
        ..NodeReport::default()
    };
    crate::health::apply(&mut report);
    report
}

/// A parse failure at `path`.
fn parse_failed(path: &Path, what: &'static str) -> Error {
    Error::ParseFailed {
        path: path.to_owned(),
        what,
    }
}
