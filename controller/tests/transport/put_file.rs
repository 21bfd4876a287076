//! `put_file`: atomic, verified and with its mode, hostile paths quoted,
//! relative paths refused, a wrong hash leaving the target untouched, a
//! stalled upload timing out, and large uploads streamed.

use super::*;

/// Paths that must survive the upload script's quoting.
fn hostile_dir(root: &Path) -> PathBuf {
    root.join("up load")
        .join("it's \"q\" $(x) `y`;*")
        .join("-n\nline")
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".pictl-"))
        .collect()
}

#[tokio::test]
async fn put_file_is_atomic_verified_and_sets_mode() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let dir = hostile_dir(sshd.dir.path());
    let target = dir.join("config $(id).yaml");
    let target_str = target.to_str().unwrap();

    let before = t.round_trips();
    t.put_file(b"first\n", target_str, 0o600, false)
        .await
        .unwrap();
    assert_eq!(t.round_trips() - before, 1, "an upload is one round trip");
    assert_eq!(std::fs::read(&target).unwrap(), b"first\n");
    assert_eq!(mode_of(&target), 0o600);

    let second: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    t.put_file(&second, target_str, 0o755, true).await.unwrap();
    assert!(std::fs::read(&target).unwrap() == second);
    assert_eq!(mode_of(&target), 0o755);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[tokio::test]
async fn stalled_upload_times_out_naming_node_and_path() {
    let sshd = sshd_or_skip!();
    let mut target = sshd.target(sshd.trusting_known_hosts());
    target.upload_timeout = Duration::from_secs(1);
    let t = SshTransport::connect(target).await.unwrap();
    let path = sshd.path("stalled.bin");
    let path = path.to_str().unwrap();
    sshd.stall_connections();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        t.put_file(&[7u8; 1000], path, 0o644, false),
    )
    .await
    .expect("the upload deadline should end the upload, not the test's own timeout");
    let err = result.unwrap_err();
    assert!(
        matches!(err, TransportError::CommandTimeout { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("node 1 $(x)") && msg.contains(path), "{msg}");
    assert!(!err.is_unreachable());
    // 1 s plus one second for the 1000 bytes at the minimum rate.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn put_file_rejects_relative_paths() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let err = t
        .put_file(b"x", "relative/file", 0o644, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Upload { status: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn upload_with_wrong_hash_leaves_target_untouched() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let dir = hostile_dir(sshd.dir.path());
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("k3s");
    std::fs::write(&target, b"old binary").unwrap();
    let target_str = target.to_str().unwrap();

    // The real upload script, told to expect a hash the data cannot have
    // (what a corrupted transfer looks like to the node).
    let claimed = upload::sha256_hex(b"what we meant to send");
    let out = t
        .exec(
            &upload::put_command(target_str, 0o755, &claimed, 12, false)
                .stdin(b"what arrived".to_vec()),
        )
        .await
        .unwrap();
    let err = upload::check_put("node 1 $(x)", target_str, &claimed, &out).unwrap_err();
    match &err {
        TransportError::UploadVerify {
            expected, actual, ..
        } => {
            assert_eq!(expected, &claimed);
            assert_eq!(actual, &upload::sha256_hex(b"what arrived"));
        }
        other => panic!("expected UploadVerify, got {other:?}"),
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"old binary");
    assert!(leftovers(&dir).is_empty(), "temp file left behind");
}

#[tokio::test]
async fn large_upload_streams_and_verifies() {
    let sshd = sshd_or_skip!();
    let t = sshd.connect().await;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..32 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let target = sshd.path("k3s");
    let started = Instant::now();
    t.put_file(&data, target.to_str().unwrap(), 0o755, false)
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "uploaded {} MiB in {:?} ({:.0} MiB/s)",
        data.len() >> 20,
        took,
        (data.len() >> 20) as f64 / took.as_secs_f64()
    );
    let mut written = Vec::new();
    std::fs::File::open(&target)
        .unwrap()
        .read_to_end(&mut written)
        .unwrap();
    assert!(written == data, "uploaded bytes differ");
}
