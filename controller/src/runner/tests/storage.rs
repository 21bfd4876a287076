//! The storage guard: with `ha = true` a server whose data dir is on an SD
//! card, or on a disk whose synced writes miss etcd's 10 ms, is warned
//! about in plan and apply (etcd on such a disk loses leader elections); a
//! single server on SQLite, or a server on a fast SSD, is not.

use super::joining::Warnings;
use super::*;

/// The storage warnings a plan of `s` shows, per node.
async fn storage_warnings(s: &Setup) -> Vec<String> {
    let recorder = Arc::new(Warnings::default());
    let mut opts = s.options();
    opts.progress = recorder.clone();
    assert!(super::plan(&s.inv, &opts).await.is_ok());
    let lines = recorder.0.lock().expect("warnings").clone();
    lines
        .into_iter()
        .filter(|l| l.contains("K3s's data dir, with embedded etcd"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ha_servers_on_an_sd_card_or_a_slow_disk_are_warned_about_and_nothing_else_is() {
    let s = setup(3, 1).await;
    // (node, device, disk and rotational, µs for 20 synced writes)
    for (n, dev, disk, us) in [
        ("s1", "/dev/mmcblk0p2", "mmcblk0 0", Some(900_000)),
        ("s2", "/dev/sda1", "sda 0", Some(40_000)),
        ("s3", "/dev/sdb1", "sdb 0", Some(400_000)),
        ("a1", "/dev/mmcblk0p2", "mmcblk0 0", None),
    ] {
        let node = s.fleet.node(n);
        let mut node = node.lock().expect("node");
        node.data_dev = Some(dev.into());
        node.data_disk = Some(disk.into());
        node.fsync_us = us;
    }
    let warned = storage_warnings(&s).await;
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].starts_with("[s1]"), "{warned:?}");
    assert!(
        warned[0].contains("SD card (/dev/mmcblk0p2)")
            && warned[0].contains("45.0 ms on average")
            && warned[0].contains("SSD"),
        "{warned:?}"
    );
    // s2 syncs in 2 ms: no warning; s3's USB stick takes 20 ms.
    assert!(warned[1].starts_with("[s3]"), "{warned:?}");
    assert!(
        warned[1].contains("(/dev/sdb1) too slow") && warned[1].contains("20.0 ms"),
        "{warned:?}"
    );

    // One server (SQLite, no etcd): an SD card is K3s's usual home on a Pi.
    let single = setup(1, 1).await;
    {
        let node = single.fleet.node("s1");
        let mut node = node.lock().expect("node");
        node.data_dev = Some("/dev/mmcblk0p2".into());
        node.data_disk = Some("mmcblk0 0".into());
    }
    assert!(storage_warnings(&single).await.is_empty());
}
