//! Node-to-node artifact copies on the lab (three amd64 nodes): K3s and the
//! agent cross the controller's link once (to the seed, node1), node2 and
//! node3 fetch them from node1's transient `pictl-agent share` server, and a
//! copy tampered with on the seed is refused by the fetching node's sha256
//! check and replaced by a direct upload. The controller's bytes are counted
//! on the host end of the lab bridge (`/sys/class/net/pictlK/statistics`):
//! the host's own transmissions into the bridge, which node-to-node traffic
//! never passes.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};

use pictl_e2e::pictl::{self, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};

const VERSION: &str = "v1.32.5+k3s1";
const NODES: [&str; 3] = ["node1", "node2", "node3"];
const TAMPER: &[u8] = b"tampered on the seed\n";

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        a_fresh_lab_installs_everywhere_with_one_upload_per_artifact,
        without_the_relay_every_node_gets_its_own_upload,
        a_tampered_seed_copy_is_refused_and_each_node_falls_back_to_an_upload,
        airgap_images_reach_every_node_once_per_arch,
    ];
    harness::run(cases, LabSpec { nodes: 3, pi: &[] })
}

fn pictl(lab: &Lab, args: &[&str]) -> Output {
    static MIRROR: std::sync::Once = std::sync::Once::new();
    MIRROR.call_once(|| {
        lab.populate_mirror()
            .expect("populate the lab's K3s mirror")
    });
    pictl::command(pictl::build(), lab, &lab.inventory(), args)
        .output()
        .expect("run pictl")
}

/// Bytes the host (the controller) has sent into the lab bridge.
fn controller_bytes(lab: &Lab) -> u64 {
    let path = format!("/sys/class/net/pictl{}/statistics/tx_bytes", lab.id());
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.trim().parse().expect("a byte count")
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

fn release_k3s(lab: &Lab) -> PathBuf {
    lab.mirror_dir().join(VERSION).join("k3s")
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").len()
}

fn node_sha(lab: &Lab, node: &str, path: &str) -> String {
    let out = lab
        .ssh_ok(node, "root", &format!("sha256sum {path}"))
        .expect("sha256sum on the node");
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Every node runs the release's K3s and this build's agent; no temp file,
/// staged copy or share server is left.
fn assert_installed_everywhere_and_nothing_left(lab: &Lab) {
    let (k3s, agent) = (
        sha256_file(&release_k3s(lab)),
        sha256_file(&pictl::target_dir().join("debug").join("pictl-agent")),
    );
    for n in NODES {
        assert_eq!(node_sha(lab, n, "/usr/local/bin/k3s"), k3s, "{n}");
        assert_eq!(node_sha(lab, n, "/usr/local/bin/pictl-agent"), agent, "{n}");
        let left = lab
            .ssh_ok(
                n,
                "root",
                "ls -A /usr/local/bin | grep pictl- | grep -v '^pictl-agent$'; \
                 ls -A /var/lib/pictl-relay 2>/dev/null; \
                 systemctl list-units --all --no-legend 'pictl-share-*'",
            )
            .expect("list leftovers");
        assert_eq!(
            left, "",
            "{n} keeps temp files, staged copies or a share server"
        );
    }
}

/// Removes K3s and the agent everywhere (each case starts from fresh nodes).
fn reset(lab: &Lab) {
    let out = pictl(lab, &["reset", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn a_fresh_lab_installs_everywhere_with_one_upload_per_artifact(lab: &Lab) {
    pictl(lab, &["validate"]); // builds pictl and fills the mirror before counting
    let before = controller_bytes(lab);
    let out = pictl(lab, &["apply", "-v"]); // -v: the per-node log
    let sent = controller_bytes(lab) - before;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "[node1] relay: resolved seed for amd64: node2, node3 fetch K3s from it, node2, node3 the agent (serving on 10.77."
        ),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("warning"), "{}", text(&out));
    assert_installed_everywhere_and_nothing_left(lab);
    let artifacts =
        size(&release_k3s(lab)) + size(&pictl::target_dir().join("debug").join("pictl-agent"));
    eprintln!("controller sent {sent} bytes; K3s + agent are {artifacts} bytes");
    assert_one_copy_crossed(sent, artifacts);
}

/// `sent` bytes over the controller's link carried `artifacts` bytes of
/// artifacts once: at least one copy, and well under two.
fn assert_one_copy_crossed(sent: u64, artifacts: u64) {
    assert!(
        sent >= artifacts,
        "{sent} < {artifacts}: not even one copy was counted"
    );
    assert!(
        sent < artifacts * 3 / 2,
        "{sent} bytes sent for {artifacts} bytes of artifacts: more than one copy crossed"
    );
}

fn without_the_relay_every_node_gets_its_own_upload(lab: &Lab) {
    reset(lab);
    let before = controller_bytes(lab);
    let out = pictl(lab, &["apply", "--no-relay", "-v"]);
    let sent = controller_bytes(lab) - before;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("relay:"),
        "{}",
        text(&out)
    );
    assert_installed_everywhere_and_nothing_left(lab);
    let artifacts =
        size(&release_k3s(lab)) + size(&pictl::target_dir().join("debug").join("pictl-agent"));
    eprintln!("controller sent {sent} bytes without the relay; K3s + agent are {artifacts} bytes");
    assert!(
        sent >= 3 * artifacts,
        "{sent} < 3 × {artifacts}: the counter misses uploads"
    );
}

fn a_tampered_seed_copy_is_refused_and_each_node_falls_back_to_an_upload(lab: &Lab) {
    reset(lab);
    // On node1, as soon as the staged K3s appears (complete: uploads are
    // renamed into place), append to it, once.
    let watcher = format!(
        "for i in $(seq 1 2400); do for f in /var/lib/pictl-relay/*/k3s; do \
         if [ -f \"$f\" ]; then printf '{}' >> \"$f\"; echo \"$f\"; exit 0; fi; done; sleep 0.05; done; exit 1",
        String::from_utf8_lossy(TAMPER).replace('\n', "\\n")
    );
    let tamper = lab
        .ssh_command("node1", "root")
        .expect("ssh")
        .arg("--")
        .arg(watcher)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the tamperer");
    let before = controller_bytes(lab);
    let out = pictl(lab, &["apply", "-v"]); // -v: the per-node log
    let sent = controller_bytes(lab) - before;
    let tampered = tamper.wait_with_output().expect("tamperer");
    assert!(
        tampered.status.success(),
        "the staged copy never appeared: {}",
        text(&out)
    );
    assert!(out.status.success(), "{}", text(&out));

    let mut bad = std::fs::read(release_k3s(lab)).expect("release");
    bad.extend_from_slice(TAMPER);
    let dir = tempfile_dir(lab);
    std::fs::write(dir.join("bad"), &bad).expect("write");
    let (bad_sha, good_sha) = (
        sha256_file(&dir.join("bad")),
        sha256_file(&release_k3s(lab)),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in ["node2", "node3"] {
        let refused = format!(
            "[{n}] k3s-binary: warning /usr/local/bin/k3s from the seed node1: the copy's sha256 is {bad_sha}, \
             not the release's {good_sha}: refused, nothing installed; uploading it from the controller instead"
        );
        assert!(stderr.contains(&refused), "{refused}\n{}", text(&out));
    }
    // Nothing was installed from the tampered copy: every node has the
    // release's binary, and the controller's link carried the fallbacks.
    assert_installed_everywhere_and_nothing_left(lab);
    let k3s = size(&release_k3s(lab));
    eprintln!("controller sent {sent} bytes with the fallbacks; K3s is {k3s} bytes");
    assert!(
        sent >= 3 * k3s,
        "{sent} < 3 × {k3s}: the fallback uploads did not happen"
    );
}

/// A scratch directory in the lab's state dir.
fn tempfile_dir(lab: &Lab) -> PathBuf {
    let dir = lab.dir().join("relay-test");
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Where K3s imports archives from, and the lab's (amd64) archive there.
const IMAGES: &str = "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst";
/// The archive's size for this case: large enough that a second copy over
/// the controller's link would show in its byte count.
const IMAGES_PAD: u64 = 32 << 20;

/// Lays the mirror out again with the image archive padded to `IMAGES_PAD`
/// (the binaries stay as they are: mirror.sh rewrites only what changed).
fn pad_the_mirrors_images(lab: &Lab) {
    let script = pictl_e2e::lab::repo_root().join("tests/k3s-sim/mirror.sh");
    let status = Command::new(script)
        .arg(lab.mirror_dir())
        .env("PICTL_MIRROR_AIRGAP_PAD_TO", IMAGES_PAD.to_string())
        .stdin(Stdio::null())
        .status()
        .expect("mirror.sh");
    assert!(status.success(), "mirror.sh failed: {status}");
}

fn airgap_images_reach_every_node_once_per_arch(lab: &Lab) {
    pictl(lab, &["validate"]); // builds pictl and fills the mirror first
    reset(lab);
    pad_the_mirrors_images(lab);
    let release_images = lab
        .mirror_dir()
        .join(VERSION)
        .join("k3s-airgap-images-amd64.tar.zst");
    let body = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let inv = lab.dir().join("inventory-airgap.toml");
    let body = body.replacen("[cluster]\n", "[cluster]\nairgap_images = true\n", 1);
    std::fs::write(&inv, body).expect("write inventory");
    let run = |args: &[&str]| {
        pictl::command(pictl::build(), lab, &inv, args)
            .output()
            .expect("run pictl")
    };

    let before = controller_bytes(lab);
    let out = run(&["apply", "-v"]);
    let sent = controller_bytes(lab) - before;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node2, node3 the agent, node2, node3 K3s's images (serving on"),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("warning"), "{}", text(&out));
    assert_installed_everywhere_and_nothing_left(lab);
    let want = sha256_file(&release_images);
    for n in NODES {
        assert_eq!(node_sha(lab, n, IMAGES), want, "{n}");
        // The simulator imported it when K3s started, as K3s does.
        let listed = lab
            .ssh_ok(n, "root", "k3s crictl images")
            .expect("crictl images");
        assert!(
            listed.contains("docker.io/rancher/mirrored-pause") && listed.contains("3.6"),
            "{n}: {listed}"
        );
    }
    let artifacts = size(&release_k3s(lab))
        + size(&pictl::target_dir().join("debug").join("pictl-agent"))
        + size(&release_images);
    eprintln!("controller sent {sent} bytes; K3s + agent + images are {artifacts} bytes");
    assert_one_copy_crossed(sent, artifacts);

    let again = run(&["plan"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "a re-run would change: {}",
        text(&again)
    );
}
