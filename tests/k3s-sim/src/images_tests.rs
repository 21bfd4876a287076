use super::*;

/// A ustar archive of `files`, as `docker save` writes one.
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..262].copy_from_slice(b"ustar");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn docker_archive(tags: &[&str]) -> Vec<u8> {
    docker_archive_sized(tags, 2000)
}

fn docker_archive_sized(tags: &[&str], layer: usize) -> Vec<u8> {
    let manifest = serde_json::json!([{
        "Config": "abc123.json",
        "RepoTags": tags,
        "Layers": ["l1/layer.tar"],
    }])
    .to_string();
    tar(&[
        ("abc123.json", b"{}"),
        ("l1/layer.tar", &vec![7u8; layer]),
        ("manifest.json", manifest.as_bytes()),
    ])
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

struct Dirs {
    _tmp: tempfile::TempDir,
    images: PathBuf,
    importer: Importer,
    store: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tmp");
    let images = tmp.path().join("agent/images");
    std::fs::create_dir_all(&images).expect("mkdir");
    let store = tmp.path().join("agent/containerd/store.json");
    Dirs {
        importer: Importer::new(images.clone(), store.clone()),
        images,
        store,
        _tmp: tmp,
    }
}

fn names(store: &Path) -> Vec<String> {
    load(store).into_keys().collect()
}

#[test]
fn a_zstd_archive_in_the_images_dir_is_imported_with_normalized_names() {
    let mut d = dirs();
    let archive = zst(&docker_archive(&[
        "rancher/mirrored-pause:3.6",
        "busybox:1.36",
    ]));
    std::fs::write(d.images.join("k3s-airgap-images-amd64.tar.zst"), archive).expect("write");
    d.importer.scan();
    assert_eq!(
        names(&d.store),
        [
            "docker.io/library/busybox:1.36",
            "docker.io/rancher/mirrored-pause:3.6"
        ]
    );
    let image = &load(&d.store)["docker.io/library/busybox:1.36"];
    assert_eq!(image.from, "k3s-airgap-images-amd64.tar.zst");
    assert_eq!(image.size, 2002);
}

#[test]
fn a_corrupt_archive_is_skipped_and_the_others_still_import() {
    let mut d = dirs();
    let mut broken = zst(&docker_archive(&["rancher/broken:1"]));
    broken.truncate(broken.len() / 2);
    std::fs::write(d.images.join("a-broken.tar.zst"), broken).expect("write");
    std::fs::write(d.images.join("b-not-a-tar.tar"), [1u8; 1024]).expect("write");
    // Not a supported extension: never opened.
    std::fs::write(d.images.join("c.tar.xz"), b"whatever").expect("write");
    let sub = d.images.join("more");
    std::fs::create_dir_all(&sub).expect("mkdir");
    std::fs::write(sub.join("ok.tar"), docker_archive(&["rancher/ok:2"])).expect("write");
    d.importer.scan();
    assert_eq!(names(&d.store), ["docker.io/rancher/ok:2"]);
    assert_eq!(d.importer.failed.len(), 2, "{:?}", d.importer.failed.keys());
    assert!(is_supported("x.tar.gz") && is_supported("x.txt") && !is_supported("x.TAR"));
}

#[test]
fn a_known_file_is_imported_again_only_when_its_size_changed_and_it_is_newer() {
    let mut d = dirs();
    let path = d.images.join("images.tar");
    std::fs::write(&path, docker_archive(&["rancher/one:1"])).expect("write");
    d.importer.scan();
    // Same size, newer: the watcher's rule leaves it.
    std::fs::write(&path, docker_archive(&["rancher/two:1"])).expect("write");
    let later = SystemTime::now() + Duration::from_secs(10);
    let f = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_modified(later).expect("mtime");
    d.importer.scan();
    assert_eq!(names(&d.store), ["docker.io/rancher/one:1"]);
    // Another size and newer: imported again.
    let bigger = docker_archive_sized(&["rancher/two:1", "rancher/three:1"], 5000);
    std::fs::write(&path, bigger).expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_modified(later + Duration::from_secs(10))
        .expect("mtime");
    d.importer.scan();
    assert!(names(&d.store).contains(&"docker.io/rancher/three:1".to_string()));
}

#[test]
fn a_pull_list_is_satisfied_only_by_images_already_imported() {
    let mut d = dirs();
    std::fs::write(d.images.join("a.tar"), docker_archive(&["rancher/ok:2"])).expect("write");
    std::fs::write(d.images.join("b.txt"), "docker.io/rancher/ok:2\n\n").expect("write");
    std::fs::write(d.images.join("c.txt"), "rancher/elsewhere:1\n").expect("write");
    d.importer.scan();
    let failed: Vec<&PathBuf> = d.importer.failed.keys().collect();
    assert_eq!(failed, [&d.images.join("c.txt")]);
}
