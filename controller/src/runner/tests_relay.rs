//! The relay's rules against the fakes: one seed per arch gets the only
//! upload of K3s and the agent, the others fetch from it, and any failure
//! falls back to a direct upload that the run's output mentions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake::{Call, FakeApi, Fleet};
use super::*;
use crate::artifacts::sha256_hex;
use crate::facts::paths;
use crate::inventory::Inventory;

const AMD64: &[u8] = b"k3s amd64 for the fake fleet";
const ARM64: &[u8] = b"k3s arm64 for the fake fleet";
const AMD64_IMAGES: &[u8] = b"k3s's amd64 images for the fake fleet";
const ARM64_IMAGES: &[u8] = b"k3s's arm64 images for the fake fleet";

/// A loopback mirror serving the amd64 and arm64 binaries and checksums.
async fn mirror() -> String {
    super::fake::serve_http(|head| {
        let path = head.split(' ').nth(1).unwrap_or_default();
        let images =
            |a: &str, b: &[u8]| format!("{}  k3s-airgap-images-{a}.tar.zst\n", sha256_hex(b));
        if path.ends_with("sha256sum-amd64.txt") {
            let sums = format!(
                "{}  k3s\n{}",
                sha256_hex(AMD64),
                images("amd64", AMD64_IMAGES)
            );
            sums.into_bytes()
        } else if path.ends_with("sha256sum-arm64.txt") {
            let sums = format!(
                "{}  k3s-arm64\n{}",
                sha256_hex(ARM64),
                images("arm64", ARM64_IMAGES)
            );
            sums.into_bytes()
        } else if path.ends_with("/k3s-airgap-images-amd64.tar.zst") {
            AMD64_IMAGES.to_vec()
        } else if path.ends_with("/k3s-airgap-images-arm64.tar.zst") {
            ARM64_IMAGES.to_vec()
        } else if path.ends_with("/k3s-arm64") {
            ARM64.to_vec()
        } else {
            AMD64.to_vec()
        }
    })
    .await
}

/// An ELF header for `machine` (what the agent binary check reads).
fn elf(machine: u16) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn event(&self, e: &Event<'_>) {
        let line = format!(
            "[{}] {}: {} {}",
            e.subject,
            e.topic_word(),
            e.stage_word(),
            e.detail
        );
        self.0.lock().expect("lines").push(line);
    }
}

pub(super) struct Setup {
    pub(super) inv: Inventory,
    pub(super) fleet: Fleet,
    pub(super) api: FakeApi,
    progress: Arc<Recorder>,
    dir: tempfile::TempDir,
}

/// `nodes`: (name, role, uname); the agent is enabled for amd64 and arm64.
async fn setup(nodes: &[(&str, &str, &str)]) -> Setup {
    setup_with(nodes, "").await
}

/// As [`setup`], with `agent` appended to the inventory's `[agent]` table.
pub(super) async fn setup_with(nodes: &[(&str, &str, &str)], agent: &str) -> Setup {
    setup_cluster(nodes, "", agent).await
}

/// As [`setup_with`], with `cluster` appended to `[cluster]`.
async fn setup_cluster(nodes: &[(&str, &str, &str)], cluster: &str, agent: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("agent-amd64"), elf(62)).expect("agent");
    std::fs::write(dir.path().join("agent-arm64"), elf(183)).expect("agent");
    let mut text = format!(
        "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\nmirror = \"{}\"\nallow_http_mirror = true\nstate_dir = \"{}\"\n{cluster}\n[ssh]\nagent = true\n[agent]\nbinaries = {{ amd64 = \"agent-amd64\", arm64 = \"agent-arm64\" }}\n{agent}",
        mirror().await,
        dir.path().join("state").display(),
    );
    let fleet = Fleet::default();
    for (i, (name, role, uname)) in nodes.iter().enumerate() {
        text.push_str(&format!(
            "[[nodes]]\nname = \"{name}\"\naddress = \"10.0.0.{}\"\nrole = \"{role}\"\n",
            i + 1
        ));
        fleet.node(name).lock().expect("node").uname = Some(uname.to_string());
    }
    let inv = Inventory::parse(&text, "t.toml", dir.path()).expect("valid inventory");
    let names = nodes.iter().map(|n| n.0.to_string()).collect();
    Setup {
        inv,
        fleet,
        api: FakeApi {
            nodes: names,
            ..FakeApi::default()
        },
        progress: Arc::default(),
        dir,
    }
}

impl Setup {
    pub(super) fn options(&self, relay: bool) -> Options {
        Options {
            concurrency: 8,
            connector: Arc::new(self.fleet.clone()),
            api: Arc::new(self.api.clone()),
            progress: self.progress.clone(),
            cache_dir: self.dir.path().join("cache"),
            wait: Duration::from_secs(5),
            diff: false,
            relay,
            upgrade: Default::default(),
            only: Vec::new(),
        }
    }

    /// Nodes that got an upload to `path` (a directory: under it), in order.
    fn puts(&self, path: &str) -> Vec<String> {
        let dir = format!("{path}/");
        self.fleet
            .calls()
            .into_iter()
            .filter(|(_, c)| matches!(c, Call::Put(p) if p == path || p.starts_with(&dir)))
            .map(|(n, _)| n)
            .collect()
    }

    pub(super) fn file(&self, node: &str, path: &str) -> Option<Vec<u8>> {
        let n = self.fleet.node(node);
        let s = n.lock().expect("node");
        s.files.get(path).cloned()
    }

    fn lines(&self) -> Vec<String> {
        self.progress.0.lock().expect("lines").clone()
    }
}

const MIXED: [(&str, &str, &str); 5] = [
    ("s1", "server", "x86_64"),
    ("a1", "agent", "aarch64"),
    ("a2", "agent", "x86_64"),
    ("a3", "agent", "aarch64"),
    ("a4", "agent", "x86_64"),
];

#[tokio::test(flavor = "multi_thread")]
async fn each_arch_gets_one_upload_to_its_seed_and_the_others_fetch_from_it() {
    let s = setup(&MIXED).await;
    let plan = plan(&s.inv, &s.options(true)).await.expect("plan runs");
    assert!(plan.changed());
    assert!(
        s.fleet
            .calls()
            .iter()
            .all(|(_, c)| !matches!(c, Call::Put(_) | Call::Exec(_))),
        "plan wrote: {:?}",
        s.fleet.calls()
    );
    let after = |n: &str| {
        let node = plan.nodes.iter().find(|r| r.name == n).expect("node");
        let step = node
            .steps
            .iter()
            .find(|r| r.step == crate::step::StepId::K3sBinary);
        step.map(|r| r.changes[0].after.clone())
    };
    assert_eq!(
        after("s1").as_deref(),
        Some("v1.32.5+k3s1 (seed: the one upload from the controller)")
    );
    assert_eq!(
        after("a2").as_deref(),
        Some("v1.32.5+k3s1 (fetched from s1)")
    );
    assert_eq!(
        after("a3").as_deref(),
        Some("v1.32.5+k3s1 (fetched from a1)")
    );
    let seeds: Vec<String> = s
        .lines()
        .into_iter()
        .filter(|l| l.contains("relay:"))
        .collect();
    assert_eq!(
        seeds,
        [
            "[s1] relay: resolved seed for amd64: a2, a4 fetch K3s from it, a2, a4 the agent",
            "[a1] relay: resolved seed for arm64: a3 fetch K3s from it, a3 the agent",
        ]
    );
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(
        s.puts(crate::relay::STAGE_ROOT),
        ["s1", "s1", "a1", "a1"],
        "one upload of each per arch"
    );
    assert!(s.puts(paths::K3S_BIN).is_empty(), "no direct K3s upload");
    assert!(
        s.puts(paths::HEALTH_AGENT_BIN).is_empty(),
        "no direct agent upload"
    );
    for (n, bin, agent) in [
        ("s1", AMD64, elf(62)),
        ("a2", AMD64, elf(62)),
        ("a4", AMD64, elf(62)),
        ("a1", ARM64, elf(183)),
        ("a3", ARM64, elf(183)),
    ] {
        assert_eq!(s.file(n, paths::K3S_BIN).as_deref(), Some(bin), "{n}");
        assert_eq!(s.file(n, paths::HEALTH_AGENT_BIN), Some(agent), "{n}");
    }
    for seed in ["s1", "a1"] {
        let n = s.fleet.node(seed);
        let st = n.lock().expect("node");
        assert!(st.shares.is_empty(), "{seed} still serves");
        assert!(
            !st.files
                .keys()
                .any(|p| p.starts_with(crate::relay::STAGE_ROOT)),
            "{seed} keeps staged copies"
        );
    }
    assert!(
        !s.lines().iter().any(|l| l.contains("warning")),
        "{:#?}",
        s.lines()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_of_an_arch_and_no_relay_upload_directly() {
    let s = setup(&[("s1", "server", "x86_64"), ("a1", "agent", "aarch64")]).await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    assert!(s.puts(crate::relay::STAGE_ROOT).is_empty());
    assert_eq!(s.puts(paths::K3S_BIN), ["s1", "a1"]);
    let s = setup(&MIXED[..3]).await;
    let report = apply(&s.inv, &s.options(false)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    assert!(s.puts(crate::relay::STAGE_ROOT).is_empty(), "--no-relay");
    assert_eq!(s.puts(paths::K3S_BIN).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_that_cannot_serve_falls_back_to_uploads_for_its_arch_only() {
    let s = setup(&MIXED).await;
    s.fleet.node("a1").lock().expect("node").share_fails = true;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    let mut direct = s.puts(paths::K3S_BIN);
    direct.sort();
    assert_eq!(
        direct,
        ["a1", "a3"],
        "arm64 uploaded directly, amd64 relayed"
    );
    let warned: Vec<String> = s
        .lines()
        .into_iter()
        .filter(|l| l.contains("warning"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].starts_with("[a1] relay: warning cannot serve arm64's artifacts (the share server did not start (exit 1): Failed to start")
            && warned[0].ends_with("every arm64 node gets its copy from the controller"),
        "{warned:#?}"
    );
    assert_eq!(s.file("a3", paths::K3S_BIN).as_deref(), Some(ARM64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_seed_copy_or_a_missing_curl_is_refused_and_uploaded_directly() {
    let s = setup(&MIXED[..3]).await;
    s.fleet.node("s1").lock().expect("node").tamper_staged = true;
    s.fleet.node("a2").lock().expect("node").no_curl = true;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    let mut direct = s.puts(paths::K3S_BIN);
    direct.sort();
    // a1 is the only arm64 node: a direct upload anyway.
    assert_eq!(
        direct,
        ["a1", "a2", "s1"],
        "every node that read the tampered copy got an upload"
    );
    for n in ["s1", "a2"] {
        assert_eq!(s.file(n, paths::K3S_BIN).as_deref(), Some(AMD64), "{n}");
    }
    let lines = s.lines();
    let warned = |prefix: &str, text: &str| {
        lines.iter().any(|l| {
            l.starts_with(prefix)
                && l.contains(text)
                && l.ends_with("uploading it from the controller instead")
        })
    };
    assert!(
        warned(
            "[s1] k3s-binary: warning /usr/local/bin/k3s from this node's staged copy",
            "refused, nothing installed"
        ),
        "{lines:#?}"
    );
    assert!(
        warned(
            "[a2] k3s-binary: warning /usr/local/bin/k3s from the seed s1",
            "curl is not installed"
        ),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn airgap_images_cross_the_controllers_link_once_per_arch() {
    let s = setup_cluster(&MIXED, "airgap_images = true", "").await;
    let report = apply(&s.inv, &s.options(true)).await.expect("apply runs");
    assert!(!report.failed(), "{report:#?}");
    let dir = "/var/lib/rancher/k3s/agent/images";
    assert!(s.puts(dir).is_empty(), "no direct upload of an archive");
    let staged: Vec<(String, String)> = (s.fleet.calls().into_iter())
        .filter_map(|(n, c)| match c {
            Call::Put(p) if p.starts_with(crate::relay::STAGE_ROOT) => Some((n, p)),
            _ => None,
        })
        .filter(|(_, p)| p.ends_with("/k3s-airgap-images.tar.zst"))
        .collect();
    let seeds: Vec<&str> = staged.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(seeds, ["s1", "a1"], "one upload of the archive per arch");
    for (n, want, arch) in [
        ("s1", AMD64_IMAGES, "amd64"),
        ("a2", AMD64_IMAGES, "amd64"),
        ("a4", AMD64_IMAGES, "amd64"),
        ("a1", ARM64_IMAGES, "arm64"),
        ("a3", ARM64_IMAGES, "arm64"),
    ] {
        let path = format!("{dir}/k3s-airgap-images-{arch}.tar.zst");
        assert_eq!(s.file(n, &path).as_deref(), Some(want), "{n}");
    }
    assert!(
        s.lines().iter().any(|l| l.contains("a2, a4 K3s's images")),
        "{:#?}",
        s.lines()
    );
    let again = plan(&s.inv, &s.options(true)).await.expect("plan runs");
    assert!(!again.changed(), "{again:#?}");
}
