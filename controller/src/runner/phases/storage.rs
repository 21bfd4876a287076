//! The storage guard: whether a server's data dir can carry embedded etcd.
//! etcd waits on a disk sync for every write to its WAL and wants those
//! under 10 ms at the 99th percentile; SD cards and slow USB sticks stall
//! far longer, leader elections are lost and K3s restarts (k3s-io/k3s#1850,
//! #2938, #6654). Pure: the facts bring the device and the probe, the
//! facts phase shows the warning on every plan and apply.

use crate::facts::storage::ETCD_WAL_FSYNC_P99_MS;
use crate::facts::{DiskKind, Storage};

/// What to do about it, said once for both cases.
const REMEDY: &str = "boot this server from an SSD or USB disk, or set data-dir to one, \
                      else raise etcd's heartbeat-interval and election-timeout \
                      (etcd-arg in server_config)";

/// The warning for a server running embedded etcd on `s`, if it needs one:
/// an SD card, or a disk whose synced writes miss etcd's figure.
pub(super) fn etcd_storage_warning(s: &Storage) -> Option<String> {
    let dev = &s.device;
    let measured = s.fsync.map(|p| {
        let at_least = if p.timed_out { "at least " } else { "" };
        format!(
            "a synced 2300-byte write took {at_least}{:.1} ms on average over {}",
            p.mean_ms(),
            p.writes
        )
    });
    let slow = s.fsync.is_some_and(|p| p.mean_ms() > ETCD_WAL_FSYNC_P99_MS);
    let guidance =
        format!("etcd's guidance: a 99th-percentile WAL fsync under {ETCD_WAL_FSYNC_P99_MS} ms");
    if s.kind == DiskKind::SdCard {
        let measured = measured.map(|m| format!("; {m}")).unwrap_or_default();
        return Some(format!(
            "K3s's data dir, with embedded etcd (ha = true), is on an SD card ({dev}){measured}: \
             etcd waits on a disk sync for every write ({guidance}), and SD cards stall for far \
             longer, so leader elections are lost and K3s restarts (k3s-io/k3s#1850, #2938, \
             #6654); {REMEDY}"
        ));
    }
    if !slow {
        return None;
    }
    let kind = match s.kind {
        DiskKind::SolidState => "a solid-state disk",
        DiskKind::Rotational => "a spinning disk",
        DiskKind::SdCard | DiskKind::Unknown => "its disk",
    };
    Some(format!(
        "K3s's data dir, with embedded etcd (ha = true), is on {kind} ({dev}) too slow for \
         etcd: {} ({guidance}), so leader elections are lost and K3s restarts \
         (k3s-io/k3s#1850, #2938, #6654); {REMEDY}",
        measured.unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::FsyncProbe;

    fn storage(device: &str, kind: DiskKind, elapsed_ms: Option<u64>) -> Storage {
        Storage {
            device: device.into(),
            kind,
            fsync: elapsed_ms.map(|ms| FsyncProbe {
                writes: 20,
                elapsed_us: ms * 1000,
                timed_out: false,
            }),
        }
    }

    #[test]
    fn an_sd_card_is_warned_about_with_what_was_measured() {
        let w = etcd_storage_warning(&storage("/dev/mmcblk0p2", DiskKind::SdCard, Some(900)))
            .expect("warned");
        assert!(w.contains("SD card (/dev/mmcblk0p2)"), "{w}");
        assert!(w.contains("45.0 ms on average over 20"), "{w}");
        assert!(w.contains("under 10 ms") && w.contains("etcd-arg"), "{w}");
        // Not measured (K3s not set up yet): the kind is enough.
        let w = etcd_storage_warning(&storage("/dev/mmcblk0p2", DiskKind::SdCard, None));
        assert!(w.is_some_and(|w| !w.contains("on average")));
    }

    #[test]
    fn a_disk_that_misses_etcds_figure_is_warned_about_and_a_fast_one_is_not() {
        // 20 writes in 300 ms: 15 ms each, over etcd's 10 ms.
        let w = etcd_storage_warning(&storage("/dev/sda1", DiskKind::SolidState, Some(300)))
            .expect("warned");
        assert!(w.contains("solid-state disk (/dev/sda1) too slow"), "{w}");
        assert!(w.contains("15.0 ms") && w.contains("SSD"), "{w}");
        // 20 writes in 40 ms: 2 ms each.
        let fast = storage("/dev/sda1", DiskKind::SolidState, Some(40));
        assert_eq!(etcd_storage_warning(&fast), None);
        // Nothing measured on a non-SD disk: nothing to say.
        let unmeasured = storage("/dev/nvme0n1p2", DiskKind::SolidState, None);
        assert_eq!(etcd_storage_warning(&unmeasured), None);
        // A probe stopped by its time bound is slow by construction.
        let mut stopped = storage("/dev/sdb1", DiskKind::Rotational, Some(2000));
        if let Some(p) = stopped.fsync.as_mut() {
            p.timed_out = true;
        }
        let w = etcd_storage_warning(&stopped).expect("warned");
        assert!(
            w.contains("at least 100.0 ms") && w.contains("spinning"),
            "{w}"
        );
    }
}
