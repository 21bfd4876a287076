//! The runner's ordering and failure rules, one fast test each, against
//! fake nodes and a fake API (see [`super::fake`]): no root, no lab.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fake::{Call, FakeApi, Fleet};
use super::*;
use crate::artifacts::sha256_hex;
use crate::facts::paths;
use crate::inventory::Inventory;

const BINARY: &[u8] = b"k3s for the fake fleet";

/// A loopback mirror serving one release's checksum file and binary.
async fn mirror() -> String {
    super::fake::serve_http(|head| {
        // Each release its own bytes (v1.32.5's are BINARY).
        let release = head.split('/').nth(1).unwrap_or_default();
        let binary = if release.starts_with("v1.32.5") {
            BINARY.to_vec()
        } else {
            [BINARY, release.as_bytes()].concat()
        };
        if head.contains("sha256sum-amd64.txt") {
            format!("{}  k3s\n", sha256_hex(&binary)).into_bytes()
        } else if release.starts_with("v1.33.9") {
            // A release whose binary does not match its checksum file.
            b"corrupted in transit".to_vec()
        } else {
            binary
        }
    })
    .await
}

pub(super) struct Setup {
    pub(super) inv: Inventory,
    /// The inventory's text, for tests that change it.
    text: String,
    pub(super) fleet: Fleet,
    api: FakeApi,
    dir: tempfile::TempDir,
}

/// `servers` then `agents`, named s1…/a1…; HA when more than one server.
pub(super) async fn setup(servers: usize, agents: usize) -> Setup {
    setup_with(servers, agents, "k3s_version = \"v1.32.5+k3s1\"").await
}

/// A loopback channel server: every channel redirects to `release`.
async fn channel_server(release: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 302 Found\r\nLocation: https://github.com/k3s-io/k3s/releases/tag/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                release.replace('+', "%2B")
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    format!("http://{addr}/v1-release/channels")
}

/// As [`setup`], with `release` (the cluster's release keys) in `[cluster]`.
async fn setup_with(servers: usize, agents: usize, release: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let mut text = format!(
        "[cluster]\nname = \"t\"\n{release}\nmirror = \"{}\"\nallow_http_mirror = true\nstate_dir = \"{}\"\nha = {}\n[ssh]\nagent = true\n[agent]\nenabled = false\n",
        mirror().await,
        dir.path().join("state").display(),
        servers > 1
    );
    let mut names = Vec::new();
    for (role, prefix, n) in [("server", "s", servers), ("agent", "a", agents)] {
        for i in 1..=n {
            let name = format!("{prefix}{i}");
            let ip = format!("10.0.0.{}", names.len() + 1);
            text.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\naddress = \"{ip}\"\nrole = \"{role}\"\n"
            ));
            names.push(name);
        }
    }
    let inv = Inventory::parse(&text, "t.toml", dir.path()).expect("valid inventory");
    Setup {
        inv,
        text,
        fleet: Fleet::default(),
        api: FakeApi {
            nodes: names,
            ..FakeApi::default()
        },
        dir,
    }
}

impl Setup {
    fn options(&self) -> Options {
        Options {
            concurrency: 8,
            connector: Arc::new(self.fleet.clone()),
            api: Arc::new(self.api.clone()),
            progress: Arc::new(WarningsOnly),
            cache_dir: self.dir.path().join("cache"),
            wait: Duration::from_secs(5),
            diff: false,
            relay: true,
            upgrade: Upgrade::default(),
        }
    }

    pub(super) async fn apply(&self) -> RunReport {
        apply(&self.inv, &self.options()).await.expect("apply runs")
    }

    async fn plan(&self) -> RunReport {
        plan(&self.inv, &self.options()).await.expect("plan runs")
    }

    /// Index in the log of the first call matching `f` on `node`.
    fn first(&self, node: &str, f: impl Fn(&Call) -> bool) -> usize {
        let calls = self.fleet.calls();
        calls
            .iter()
            .position(|(n, c)| n == node && f(c))
            .unwrap_or_else(|| panic!("{node} never did it: {calls:?}"))
    }
}

pub(super) fn is_write(c: &Call) -> bool {
    matches!(
        c,
        Call::Put(_) | Call::Exec(_) | Call::Facts { record: true }
    )
}

pub(super) fn node<'r>(r: &'r RunReport, name: &str) -> &'r NodeReport {
    r.nodes
        .iter()
        .find(|n| n.name == name)
        .expect("node in report")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_cluster_converges_servers_first_and_a_second_run_changes_nothing() {
    let s = setup(1, 2).await;
    let first = s.apply().await;
    assert!(!first.failed(), "{first:#?}");
    assert!(first.changed());
    let server_started = s.first("s1", |c| matches!(c, Call::Exec(_)));
    for agent in ["a1", "a2"] {
        assert!(
            s.first(agent, |c| matches!(c, Call::Put(_))) > server_started,
            "{agent} before the server"
        );
    }
    let again = s.apply().await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
    assert!(
        again.nodes.iter().all(|n| n.ssh_round_trips == 1),
        "{again:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_sends_no_command_with_side_effects_and_writes_no_state() {
    let s = setup(1, 2).await;
    let report = s.plan().await;
    assert!(report.changed() && !report.failed(), "{report:#?}");
    let writes: Vec<_> = s
        .fleet
        .calls()
        .into_iter()
        .filter(|(_, c)| is_write(c))
        .collect();
    assert!(writes.is_empty(), "plan wrote: {writes:?}");
    assert!(
        !s.dir.path().join("state").exists(),
        "plan created the state directory"
    );
    assert!(
        !s.dir.path().join("cache").exists(),
        "plan filled the cache"
    );
    // Agents' configs are pending, not failed, while no server exists.
    let a1 = node(&report, "a1");
    assert!(a1.failed.is_none(), "{a1:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_go_one_at_a_time() {
    let s = setup(3, 0).await;
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let started = |n| s.first(n, |c| matches!(c, Call::Exec(_)));
    let first_put = |n| s.first(n, |c| matches!(c, Call::Put(_)));
    assert!(started("s1") < first_put("s2"));
    assert!(started("s2") < first_put("s3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_server_stops_the_rollout_and_the_agents() {
    let s = setup(3, 1).await;
    s.fleet.node("s1").lock().expect("node").refuse = Some("systemctl: access denied".into());
    let report = s.apply().await;
    assert!(report.failed());
    let s1 = node(&report, "s1").failed.clone().unwrap_or_default();
    assert!(s1.contains("access denied"), "{s1}");
    for later in ["s2", "s3"] {
        let why = node(&report, later).failed.clone().unwrap_or_default();
        assert_eq!(why, "not converged: server s1 failed before it");
    }
    let a1 = node(&report, "a1").failed.clone().unwrap_or_default();
    assert!(
        a1.starts_with("join token unavailable: server s1 is failed"),
        "{a1}"
    );
    let touched: Vec<_> = s
        .fleet
        .calls()
        .into_iter()
        .filter(|(n, c)| n != "s1" && matches!(c, Call::Put(_) | Call::Exec(_)))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_node_does_not_stop_the_others() {
    let s = setup(1, 2).await;
    s.fleet.node("a1").lock().expect("node").down = true;
    let report = s.apply().await;
    assert!(node(&report, "a1").unreachable.is_some(), "{report:#?}");
    let a2 = node(&report, "a2");
    assert!(a2.failed.is_none() && a2.unreachable.is_none(), "{a2:#?}");
    assert!(
        s.fleet
            .node("a2")
            .lock()
            .expect("node")
            .active
            .contains("k3s-agent.service")
    );
    // Three connection attempts: the first and two retries.
    let tries = s
        .fleet
        .calls()
        .iter()
        .filter(|(n, c)| n == "a1" && *c == Call::Connect)
        .count();
    assert_eq!(tries, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_differs_from_the_running_one_is_refused_before_any_write() {
    let s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    s.fleet.node("s1").lock().expect("node").server_token = Some("K10abc::server:another".into());
    let before = s.fleet.calls().len();
    let err = apply(&s.inv, &s.options()).await.expect_err("mismatch");
    assert!(
        matches!(err, RunError::TokenMismatch { ref server, .. } if server == "s1"),
        "{err}"
    );
    let writes: Vec<_> = s.fleet.calls()[before..]
        .iter()
        .filter(|(_, c)| matches!(c, Call::Put(_) | Call::Exec(_)))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recheck_that_still_finds_changes_is_a_failure() {
    let s = setup(1, 0).await;
    assert!(!s.apply().await.failed());
    // The config was edited, and uploads to it no longer stick.
    let state = s.fleet.node("s1");
    {
        let mut st = state.lock().expect("node");
        st.files.insert(paths::CONFIG.into(), b"edited".to_vec());
        st.lost_uploads.insert(paths::CONFIG.into());
    }
    let report = s.apply().await;
    let s1 = node(&report, "s1");
    let why = s1.failed.clone().unwrap_or_default();
    assert!(why.starts_with("k3s-config: did not converge"), "{s1:#?}");
    assert!(report.failed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_with_an_unreachable_node_never_says_everything_is_converged() {
    let s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    s.fleet.node("a1").lock().expect("node").down = true;
    let report = s.plan().await;
    assert!(report.failed() && !report.changed(), "{report:#?}");
    let text = crate::recap::human(&report);
    assert!(
        !text.contains("every node and playbook is converged"),
        "{text}"
    );
    assert!(
        text.contains("not every node or playbook could be checked"),
        "{text}"
    );
    assert!(text.contains("a1: UNREACHABLE"), "{text}");
}

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

/// A Node written by someone else between pictl's read and its patch (K3s's
/// node controller) refuses the patch (409); pictl reads it again, plans
/// against it, and patches once more, without losing the other write.
#[tokio::test(flavor = "multi_thread")]
async fn a_label_write_racing_another_writer_is_planned_again_and_retried_once() {
    let mut s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    s.inv.nodes[1].labels = [("zone".to_string(), "shelf".to_string())].into();
    s.api.requests.lock().expect("requests").clear();
    *s.api.races.lock().expect("races") = 1;
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(s.api.node("a1")["metadata"]["labels"]["zone"], "shelf");
    let requests = s.api.requests.lock().expect("requests").clone();
    let of_a1 = |m: &str| {
        requests
            .iter()
            .filter(|r| r.split('?').next() == Some(&format!("{m} /api/v1/nodes/a1")[..]))
            .count()
    };
    assert_eq!((of_a1("PATCH"), of_a1("GET")), (2, 1), "{requests:#?}");
    // Two racing writes in a row: the second refusal is the run's failure.
    s.inv.nodes[1].labels = [("zone".to_string(), "desk".to_string())].into();
    *s.api.races.lock().expect("races") = 2;
    let report = s.apply().await;
    let a1 = node(&report, "a1");
    let labels = a1
        .steps
        .iter()
        .find(|r| r.step == crate::step::StepId::NodeLabels);
    let message = labels.and_then(|r| r.message.clone()).unwrap_or_default();
    assert!(message.contains("labelling Node a1"), "{a1:#?}");
    assert!(
        message.contains("the object has been modified"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn label_and_taint_changes_reach_the_node_through_the_api_without_a_restart() {
    let mut s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    let execs_before = s
        .fleet
        .calls()
        .iter()
        .filter(|(_, c)| matches!(c, Call::Exec(_)))
        .count();
    s.inv.nodes[1].labels = [("zone".to_string(), "shelf".to_string())].into();
    s.inv.nodes[1].taints = vec!["edge=true:NoSchedule".into()];
    let plan_report = s.plan().await;
    let planned = node(&plan_report, "a1")
        .steps
        .iter()
        .find(|r| r.step == crate::step::StepId::NodeLabels)
        .cloned();
    assert_eq!(planned.map(|r| r.status), Some(Status::Changed));
    assert!(
        s.api
            .requests
            .lock()
            .expect("requests")
            .iter()
            .all(|r| !r.starts_with("PATCH")),
        "plan patched"
    );
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let a1 = s.api.node("a1");
    assert_eq!(a1["metadata"]["labels"]["zone"], "shelf");
    assert_eq!(a1["spec"]["taints"][0]["key"], "edge");
    // No restart: the node's K3s was not touched.
    let execs = s
        .fleet
        .calls()
        .iter()
        .filter(|(_, c)| matches!(c, Call::Exec(_)))
        .count();
    assert_eq!(
        execs, execs_before,
        "a label change ran commands on the node"
    );
    // Removing them from the inventory removes them from the Node.
    s.inv.nodes[1].labels.clear();
    s.inv.nodes[1].taints.clear();
    assert!(!s.apply().await.failed());
    let a1 = s.api.node("a1");
    assert!(a1["metadata"]["labels"].get("zone").is_none(), "{a1}");
    assert_eq!(a1["spec"]["taints"], serde_json::json!([]));
    assert!(!s.apply().await.changed());
}

async fn reset(s: &Setup, only: &[&str], confirmed: bool) -> RunReport {
    let only: Vec<String> = only.iter().map(|n| n.to_string()).collect();
    super::reset(&s.inv, &s.options(), &only, confirmed)
        .await
        .expect("reset runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_without_yes_shows_what_it_would_remove_and_removes_nothing() {
    let s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    let before = s.fleet.calls().len();
    let report = reset(&s, &[], false).await;
    assert!(report.changed() && !report.failed(), "{report:#?}");
    let writes: Vec<_> = s.fleet.calls()[before..]
        .iter()
        .filter(|(_, c)| is_write(c))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(
        s.fleet
            .node("s1")
            .lock()
            .expect("node")
            .files
            .contains_key(paths::K3S_BIN)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_removes_agents_before_servers_and_a_second_reset_changes_nothing() {
    let s = setup(1, 2).await;
    assert!(!s.apply().await.failed());
    let before = s.fleet.calls().len();
    let report = reset(&s, &[], true).await;
    assert!(!report.failed(), "{report:#?}");
    let calls = s.fleet.calls();
    let first = |n: &str| {
        calls[before..]
            .iter()
            .position(|(m, c)| m == n && matches!(c, Call::Put(_)))
            .expect("reset")
    };
    assert!(
        first("a1") < first("s1") && first("a2") < first("s1"),
        "{calls:?}"
    );
    for n in ["s1", "a1", "a2"] {
        let st = s.fleet.node(n);
        let st = st.lock().expect("node");
        assert!(
            st.files.is_empty() && st.active.is_empty(),
            "{n} kept {:?}",
            st.files.keys()
        );
    }
    let mark = s.fleet.calls().len();
    let again = reset(&s, &[], true).await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
    let writes: Vec<_> = s.fleet.calls()[mark..]
        .iter()
        .filter(|(_, c)| is_write(c))
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "a second reset wrote (a record is a write too): {writes:?}"
    );
    // The whole cluster is gone: its kubeconfig is forgotten.
    assert!(!crate::state::kubeconfig_path(&s.inv).exists());
    assert!(s.api.deleted.lock().expect("deleted").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn resetting_one_agent_deletes_its_node_and_leaves_the_rest() {
    let s = setup(1, 2).await;
    assert!(!s.apply().await.failed());
    let report = reset(&s, &["a2"], true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(report.nodes.len(), 1);
    assert_eq!(*s.api.deleted.lock().expect("deleted"), ["a2"]);
    assert!(
        s.fleet
            .node("a1")
            .lock()
            .expect("node")
            .active
            .contains("k3s-agent.service")
    );
    assert!(crate::state::kubeconfig_path(&s.inv).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reflashed_agent_refused_by_its_node_password_is_named_with_the_fix() {
    let s = setup(1, 1).await;
    s.fleet.node("a1").lock().expect("node").refuse =
        Some("level=error msg=\"Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry\"".into());
    let report = s.apply().await;
    let why = node(&report, "a1").failed.clone().unwrap_or_default();
    assert!(why.contains("Node password rejected"), "{why}");
    assert!(why.contains("kubectl delete node a1"), "{why}");
    assert!(node(&report, "s1").failed.is_none(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_cluster_gives_agents_an_agent_token_not_the_server_token() {
    let s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    let config = |n: &str| {
        let st = s.fleet.node(n);
        let st = st.lock().expect("node");
        String::from_utf8_lossy(st.files.get(paths::CONFIG).expect("config")).into_owned()
    };
    let agent_secret =
        std::fs::read_to_string(s.dir.path().join("state").join("agent-token")).expect("generated");
    assert!(
        config("s1").contains(&format!("agent-token: {}", agent_secret.trim())),
        "{}",
        config("s1")
    );
    let agent = config("a1");
    assert!(
        agent.contains("::node:") && !agent.contains("::server:"),
        "{agent}"
    );
    assert!(!s.apply().await.changed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_running_without_an_agent_token_keeps_running_without_one() {
    let s = setup(1, 1).await;
    // A server someone started without an agent token (install.sh's default).
    {
        let st = s.fleet.node("s1");
        let mut st = st.lock().expect("node");
        st.server_token = Some("K10abc::server:theirs".into());
        st.active.insert("k3s.service".into());
    }
    std::fs::create_dir_all(s.dir.path().join("state")).expect("state");
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let st = s.fleet.node("s1");
    let config = String::from_utf8_lossy(
        st.lock()
            .expect("node")
            .files
            .get(paths::CONFIG)
            .expect("config"),
    )
    .into_owned();
    assert!(!config.contains("agent-token"), "{config}");
    assert!(!s.dir.path().join("state").join("agent-token").exists());
}

// ---------------- HA servers ----------------

impl Setup {
    /// The inventory with `ha = true` and these servers (name, address) added.
    fn with_servers(&mut self, added: &[(&str, &str)]) {
        self.text = self.text.replace("ha = false", "ha = true");
        for (name, ip) in added {
            self.text.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\naddress = \"{ip}\"\nrole = \"server\"\n"
            ));
            self.api.nodes.push(name.to_string());
        }
        self.inv =
            Inventory::parse(&self.text, "t.toml", self.dir.path()).expect("valid inventory");
    }

    fn config(&self, node: &str) -> String {
        let state = self.fleet.node(node);
        let st = state.lock().expect("node");
        String::from_utf8_lossy(st.files.get(paths::CONFIG).expect("config.yaml")).into_owned()
    }

    fn writes_since(&self, from: usize) -> Vec<(String, Call)> {
        self.fleet.calls()[from..]
            .iter()
            .filter(|(_, c)| matches!(c, Call::Put(_) | Call::Exec(_)))
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ha_servers_join_the_first_one_at_a_time_with_every_san_and_agents_use_the_api_address() {
    let release = "k3s_version = \"v1.32.5+k3s1\"\napi_address = \"k3s.example.net\"\ntls_san = [\"10.0.0.100\", \"cp.example.net\"]";
    let s = setup_with(3, 2, release).await;
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let s1 = s.config("s1");
    assert!(
        s1.contains("cluster-init: true") && !s1.contains("\nserver:"),
        "{s1}"
    );
    for joiner in ["s2", "s3"] {
        let c = s.config(joiner);
        assert!(c.contains("server: https://k3s.example.net:6443"), "{c}");
        assert!(!c.contains("cluster-init"), "{c}");
    }
    for server in ["s1", "s2", "s3"] {
        let c = s.config(server);
        for san in ["k3s.example.net", "10.0.0.100", "cp.example.net"] {
            assert!(c.contains(&format!("- {san}")), "{server} lacks {san}: {c}");
        }
    }
    for agent in ["a1", "a2"] {
        let c = s.config(agent);
        assert!(c.contains("server: https://k3s.example.net:6443"), "{c}");
    }
    // One at a time: a server is touched only once the one before it is
    // started (its unit active: K3s's READY=1 comes after its etcd member
    // joined and its apiserver serves), and agents only after all of them.
    let started = |n| s.first(n, |c| matches!(c, Call::Exec(_)));
    let first_put = |n| s.first(n, |c| matches!(c, Call::Put(_)));
    assert!(started("s1") < first_put("s2"));
    assert!(started("s2") < first_put("s3"));
    assert!(started("s3") < first_put("a1").min(first_put("a2")));
    let again = s.apply().await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_added_to_a_running_ha_cluster_join_one_at_a_time_and_nothing_else_changes() {
    let mut s = setup(3, 1).await;
    assert!(!s.apply().await.failed());
    let before = s.fleet.calls().len();
    s.with_servers(&[("s4", "10.0.0.9"), ("s5", "10.0.0.10")]);
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let token = s
        .fleet
        .node("s1")
        .lock()
        .expect("node")
        .server_token
        .clone();
    let token = token.expect("s1's token");
    for joiner in ["s4", "s5"] {
        let c = s.config(joiner);
        assert!(
            c.contains("server: https://10.0.0.1:6443") && !c.contains("cluster-init"),
            "{c}"
        );
        assert!(c.contains(&format!("token: {token}")), "{c}");
        assert!(
            node(&report, joiner).count(crate::report::Status::Changed) > 0,
            "{report:#?}"
        );
    }
    let started = |n| s.first(n, |c| matches!(c, Call::Exec(_)));
    let first_put = |n| s.first(n, |c| matches!(c, Call::Put(_)));
    assert!(started("s4") < first_put("s5"));
    let others: Vec<_> = s
        .writes_since(before)
        .into_iter()
        .filter(|(n, _)| n != "s4" && n != "s5")
        .collect();
    assert!(others.is_empty(), "{others:?}");
    for n in ["s1", "s2", "s3", "a1"] {
        assert_eq!(
            node(&report, n).count(crate::report::Status::Changed),
            0,
            "{report:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_added_to_a_sqlite_server_are_refused_before_any_write_and_ha_on_it_alone_migrates()
{
    let mut s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    assert_eq!(
        s.fleet.node("s1").lock().expect("node").datastore,
        Some("sqlite")
    );
    let before = s.fleet.calls().len();
    let mut three = Setup {
        inv: s.inv.clone(),
        text: s.text.clone(),
        fleet: s.fleet.clone(),
        api: s.api.clone(),
        dir: tempfile::tempdir().expect("tmp"),
    };
    three.text = three.text.replace(
        &s.dir.path().display().to_string(),
        &three.dir.path().display().to_string(),
    );
    three.with_servers(&[("s2", "10.0.0.8"), ("s3", "10.0.0.9")]);
    for result in [
        plan(&three.inv, &three.options()).await,
        apply(&three.inv, &three.options()).await,
    ] {
        let err = result.expect_err("SQLite under HA is refused");
        assert!(
            matches!(err, RunError::SqliteToHa { ref server } if server == "s1"),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            "server s1 runs K3s on SQLite",
            "nothing was changed",
            "Migrating content from sqlite to etcd",
            "ha = true and s1 as the only server",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
    }
    assert!(
        s.writes_since(before).is_empty(),
        "{:?}",
        s.writes_since(before)
    );
    // The way out: ha = true with s1 alone restarts it with cluster-init
    // (K3s migrates), after which the servers join.
    s.text = s.text.replace("ha = false", "ha = true");
    s.inv = Inventory::parse(&s.text, "t.toml", s.dir.path()).expect("valid inventory");
    assert!(!s.apply().await.failed());
    assert!(s.config("s1").contains("cluster-init: true"));
    assert_eq!(
        s.fleet.node("s1").lock().expect("node").datastore,
        Some("etcd")
    );
    s.with_servers(&[("s2", "10.0.0.8"), ("s3", "10.0.0.9")]);
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert!(s.config("s3").contains("server: https://10.0.0.1:6443"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_first_ha_server_down_the_rest_converge_through_another_server() {
    let s = setup(3, 1).await;
    assert!(!s.apply().await.failed());
    let kubeconfig = std::fs::read_to_string(s.dir.path().join("state/kubeconfig"));
    let kubeconfig = kubeconfig.expect("kubeconfig written");
    s.fleet.node("s1").lock().expect("node").down = true;
    // Drift on the agent, which needs its join token from a server.
    s.fleet
        .node("a1")
        .lock()
        .expect("node")
        .files
        .insert(paths::CONFIG.into(), b"edited".to_vec());
    let report = s.apply().await;
    assert!(node(&report, "s1").unreachable.is_some(), "{report:#?}");
    for n in ["s2", "s3", "a1"] {
        let r = node(&report, n);
        assert!(r.failed.is_none() && r.unreachable.is_none(), "{r:#?}");
    }
    assert!(
        node(&report, "a1").count(crate::report::Status::Changed) > 0,
        "{report:#?}"
    );
    assert!(s.config("a1").contains("server: https://10.0.0.1:6443"));
    // The run's API went through s2; the file still names the API address.
    let servers = s.api.servers.lock().expect("servers").clone();
    assert_eq!(
        servers.last().map(String::as_str),
        Some("https://10.0.0.2:6443"),
        "{servers:?}"
    );
    let after = std::fs::read_to_string(s.dir.path().join("state/kubeconfig")).expect("kubeconfig");
    assert_eq!(after, kubeconfig);
}
mod upgrade;
