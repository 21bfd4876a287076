//! The storage guard's agent half in the lab (see `agent/src/collect/fsync.rs`).

use std::time::Duration;

use pictl_e2e::Lab;

use super::{agent_report, apply, condition, wait_condition};

/// The storage guard's agent half: node1 (the lab's one server, on SQLite)
/// measures synced writes on its data dir's filesystem and exports them, but
/// publishes no `EtcdDiskSlow`: nothing listens on etcd's peer port there.
/// node2 (an agent) measures nothing. (`EtcdDiskSlow` itself: the agent's
/// unit tests, `publish::conditions`.)
pub(super) fn the_servers_agent_times_synced_writes_on_the_data_dirs_disk_and_an_agents_does_not(
    lab: &Lab,
) {
    apply(lab);
    let f = agent_report(lab, "node1")["data_dir_fsync"].clone();
    assert_eq!(
        (
            &f["writes"],
            &f["probe_dir"],
            &f["same_filesystem"],
            &f["etcd"]
        ),
        (
            &8.into(),
            &"/var/lib/pictl-agent".into(),
            &true.into(),
            &false.into()
        ),
        "{f:#}"
    );
    let metrics =
        (lab.ssh_ok("node1", "lab", "curl -s http://127.0.0.1:9750/metrics")).expect("metrics");
    for stat in ["max", "mean"] {
        let line = format!("pictl_node_datadir_fsync_seconds{{stat=\"{stat}\"}} ");
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
    // Once the agents have published, neither node has the condition.
    for n in ["node1", "node2"] {
        wait_condition(lab, n, "K3sServiceDown", "False", Duration::from_secs(45));
        assert_eq!(condition(lab, n, "EtcdDiskSlow"), None, "{n}");
    }
    assert!(agent_report(lab, "node2").get("data_dir_fsync").is_none());
}
