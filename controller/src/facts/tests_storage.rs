//! The data dir's storage: the script run locally against a mount table and
//! a sysfs laid out as a Pi's, and the fsync probe on the test's own disk.

use super::super::Facts;
use super::super::tests::Scratch;
use super::{DiskKind, FsyncProbe, Storage, on_sd_card};
use std::process::Command;

#[test]
fn sd_cards_are_mmcblk_devices_and_nothing_else() {
    for dev in ["/dev/mmcblk0p2", "/dev/mmcblk1", "/dev/mmcblk0"] {
        assert!(on_sd_card(dev), "{dev}");
    }
    for dev in [
        "/dev/sda2",
        "/dev/nvme0n1p2",
        "overlay",
        "/dev/mmcblkboot0",
        "",
    ] {
        assert!(!on_sd_card(dev), "{dev}");
    }
}

#[test]
fn the_kind_comes_from_the_whole_disk_and_the_probe_from_dds_status() {
    let p = |dev, disk, fsync| Storage::parse(dev, disk, fsync).expect("storage");
    assert_eq!(p("/dev/mmcblk0p2", "mmcblk0 0", "").kind, DiskKind::SdCard);
    assert_eq!(p("/dev/sda1", "sda 0", "").kind, DiskKind::SolidState);
    assert_eq!(p("/dev/sdb1", "sdb 1", "").kind, DiskKind::Rotational);
    assert_eq!(p("overlay", "", "").kind, DiskKind::Unknown);
    // No sysfs to read: the device's name still says SD card.
    assert_eq!(p("/dev/mmcblk0p2", "", "").kind, DiskKind::SdCard);
    assert_eq!(Storage::parse("", "", ""), None);

    let probe = p("/dev/sda1", "sda 0", "0 20 41000").fsync.expect("probe");
    assert_eq!(
        probe,
        FsyncProbe {
            writes: 20,
            elapsed_us: 41000,
            timed_out: false
        }
    );
    assert!((probe.mean_ms() - 2.05).abs() < 1e-9, "{}", probe.mean_ms());
    let slow = p("/dev/sda1", "sda 0", "124 20 2001000")
        .fsync
        .expect("probe");
    assert!(slow.timed_out && slow.mean_ms() > 100.0);
    // dd failed for another reason (a full disk): nothing was measured.
    assert_eq!(p("/dev/sda1", "sda 0", "1 20 300").fsync, None);
}

/// A scratch node whose mount table, sysfs and config.yaml are files the
/// test writes.
struct Node {
    scratch: Scratch,
}

impl Node {
    fn new() -> Self {
        let scratch = Scratch::new();
        let p = |s: &str| scratch.path(s);
        // A Pi booted from its SD card: the kernel mounted / (`/dev/root`,
        // major 179 minor 2), and an SSD (sda1, 8:1) at /mnt/ssd.
        for (dir, uevent) in [
            (
                "devices/mmcblk0",
                "MAJOR=179\nMINOR=0\nDEVNAME=mmcblk0\nDEVTYPE=disk\n",
            ),
            (
                "devices/mmcblk0/mmcblk0p2",
                "MAJOR=179\nMINOR=2\nDEVNAME=mmcblk0p2\nDEVTYPE=partition\n",
            ),
            (
                "devices/sda",
                "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n",
            ),
            (
                "devices/sda/sda1",
                "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\n",
            ),
        ] {
            std::fs::create_dir_all(p(dir)).expect("mkdir");
            std::fs::write(format!("{}/uevent", p(dir)), uevent).expect("uevent");
        }
        for (disk, rot) in [("mmcblk0", "0\n"), ("sda", "0\n")] {
            let q = p(&format!("devices/{disk}/queue"));
            std::fs::create_dir_all(&q).expect("queue");
            std::fs::write(format!("{q}/rotational"), rot).expect("rotational");
        }
        std::fs::create_dir_all(p("sys-dev-block")).expect("mkdir");
        for (n, dev) in [("179:2", "mmcblk0/mmcblk0p2"), ("8:1", "sda/sda1")] {
            let link = format!("{}/{n}", p("sys-dev-block"));
            std::os::unix::fs::symlink(p(&format!("devices/{dev}")), link).expect("link");
        }
        let ssd = p("ssd");
        let mounts = format!(
            "22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/root rw\n\
             23 22 179:1 / /boot/firmware rw shared:2 - vfat /dev/mmcblk0p1 rw\n\
             24 22 8:1 / {ssd} rw shared:3 - ext4 /dev/sda1 rw\n\
             25 22 0:50 / {ssd}-old rw shared:4 - tmpfs tmpfs rw\n"
        );
        std::fs::write(p("mountinfo"), mounts).expect("mountinfo");
        Node { scratch }
    }

    /// A node, its SSD's mount point (made), and pictl's config.yaml for
    /// the first server of an HA cluster with its data dir on the SSD.
    fn first_ha_server() -> (Node, String, String) {
        let node = Node::new();
        let ssd = node.scratch.path("ssd");
        std::fs::create_dir_all(&ssd).expect("ssd");
        let config = format!("# Managed by pictl\ndata-dir: {ssd}/k3s\ncluster-init: true\n");
        (node, ssd, config)
    }

    /// The facts of a server whose config.yaml is `config`.
    /// The facts as `apply` gathers them (the only run that probes).
    fn facts(&self, config: &str) -> Facts {
        self.facts_as(config, "record")
    }

    /// [`Node::facts`], by `apply` (`record`) or a read-only command.
    fn facts_as(&self, config: &str, record: &str) -> Facts {
        let p = |s: &str| self.scratch.path(s);
        std::fs::write(p("config.yaml"), config).expect("config");
        let script = self
            .scratch
            .script
            .replace("/etc/rancher/k3s/config.yaml", &p("config.yaml"))
            .replace("/proc/self/mountinfo", &p("mountinfo"))
            .replace("/sys/dev/block", &p("sys-dev-block"));
        let out = Command::new("/bin/sh")
            .args(["-c", &script, "pictl", "secrets", record])
            .output()
            .expect("sh");
        Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts")
    }
}

#[test]
fn a_root_the_kernel_mounted_resolves_to_its_sd_card_partition() {
    let node = Node::new();
    // K3s's default data dir on a Pi booted from its SD card, which
    // /proc/self/mounts calls /dev/root.
    let s = node.facts("").storage.expect("storage");
    assert_eq!(s.device, "/dev/mmcblk0p2");
    assert_eq!(s.kind, DiskKind::SdCard);
    // No etcd here: nothing measured.
    assert_eq!(s.fsync, None);
}

#[test]
fn a_data_dir_on_the_ssd_is_the_ssds_and_the_deepest_mount_wins() {
    let node = Node::new();
    let ssd = node.scratch.path("ssd");
    let s = node
        .facts(&format!("data-dir: {ssd}/k3s\n"))
        .storage
        .expect("storage");
    assert_eq!(
        (s.device.as_str(), s.kind),
        ("/dev/sda1", DiskKind::SolidState)
    );
    // A mount with no block device behind it (ssd-old is no parent of it).
    let s = node
        .facts(&format!("data-dir: {ssd}-old/k3s\n"))
        .storage
        .expect("storage");
    assert_eq!((s.device.as_str(), s.kind), ("tmpfs", DiskKind::Unknown));
}

#[test]
fn etcd_servers_probe_fsync_in_the_data_dir_and_leave_no_file() {
    // The data dir itself does not exist yet: the nearest directory above
    // it is probed.
    let (node, ssd, config) = Node::first_ha_server();
    let probe = node.facts(&config).storage.and_then(|s| s.fsync);
    let probe = probe.expect("probed");
    assert_eq!(probe.writes, 20);
    assert!(probe.elapsed_us > 0, "{probe:?}");
    let left: Vec<_> = std::fs::read_dir(&ssd).expect("ls").collect();
    assert!(left.is_empty(), "{left:?}");
    // A single server (SQLite) is not probed.
    let single = format!("# Managed by pictl\ndata-dir: {ssd}/k3s\n");
    assert_eq!(node.facts(&single).storage.and_then(|s| s.fsync), None);
    // etcd on disk (a server joined before pictl managed it) is.
    std::fs::create_dir_all(format!("{ssd}/k3s/server/db/etcd")).expect("etcd");
    assert!(node.facts(&single).storage.and_then(|s| s.fsync).is_some());
}

#[test]
fn apply_keeps_the_probes_figure_for_the_boot_and_a_new_boot_measures_again() {
    let (node, ssd, config) = Node::first_ha_server();
    let fsync = |record| node.facts_as(&config, record).storage.and_then(|s| s.fsync);
    // A read-only run (plan, status) neither probes nor records.
    assert_eq!(fsync("no-record"), None);
    let cache = node.scratch.path("lib/fsync");
    assert!(std::fs::metadata(&cache).is_err(), "plan wrote {cache}");
    let left: Vec<_> = std::fs::read_dir(&ssd)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !left
            .iter()
            .any(|f| f.to_string_lossy().contains("fsync-probe")),
        "{left:?}"
    );
    let first = fsync("record").expect("probed");
    let kept = std::fs::read_to_string(&cache).expect("recorded");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    assert_eq!(
        kept,
        format!("{} {ssd}/k3s 0 20 {}\n", boot.trim(), first.elapsed_us)
    );
    // The same boot reads the figure back instead of writing again.
    let marked = format!("{} {ssd}/k3s 0 20 12345\n", boot.trim());
    std::fs::write(&cache, marked).expect("mark");
    assert_eq!(fsync("no-record").map(|p| p.elapsed_us), Some(12345));
    // A figure from another boot is measured again (20 synced writes take
    // more than 1 µs).
    std::fs::write(&cache, format!("other-boot {ssd}/k3s 0 20 1\n")).expect("mark");
    assert_ne!(fsync("record").map(|p| p.elapsed_us), Some(1));
    assert!(
        !std::fs::read_to_string(&cache)
            .expect("cache")
            .starts_with("other-boot")
    );
}

/// The script against this machine's own mount table and sysfs: the device
/// it names for K3s's default data dir is the one whose major:minor the
/// nearest existing directory above that dir lives on.
#[test]
fn the_machines_own_mount_table_names_the_device_the_data_dir_is_on() {
    use std::os::unix::fs::MetadataExt;
    let node = Scratch::new();
    let config = node.path("config.yaml");
    std::fs::write(&config, "").expect("config");
    let script = node.script.replace("/etc/rancher/k3s/config.yaml", &config);
    let out = Command::new("/bin/sh")
        .args(["-c", &script, "pictl", "no-secrets", "no-record"])
        .output()
        .expect("sh");
    let facts = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
    let dev = std::path::Path::new("/var/lib/rancher/k3s")
        .ancestors()
        .find_map(|d| std::fs::metadata(d).ok())
        .expect("/ exists")
        .dev();
    let (major, minor) = (
        (dev >> 8) & 0xfff | (dev >> 32) & !0xfff,
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"));
    let storage = facts.storage.expect("a device");
    match uevent {
        Ok(text) => {
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .expect("DEVNAME");
            assert_eq!(storage.device, format!("/dev/{name}"));
            assert_ne!(storage.kind, DiskKind::Unknown, "{storage:?}");
        }
        // No block device (overlayfs in a container): the mount's source.
        Err(_) => assert_eq!(storage.kind, DiskKind::Unknown, "{storage:?}"),
    }
}
