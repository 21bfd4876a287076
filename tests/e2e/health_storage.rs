//! The storage guard's agent half in the lab (see `agent/src/collect/fsync.rs`).

use std::time::{Duration, Instant};

use pictl_e2e::Lab;

use super::{agent_report, apply, condition};

/// The storage guard's agent half: node1 (the server) measures synced writes
/// on its data dir's filesystem, exports them and publishes `EtcdDiskSlow`
/// (True or False is the lab disk's to say, with the matching reason);
/// node2 (an agent) does neither.
pub(super) fn the_servers_agent_times_synced_writes_on_the_data_dirs_disk_and_an_agents_does_not(
    lab: &Lab,
) {
    apply(lab);
    let f = agent_report(lab, "node1")["data_dir_fsync"].clone();
    assert_eq!(
        (&f["writes"], &f["probe_dir"], &f["same_filesystem"]),
        (&8.into(), &"/var/lib/pictl-agent".into(), &true.into()),
        "{f:#}"
    );
    let metrics =
        (lab.ssh_ok("node1", "lab", "curl -s http://127.0.0.1:9750/metrics")).expect("metrics");
    for stat in ["max", "mean"] {
        let line = format!("pictl_node_datadir_fsync_seconds{{stat=\"{stat}\"}} ");
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
    let start = Instant::now();
    let c = loop {
        if let Some(c) = condition(lab, "node1", "EtcdDiskSlow") {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "EtcdDiskSlow not published"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let want = if c["status"] == "True" {
        "SlowFsync"
    } else {
        "FsyncFast"
    };
    assert_eq!(c["reason"], want, "{c:#}");
    assert!(agent_report(lab, "node2").get("data_dir_fsync").is_none());
    assert_eq!(condition(lab, "node2", "EtcdDiskSlow"), None);
}
