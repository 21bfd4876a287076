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
/// The release's `k3s-airgap-images-amd64.tar.zst` on the fake mirror.
pub(super) const IMAGES: &[u8] = b"k3s's images for the fake fleet";

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
            let images = sha256_hex(IMAGES);
            format!(
                "{}  k3s\n{images}  k3s-airgap-images-amd64.tar.zst\n",
                sha256_hex(&binary)
            )
            .into_bytes()
        } else if head.contains("k3s-airgap-images-amd64.tar.zst") {
            IMAGES.to_vec()
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
pub(super) async fn setup_with(servers: usize, agents: usize, release: &str) -> Setup {
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
    /// `node`'s config.yaml as the fake node holds it.
    pub(super) fn config(&self, node: &str) -> String {
        let state = self.fleet.node(node);
        let st = state.lock().expect("node");
        String::from_utf8_lossy(st.files.get(paths::CONFIG).expect("config.yaml")).into_owned()
    }

    /// The uploads and commands (not facts) since call `from`.
    /// No node was written to (no upload, no command, no recorded facts):
    /// what a plan must leave.
    pub(super) fn assert_nothing_written(&self) {
        let calls = self.fleet.calls().into_iter();
        let writes: Vec<_> = calls.filter(|(_, c)| is_write(c)).collect();
        assert!(writes.is_empty(), "plan wrote: {writes:?}");
    }

    pub(super) fn writes_since(&self, from: usize) -> Vec<(String, Call)> {
        self.fleet.calls()[from..]
            .iter()
            .filter(|(_, c)| matches!(c, Call::Put(_) | Call::Exec(_)))
            .cloned()
            .collect()
    }

    pub(super) fn options(&self) -> Options {
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
            only: Vec::new(),
        }
    }

    pub(super) async fn apply(&self) -> RunReport {
        apply(&self.inv, &self.options()).await.expect("apply runs")
    }

    pub(super) async fn plan(&self) -> RunReport {
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

/// A node's reports of `step`, as JSON (their changes and messages).
pub(super) fn step_text(report: &RunReport, name: &str, step: crate::step::StepId) -> String {
    node(report, name)
        .steps
        .iter()
        .filter(|r| r.step == step)
        .map(|r| serde_json::to_string(r).expect("json"))
        .collect()
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
    s.assert_nothing_written();
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

mod airgap;
mod certs;
mod channel;
mod drain;
mod ha;
mod joining;
mod labels;
mod limit;
mod lock;
mod prune;
mod registries;
mod rejoin;
mod reset;
mod rollback;
mod storage;
mod upgrade;
