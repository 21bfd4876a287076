//! How long a small synced write takes on the filesystem of K3s's data dir:
//! what embedded etcd waits on for every write to its WAL. A few 2300-byte
//! writes (an etcd WAL entry's size, as in fio's etcd recipe), each followed
//! by `fdatasync` (`File::sync_data`), bounded in count and time, at most
//! once per [`INTERVAL`], and only on servers (K3s's `k3s.service`).
//!
//! K3s's data dir is root's and the daemon is not: it writes instead in its
//! own state directory ([`PROBE_DIR`], systemd's `StateDirectory=`), and says
//! whether that is on the data dir's filesystem (the same `st_dev` as
//! [`DATA_DIR`]). When it is not, or K3s keeps its data dir elsewhere
//! (`data-dir` on an SSD: nothing at the default path), the figure is reported as
//! another filesystem's and `EtcdDiskSlow` is `Unknown`. Whether embedded
//! etcd runs here at all (only then is the disk judged) is read from the
//! kernel's socket table: a listener on etcd's peer port.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Sources;
use crate::report::DataDirFsync;
use crate::{Error, Result};

/// The daemon's state directory (`StateDirectory=pictl-agent`).
pub const PROBE_DIR: &str = "/var/lib/pictl-agent";
/// K3s's default data dir (`pkg/cli/cmds` `DataDirFlag`, as root).
pub const DATA_DIR: &str = "/var/lib/rancher/k3s";
/// Writes per probe.
pub const WRITES: u32 = 8;
/// Bytes per write: an etcd WAL entry, as fio's etcd recipe writes them.
pub const WRITE_BYTES: usize = 2300;
/// The probe stops after this much time, however many writes it made.
pub const BUDGET: Duration = Duration::from_secs(2);
/// At most one probe per this long (an SD card's wear and the daemon's
/// time both stay small: 8 × 2.3 KB every 5 minutes).
pub const INTERVAL: Duration = Duration::from_secs(300);
/// etcd's figure: the 99th percentile of its WAL fsyncs under 10 ms.
pub const ETCD_WAL_FSYNC_P99: Duration = Duration::from_millis(10);

/// The last probe, kept for [`INTERVAL`].
#[derive(Debug)]
pub struct Probe {
    interval: Duration,
    last: Mutex<Option<(Instant, DataDirFsync)>>,
}

impl Probe {
    /// A probe that measures again once `interval` has passed.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
        }
    }

    /// The last measurement while it is fresh, else a new one; `None`
    /// when the probe directory does not exist (an agent installed without
    /// its state directory).
    pub fn sample(&self, src: &Sources) -> Result<Option<DataDirFsync>> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, m)) = last.as_ref()
            && at.elapsed() < self.interval
        {
            return Ok(Some(m.clone()));
        }
        let dir = src.path(PROBE_DIR);
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut m = measure(&dir, WRITES, BUDGET)?;
        m.probe_dir = PROBE_DIR.to_owned();
        m.same_filesystem = same_filesystem(&dir, &src.path(DATA_DIR));
        *last = Some((Instant::now(), m.clone()));
        Ok(Some(m))
    }
}

/// The probe's figures on a server (`k3s.service` loaded: only a server's
/// disk carries etcd; agents run `k3s-agent`), else `None`.
pub fn collect(
    src: &Sources,
    units: &std::collections::BTreeMap<String, crate::report::UnitState>,
) -> Result<Option<DataDirFsync>> {
    let server = units.get("k3s.service").is_some_and(|s| s.is_loaded());
    if !server {
        return Ok(None);
    }
    let Some(mut m) = src.fsync.sample(src)? else {
        return Ok(None);
    };
    m.etcd = etcd_listening(src)?;
    Ok(Some(m))
}

/// etcd's peer port, which K3s's embedded etcd listens on (kine's SQLite
/// listens on a unix socket).
pub const ETCD_PEER_PORT: u16 = 2380;

/// Whether a socket listens on [`ETCD_PEER_PORT`] in `/proc/net/tcp` or
/// `tcp6` (the kernel's table: `local_address` as `HEXADDR:HEXPORT`, state
/// `0A` is LISTEN); readable by any user, no process list needed.
pub fn etcd_listening(src: &Sources) -> Result<bool> {
    let port = format!(":{ETCD_PEER_PORT:04X}");
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Some((_, text)) = src.read_optional(table)? else {
            continue;
        };
        let listening = text.lines().skip(1).any(|l| {
            let mut f = l.split_whitespace().skip(1);
            let local = f.next().unwrap_or_default();
            let state = f.nth(1).unwrap_or_default();
            local.ends_with(&port) && state == "0A"
        });
        if listening {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Up to `writes` synced writes in a file in `dir`, stopping once `budget`
/// is spent; the file is removed.
pub fn measure(dir: &Path, writes: u32, budget: Duration) -> Result<DataDirFsync> {
    let path = dir.join(".fsync-probe");
    let failed = |source| Error::WriteFailed {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(failed)?;
    let block = [0u8; WRITE_BYTES];
    let started = Instant::now();
    let mut times = Vec::with_capacity(writes as usize);
    let mut result = Ok(());
    while times.len() < writes as usize && started.elapsed() < budget {
        let t = Instant::now();
        result = file.write_all(&block).and_then(|()| file.sync_data());
        if result.is_err() {
            break;
        }
        times.push(t.elapsed());
    }
    drop(file);
    let removed = std::fs::remove_file(&path);
    result.and(removed).map_err(failed)?;
    Ok(summarize(&times, writes))
}

/// The figures of one probe's write times (`asked` writes were asked for).
pub fn summarize(times: &[Duration], asked: u32) -> DataDirFsync {
    let n = u32::try_from(times.len()).unwrap_or(u32::MAX);
    let total: Duration = times.iter().sum();
    DataDirFsync {
        writes: n,
        slow_writes: u32::try_from(times.iter().filter(|t| **t > ETCD_WAL_FSYNC_P99).count())
            .unwrap_or(u32::MAX),
        max_seconds: times
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        mean_seconds: if n == 0 {
            0.0
        } else {
            (total / n).as_secs_f64()
        },
        timed_out: n < asked,
        ..DataDirFsync::default()
    }
}

/// Whether `probe` is on the filesystem of `data_dir`. A data dir that
/// does not exist at its default path on a server is elsewhere (`data-dir`
/// set): the probe then measured another disk, whatever its parents say.
fn same_filesystem(probe: &Path, data_dir: &Path) -> bool {
    match (std::fs::metadata(probe), std::fs::metadata(data_dir)) {
        (Ok(p), Ok(d)) => p.dev() == d.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_makes_its_writes_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = measure(dir.path(), 3, Duration::from_secs(3600)).expect("measured");
        assert_eq!(m.writes, 3);
        assert!(!m.timed_out);
        assert!(
            m.max_seconds >= m.mean_seconds && m.mean_seconds > 0.0,
            "{m:?}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_spent_budget_stops_the_probe_and_says_so() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = measure(dir.path(), 3, Duration::ZERO).expect("measured");
        assert_eq!((m.writes, m.timed_out), (0, true));
    }

    #[test]
    fn writes_over_etcds_figure_are_counted() {
        let ms = Duration::from_millis;
        let m = summarize(&[ms(2), ms(30), ms(4), ms(11)], 4);
        assert_eq!((m.writes, m.slow_writes, m.timed_out), (4, 2, false));
        assert!((m.max_seconds - 0.030).abs() < 1e-9, "{m:?}");
        assert!((m.mean_seconds - 0.01175).abs() < 1e-9, "{m:?}");
        assert_eq!(summarize(&[], 8).mean_seconds, 0.0);
    }

    #[test]
    fn the_filesystem_is_compared_with_the_data_dirs_own() {
        let dir = tempfile::tempdir().expect("tmp");
        let probe = dir.path().join("state");
        std::fs::create_dir(&probe).expect("mkdir");
        let data = dir.path().join("rancher/k3s");
        // No data dir at the default path: K3s keeps it elsewhere.
        assert!(!same_filesystem(&probe, &data));
        std::fs::create_dir_all(&data).expect("mkdir");
        assert!(same_filesystem(&probe, &data));
        // /proc is another filesystem.
        assert!(!same_filesystem(&probe, Path::new("/proc/self")));
        assert!(!same_filesystem(&dir.path().join("absent"), dir.path()));
    }

    /// Sources under an empty temporary root (kept alive by the caller).
    fn scratch() -> (tempfile::TempDir, Sources) {
        let root = tempfile::tempdir().expect("tmp");
        let src = Sources {
            root: root.path().to_owned(),
            ..Sources::system()
        };
        (root, src)
    }

    #[test]
    fn etcd_is_what_listens_on_its_peer_port() {
        let (_root, src) = scratch();
        std::fs::create_dir_all(src.path("/proc/net")).expect("mkdir");
        let head = "  sl  local_address rem_address   st tx_queue rx_queue\n";
        let table = |rows: &str| format!("{head}{rows}");
        // 6443 listening, and a connection to a remote 2380 (state 01).
        let other = "   0: 00000000:192B 00000000:0000 0A 00000000:00000000\n   1: 0A000001:9C40 0A000002:094C 01 00000000:00000000\n";
        std::fs::write(src.path("/proc/net/tcp"), table(other)).expect("tcp");
        assert!(!etcd_listening(&src).expect("read"));
        let etcd6 = "   0: 00000000000000000000000001000000:094C 00000000000000000000000000000000:0000 0A 00000000:00000000\n";
        std::fs::write(src.path("/proc/net/tcp6"), table(etcd6)).expect("tcp6");
        assert!(etcd_listening(&src).expect("read"));
    }

    #[test]
    fn a_fresh_measurement_is_reused_and_a_missing_directory_is_none() {
        let (_root, src) = scratch();
        let probe = Probe::new(Duration::from_secs(3600));
        assert_eq!(probe.sample(&src).expect("sample"), None);
        std::fs::create_dir_all(src.path(PROBE_DIR)).expect("mkdir");
        std::fs::create_dir_all(src.path(DATA_DIR)).expect("mkdir");
        let first = probe.sample(&src).expect("sample").expect("measured");
        assert_eq!(
            (first.writes, first.probe_dir.as_str()),
            (WRITES, PROBE_DIR)
        );
        assert!(first.same_filesystem, "{first:?}");
        // Within the interval the same figures come back, not a new probe.
        std::fs::remove_dir(src.path(PROBE_DIR)).expect("rmdir");
        assert_eq!(probe.sample(&src).expect("sample"), Some(first));
    }
}
