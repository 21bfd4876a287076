//! The storage under a server's K3s data dir: which device it is (an SD
//! card, a solid-state or a spinning disk, as the kernel's sysfs says), and
//! on servers that run embedded etcd, how long a small synced write takes
//! there. etcd waits on a disk sync for every write to its WAL, so a slow
//! disk loses leader elections (k3s-io/k3s#1850, #2938, #6654); the runner
//! judges these facts (`runner::phases::storage`), nothing matches the
//! script's text elsewhere.

use serde::Serialize;

/// The script's storage section. `$dd` is the data dir, `$db` its
/// `server/db`, `$etcd` non-empty when K3s runs (or pictl's config.yaml
/// sets it up for) embedded etcd. The device is found through the mount's
/// `major:minor` in /proc/self/mountinfo, so a root the kernel mounted
/// itself (`/dev/root` on Raspberry Pi OS) still resolves to its
/// `mmcblk0p2`; a partition's disk is its sysfs parent (`..` of the
/// `/sys/dev/block` link resolves on the device tree).
///
/// The probe is etcd's WAL write in miniature (etcd's own disk check, fio's
/// etcd recipe: 2300-byte writes, each followed by a sync): 20 of them with
/// `dd oflag=dsync`, in the data dir (or the nearest directory above it
/// that exists), its file removed, bounded to 2 s by `timeout`. Only
/// `apply` probes (plan and status write nothing on a node: they show the
/// figure an apply recorded, or none), and only on servers with etcd, once
/// per boot: `apply` records the figure
/// in `/var/lib/pictl/fsync` under the boot id and data dir, and later runs
/// read it (~0.1 s saved per run on a lab node; the health agent measures
/// every 5 minutes for the disk's later decline).
macro_rules! storage_records {
    () => {
        r#"_m=""; _d=""; _n=""
while read -r _ _ _mm _ _p _o; do
  case $dd/ in "${_p%/}"/*) [ ${#_p} -lt ${#_m} ] || { _m=$_p; _n=$_mm; _d=${_o#* - }; _d=${_d#* }; _d=${_d%% *}; } ;; esac
done </proc/self/mountinfo
_b=/sys/dev/block/$_n; _dn=""; _dt=""; _k=""; _r=""
if [ -n "$_n" ] && [ -r "$_b/uevent" ]; then
  while IFS='=' read -r _a _v; do
    case $_a in DEVNAME) _dn=$_v ;; DEVTYPE) _dt=$_v ;; esac
  done <"$_b/uevent"
  _k=$_dn
  if [ "$_dt" = partition ]; then
    while IFS='=' read -r _a _v; do [ "$_a" != DEVNAME ] || _k=$_v; done <"$_b/../uevent"
    rd _r "$_b/../queue/rotational"
  else rd _r "$_b/queue/rotational"; fi
fi
[ -z "$_dn" ] || _d=/dev/$_dn
e data_dev "$_d"
[ -z "$_k" ] || e data_disk "$_k $_r"
_c=/var/lib/pictl/fsync; rd _o "$_c"; rd _bi /proc/sys/kernel/random/boot_id
if [ "$secrets" != secrets ] || { [ -z "$etcd" ] && [ ! -d "$db/etcd" ]; }; then :
elif [ "${_o%" "*" "*" "*}" = "$_bi $dd" ]; then e fsync "${_o#"$_bi $dd "}"
elif [ "$record" != record ]; then :
else
  _p=$dd
  while [ ! -d "$_p" ]; do _p=${_p%/*}; [ -n "$_p" ] || _p=/; done
  _f=${_p%/}/.pictl-fsync-probe
  _t0=$(date +%s%N)
  timeout 2 dd if=/dev/zero of="$_f" bs=2300 count=20 oflag=dsync 2>/dev/null; _rc=$?
  _t1=$(date +%s%N)
  rm -f "$_f"
  _v="$_rc 20 $(( (_t1 - _t0) / 1000 ))"
  e fsync "$_v"
  case $record.$_rc in record.0|record.124) printf '%s\n' "$_bi $dd $_v" >"$_c" ;; esac
fi
"#
    };
}
pub(super) use storage_records;

/// etcd's figure for its WAL's disk: the 99th percentile of
/// `etcd_disk_wal_fsync_duration_seconds` under 10 ms ("etcd docs suggest
/// that the 99th percentile of this metric should be less than 10ms for
/// storage to be considered fast enough": Olivi and Spreitzer, "Using fio
/// to tell whether your storage is fast enough for etcd", IBM Cloud blog,
/// 2019, whose fio recipe the probe follows). etcd.io's hardware page:
/// "Fast disks are the most critical factor for etcd deployment
/// performance and stability"; its tuning page: the default 100 ms
/// heartbeat and 1000 ms election timeout may be raised when "slow disks"
/// delay requests.
pub const ETCD_WAL_FSYNC_P99_MS: f64 = 10.0;

/// What kind of device holds the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DiskKind {
    /// The kernel's MMC block driver (`mmcblkN`): an SD card, or eMMC.
    SdCard,
    /// Non-rotational (`queue/rotational` 0): an SSD, NVMe, or a USB stick.
    SolidState,
    /// A spinning disk.
    Rotational,
    /// No block device the node could name (overlayfs, tmpfs, NFS, …).
    Unknown,
}

/// 20 synced 2300-byte writes, timed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FsyncProbe {
    pub writes: u32,
    /// Wall time of all writes, microseconds.
    pub elapsed_us: u64,
    /// `timeout` stopped it: the writes took at least `elapsed_us`.
    pub timed_out: bool,
}

impl FsyncProbe {
    /// The mean time of one synced write, milliseconds (a floor when it
    /// timed out). The slowest write is at least this, so a mean above
    /// etcd's 99th-percentile figure means the disk misses it.
    pub fn mean_ms(&self) -> f64 {
        self.elapsed_us as f64 / 1000.0 / f64::from(self.writes.max(1))
    }

    /// `0 20 41234` (dd's status, writes, microseconds); `None` when dd
    /// failed for another reason than the time bound (no space, read-only).
    fn parse(text: &str) -> Option<FsyncProbe> {
        let mut w = text.split_whitespace();
        let status: i32 = w.next()?.parse().ok()?;
        let writes = w.next()?.parse().ok()?;
        let elapsed_us = w.next()?.parse().ok()?;
        let timed_out = match status {
            0 => false,
            124 => true,
            _ => return None,
        };
        Some(FsyncProbe {
            writes,
            elapsed_us,
            timed_out,
        })
    }
}

/// The data dir's device and how fast it syncs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Storage {
    /// `/dev/mmcblk0p2`, or the mount's source when no block device is
    /// behind it (`overlay`).
    pub device: String,
    pub kind: DiskKind,
    /// Measured on servers with embedded etcd only.
    pub fsync: Option<FsyncProbe>,
}

impl Storage {
    /// From the script's `data_dev`, `data_disk` (`mmcblk0 0`: the whole
    /// disk and its `queue/rotational`) and `fsync` records.
    pub(super) fn parse(dev: &str, disk: &str, fsync: &str) -> Option<Storage> {
        if dev.is_empty() {
            return None;
        }
        let mut d = disk.split_whitespace();
        let kind = match (d.next(), d.next()) {
            (Some(name), _) if name.starts_with("mmcblk") => DiskKind::SdCard,
            (Some(_), Some("1")) => DiskKind::Rotational,
            (Some(_), Some("0")) => DiskKind::SolidState,
            _ if on_sd_card(dev) => DiskKind::SdCard,
            _ => DiskKind::Unknown,
        };
        Some(Storage {
            device: dev.to_string(),
            kind,
            fsync: FsyncProbe::parse(fsync),
        })
    }
}

/// Whether `dev` is an SD card (the kernel's MMC block driver names them
/// `mmcblkN`, partitions `mmcblkNpM`; a Pi's eMMC too).
pub fn on_sd_card(dev: &str) -> bool {
    dev.strip_prefix("/dev/mmcblk")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
#[path = "tests_storage.rs"]
mod tests;
