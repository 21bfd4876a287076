//! The storage guard: with `ha = true` a server whose data dir is on an SD
//! card is warned about in plan and apply (etcd on an SD card loses leader
//! elections); a single server on SQLite, or a server on an SSD, is not.

use super::joining::Warnings;
use super::*;

/// The warnings a plan of `s` shows, per node.
async fn sd_warnings(s: &Setup) -> Vec<String> {
    let recorder = Arc::new(Warnings::default());
    let mut opts = s.options();
    opts.progress = recorder.clone();
    assert!(super::plan(&s.inv, &opts).await.is_ok());
    let lines = recorder.0.lock().expect("warnings").clone();
    lines
        .into_iter()
        .filter(|l| l.contains("SD card"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ha_servers_on_an_sd_card_are_warned_about_and_nothing_else_is() {
    let s = setup(3, 1).await;
    for (n, dev) in [
        ("s1", "/dev/mmcblk0p2"),
        ("s2", "/dev/sda1"),
        ("s3", "/dev/nvme0n1p2"),
        ("a1", "/dev/mmcblk0p2"),
    ] {
        s.fleet.node(n).lock().expect("node").data_dev = Some(dev.into());
    }
    let warned = sd_warnings(&s).await;
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].starts_with("[s1]"), "{warned:?}");
    assert!(
        warned[0].contains("(/dev/mmcblk0p2)") && warned[0].contains("SSD"),
        "{warned:?}"
    );

    // One server (SQLite, no etcd): an SD card is K3s's usual home on a Pi.
    let single = setup(1, 1).await;
    single.fleet.node("s1").lock().expect("node").data_dev = Some("/dev/mmcblk0p2".into());
    assert!(sd_warnings(&single).await.is_empty());
}
