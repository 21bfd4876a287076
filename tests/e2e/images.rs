//! The image-architecture preflight against a real registry protocol on
//! loopback (tests/src/registry.rs): token dance, indexes, single-platform
//! manifests with config blobs, digest pinning, node selectors. The playson
//! incident, an amd64-only image meeting arm64 Pis, is the case that matters.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pictl::arch::Arch;
use pictl::workload::Manifest;
use pictl::workload::images::{Registry, check};
use pictl_e2e::registry;

fn deployment(image: &str, arch_selector: Option<&str>) -> Manifest {
    let mut spec = serde_json::json!({ "containers": [{ "name": "app", "image": image }] });
    if let Some(a) = arch_selector {
        spec["nodeSelector"] = serde_json::json!({ "kubernetes.io/arch": a });
    }
    Manifest {
        source: PathBuf::from("deployment.yaml"),
        object: serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "demo" },
            "spec": { "template": { "spec": spec } },
        }),
    }
}

fn pis() -> BTreeMap<Arch, Vec<String>> {
    BTreeMap::from([
        (Arch::Amd64, vec!["laptop".to_string()]),
        (
            Arch::Arm64,
            vec![
                "boolayan-worker1".to_string(),
                "boolayan-worker2".to_string(),
            ],
        ),
    ])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_multi_arch_index_runs_on_every_node() {
    let reg = registry::Registry::start().expect("registry");
    let image = reg.push_index(
        "mccutchen/go-httpbin",
        "v2.8.0",
        &["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
    );
    let mut nodes = pis();
    nodes.insert(Arch::Armhf, vec!["pi3".into()]);
    let f = runtime().block_on(check(
        &Registry::default(),
        &[deployment(&image, None)],
        &nodes,
    ));
    assert!(f.incompatible.is_empty() && f.unknown.is_empty(), "{f:?}");
    assert!(
        reg.token_requests() >= 1,
        "the bearer-token dance was not exercised"
    );
}

#[test]
fn an_amd64_only_image_is_refused_for_arm64_pis() {
    let reg = registry::Registry::start().expect("registry");
    let image = reg.push_single("kennethreitz/httpbin", "latest", "linux", "amd64");
    let f = runtime().block_on(check(
        &Registry::default(),
        &[deployment(&image, None)],
        &pis(),
    ));
    assert_eq!(f.incompatible.len(), 1, "{f:?}");
    let msg = &f.incompatible[0];
    assert!(
        msg.contains("in Deployment demo/web offers only linux/amd64"),
        "{msg}"
    );
    assert!(
        msg.contains("cannot run on boolayan-worker1, boolayan-worker2 (arm64)"),
        "{msg}"
    );
    assert!(!msg.contains("laptop"), "{msg}");
}

#[test]
fn a_node_selector_pinning_the_arch_is_respected() {
    let reg = registry::Registry::start().expect("registry");
    let image = reg.push_single("team/amd64-tool", "1.0", "linux", "amd64");
    let f = runtime().block_on(check(
        &Registry::default(),
        &[deployment(&image, Some("amd64"))],
        &pis(),
    ));
    assert!(f.incompatible.is_empty() && f.unknown.is_empty(), "{f:?}");
}

#[test]
fn a_pinned_manifest_that_does_not_match_its_digest_is_not_trusted() {
    let reg = registry::Registry::start().expect("registry");
    let image = reg.push_index("team/app", "1.0", &["linux/amd64", "linux/arm64"]);
    reg.tamper("team/app", &image);
    let f = runtime().block_on(check(
        &Registry::default(),
        &[deployment(&image, None)],
        &pis(),
    ));
    assert!(f.incompatible.is_empty(), "{f:?}");
    assert_eq!(f.unknown.len(), 1, "{f:?}");
    assert!(
        f.unknown[0].contains("not the pinned sha256:"),
        "{}",
        f.unknown[0]
    );
}

#[test]
fn an_unreachable_registry_leaves_the_image_unknown_not_incompatible() {
    // Port 1 on loopback: nothing listens there.
    let f = runtime().block_on(check(
        &Registry::default(),
        &[deployment("127.0.0.1:1/team/app:1.0", None)],
        &pis(),
    ));
    assert!(f.incompatible.is_empty(), "{f:?}");
    assert_eq!(f.unknown.len(), 1, "{f:?}");
}
