//! `[cluster] airgap_images`: the release's image archive, verified
//! against its checksum file, lands in every node's `<data-dir>/agent/images`
//! before K3s first starts, and a second run changes nothing.

use super::*;
use crate::report::StepId;

const AMD64_IMAGES: &str = "k3s-airgap-images-amd64.tar.zst";

fn images(s: &Setup, node: &str, path: &str) -> Option<Vec<u8>> {
    let state = s.fleet.node(node);
    let st = state.lock().expect("node");
    st.files.get(path).cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn airgap_images_land_in_each_nodes_data_dir_before_k3s_starts_and_stay_converged() {
    let release = "k3s_version = \"v1.32.5+k3s1\"\nairgap_images = true\n\
                   agent_config = { data-dir = \"/mnt/ssd/k3s\" }";
    let s = setup_with(1, 2, release).await;
    let server_path = format!("/var/lib/rancher/k3s/agent/images/{AMD64_IMAGES}");
    let agent_path = format!("/mnt/ssd/k3s/agent/images/{AMD64_IMAGES}");

    let plan = s.plan().await;
    let text = step_text(&plan, "a1", StepId::K3sAirgapImages);
    assert!(
        text.contains(&agent_path) && text.contains("absent"),
        "{text}"
    );
    s.assert_nothing_written();

    let first = s.apply().await;
    assert!(!first.failed(), "{first:#?}");
    for (n, path) in [
        ("s1", &server_path),
        ("a1", &agent_path),
        ("a2", &agent_path),
    ] {
        assert_eq!(images(&s, n, path).as_deref(), Some(IMAGES), "{n}");
        let put = s.first(n, |c| matches!(c, Call::Put(p) if p == path));
        let start = s.first(
            n,
            |c| matches!(c, Call::Exec(e) if e.starts_with("start_unit")),
        );
        assert!(put < start, "{n}: the archive came after K3s was started");
        // K3s's watcher imports a new archive itself: no restart for it.
        let step = node(&first, n)
            .steps
            .iter()
            .find(|r| r.step == StepId::K3sAirgapImages);
        assert_eq!(step.map(|r| r.status), Some(Status::Changed), "{n}");
    }

    let second = s.plan().await;
    assert!(!second.changed(), "{second:#?}");

    // A tampered archive on a node is replaced, without a K3s restart.
    s.fleet
        .node("a2")
        .lock()
        .expect("node")
        .files
        .insert(agent_path.clone(), b"tampered".to_vec());
    let mended = s.apply().await;
    assert!(!mended.failed(), "{mended:#?}");
    assert_eq!(images(&s, "a2", &agent_path).as_deref(), Some(IMAGES));
    let restarted = node(&mended, "a2")
        .steps
        .iter()
        .any(|r| r.step == StepId::K3sService && r.status == Status::Changed);
    assert!(!restarted, "a new archive needs no restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_airgap_images_no_archive_is_fetched_or_installed() {
    let s = setup(1, 1).await;
    let first = s.apply().await;
    assert!(!first.failed(), "{first:#?}");
    let any = s
        .fleet
        .calls()
        .into_iter()
        .any(|(_, c)| matches!(c, Call::Put(p) if p.contains("k3s-airgap-images")));
    assert!(!any, "an archive was installed without airgap_images");
    let step = step_text(&first, "s1", StepId::K3sAirgapImages);
    assert!(
        step.contains("skipped") || step.contains("airgap_images is off"),
        "{step}"
    );
}
