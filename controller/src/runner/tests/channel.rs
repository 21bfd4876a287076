//! Following a release channel: an answer older than a running node, or
//! the candidate of a running release, is a refused downgrade unless
//! `allow_downgrade`; the release after a running candidate is an upgrade.

use super::*;

/// A fleet following channel `stable` (which answers v1.32.5+k3s1) where s1
/// runs the newer v1.33.0+k3s1 and a1 the older v1.31.0+k3s1.
async fn channel_fleet(extra: &str) -> Setup {
    channel_fleet_running("v1.32.5+k3s1", "v1.33.0+k3s1", extra).await
}

/// A fleet whose channel `stable` answers `answer`, where s1 runs `s1_runs`
/// and a1 the older v1.31.0+k3s1.
async fn channel_fleet_running(answer: &'static str, s1_runs: &str, extra: &str) -> Setup {
    let url = channel_server(answer).await;
    let release = format!(
        "channel = \"stable\"\nchannel_url = \"{url}\"\nallow_http_channel = true\n{extra}"
    );
    let s = setup_with(1, 1, &release).await;
    for (name, v) in [("s1", s1_runs), ("a1", "v1.31.0+k3s1")] {
        let node = s.fleet.node(name);
        let mut n = node.lock().expect("node");
        n.files
            .insert(paths::K3S_BIN.into(), b"another k3s".to_vec());
        n.k3s_version = Some(v.into());
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_answer_older_than_a_running_node_is_refused_before_any_change() {
    let s = channel_fleet("").await;
    for result in [
        plan(&s.inv, &s.options()).await,
        apply(&s.inv, &s.options()).await,
    ] {
        let err = result.expect_err("a downgrade is refused");
        assert!(matches!(err, RunError::ChannelDowngrade { .. }), "{err:?}");
        let msg = err.to_string();
        for part in [
            "channel stable resolves to K3s v1.32.5+k3s1",
            "node s1 (v1.33.0+k3s1)",
            "allow_downgrade = true",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
        assert!(!msg.contains("a1"), "a1 runs an older release: {msg}");
    }
    let changes: Vec<_> = s
        .fleet
        .calls()
        .into_iter()
        .filter(|(_, c)| matches!(c, Call::Put(_) | Call::Exec(_)))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_answering_the_candidate_of_a_running_release_is_a_refused_downgrade() {
    // Regression (review of rc ordering): release candidates could not be
    // ordered, so a channel moving a node from v1.33.0+k3s1 back to its
    // v1.33.0-rc1+k3s1 was let through as if it were no downgrade.
    let s = channel_fleet_running("v1.33.0-rc1+k3s1", "v1.33.0+k3s1", "").await;
    let err = plan(&s.inv, &s.options())
        .await
        .expect_err("a downgrade to a release candidate is refused");
    assert!(matches!(err, RunError::ChannelDowngrade { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("resolves to K3s v1.33.0-rc1+k3s1") && msg.contains("node s1 (v1.33.0+k3s1)"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_answering_the_release_after_a_running_candidate_is_an_upgrade() {
    let s = channel_fleet_running("v1.32.5+k3s1", "v1.32.5-rc2+k3s1", "").await;
    let report = s.plan().await;
    assert_eq!(report.k3s_version, "v1.32.5+k3s1");
    assert!(!report.failed(), "{report:#?}");
    assert!(
        report.changed(),
        "s1's candidate would be replaced by the release"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_downgrade_lets_a_channel_answer_replace_a_newer_k3s() {
    let s = channel_fleet("allow_downgrade = true").await;
    let report = s.plan().await;
    assert_eq!(report.k3s_version, "v1.32.5+k3s1");
    assert!(!report.failed(), "{report:#?}");
    assert!(report.changed(), "s1's newer binary would be replaced");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_release_older_than_a_running_node_is_refused_before_any_change() {
    // Regression (issue 25): a pinned downgrade went through, although K3s
    // does not support downgrades.
    let s = setup_with(1, 1, "k3s_version = \"v1.32.5+k3s1\"\n").await;
    for (name, v) in [("s1", "v1.33.1+k3s1"), ("a1", "v1.31.0+k3s1")] {
        let node = s.fleet.node(name);
        let mut n = node.lock().expect("node");
        n.files
            .insert(paths::K3S_BIN.into(), b"another k3s".to_vec());
        n.k3s_version = Some(v.into());
    }
    for result in [
        plan(&s.inv, &s.options()).await,
        apply(&s.inv, &s.options()).await,
    ] {
        let err = result.expect_err("a downgrade is refused");
        assert!(matches!(err, RunError::PinnedDowngrade { .. }), "{err:?}");
        let msg = err.to_string();
        for part in [
            "k3s_version v1.32.5+k3s1 is older than what node s1 (v1.33.1+k3s1) runs",
            "K3s does not support downgrades",
            "pre-upgrade-",
            "allow_downgrade = true",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
        assert!(!msg.contains("a1"), "a1 runs an older release: {msg}");
    }
    let changes: Vec<_> = s
        .fleet
        .calls()
        .into_iter()
        .filter(|(_, c)| matches!(c, Call::Put(_) | Call::Exec(_)))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
}
