use super::*;

fn need(node: &str, arch: Arch, k3s: bool, agent: bool) -> Need {
    Need {
        node: node.into(),
        arch,
        k3s,
        agent,
        images: false,
        agent_available: true,
    }
}

#[test]
fn one_seed_per_arch_the_first_node_that_needs_k3s() {
    let needs = [
        need("s1", Arch::Amd64, false, false),
        need("a1", Arch::Arm64, true, true),
        need("a2", Arch::Amd64, true, true),
        need("a3", Arch::Arm64, true, false),
        need("a4", Arch::Amd64, true, true),
        need("a5", Arch::Armhf, true, true),
    ];
    let got = choose(&needs);
    assert_eq!(
        got,
        vec![
            ArchRelay {
                arch: Arch::Amd64,
                seed: "a2".into(),
                staged: vec![Artifact::K3s, Artifact::Agent],
                k3s: vec!["a4".into()],
                agent: vec!["a4".into()],
                images: vec![],
            },
            ArchRelay {
                arch: Arch::Arm64,
                seed: "a1".into(),
                staged: vec![Artifact::K3s, Artifact::Agent],
                k3s: vec!["a3".into()],
                agent: vec![],
                images: vec![],
            },
        ],
        "armhf has one node: a direct upload"
    );
}

#[test]
fn an_arch_whose_nodes_need_only_the_image_archive_is_relayed_without_k3s() {
    let mut needs = vec![
        need("s1", Arch::Arm64, false, false),
        need("a1", Arch::Arm64, false, false),
        need("a2", Arch::Arm64, false, false),
    ];
    for n in &mut needs[1..] {
        n.images = true;
    }
    assert_eq!(
        choose(&needs),
        vec![ArchRelay {
            arch: Arch::Arm64,
            seed: "a1".into(),
            staged: vec![Artifact::Agent, Artifact::AirgapImages],
            k3s: vec![],
            agent: vec![],
            images: vec!["a2".into()],
        }],
        "K3s is converged everywhere: nothing of it crosses the link"
    );
}

#[test]
fn an_arch_without_an_agent_binary_is_not_relayed() {
    let mut needs = vec![
        need("a1", Arch::Arm64, true, true),
        need("a2", Arch::Arm64, true, true),
    ];
    needs[1].agent_available = false;
    assert_eq!(choose(&needs), vec![]);
}

#[test]
fn urls_and_names_come_from_one_random_id_per_run() {
    let (a, b) = (Share::new(), Share::new());
    assert_ne!(a.id, b.id);
    assert_eq!(a.id.len(), 32);
    let v4 = a.url("10.0.0.5".parse().unwrap(), 4242, Artifact::K3s);
    assert_eq!(v4, format!("http://10.0.0.5:4242/{}/k3s", a.id));
    let v6 = a.url("fd00::5".parse().unwrap(), 1, Artifact::Agent);
    assert_eq!(v6, format!("http://[fd00::5]:1/{}/pictl-agent", a.id));
    assert!(a.staged(Artifact::K3s).starts_with("/var/lib/pictl-relay/"));
    assert!(a.unit().starts_with("pictl-share-"));
}

#[test]
fn start_command_quotes_every_word_and_serves_only_the_staged_files() {
    let share = Share {
        id: "0123456789abcdef0123456789abcdef".into(),
    };
    let peers = ["10.0.0.6".parse().unwrap(), "fd00::7".parse().unwrap()];
    let cmd = start_command(
        &share,
        "10.0.0.5".parse().unwrap(),
        &[Artifact::K3s],
        &peers,
        true,
    );
    let args = cmd.arguments();
    assert_eq!(args[0], "-c");
    assert_eq!(args[1], START_SCRIPT);
    assert_eq!(
        &args[3..],
        [
            "/var/lib/pictl-relay/0123456789ab",
            "pictl-share-0123456789ab",
            "10.0.0.5:0",
            "1800",
            "10.0.0.6 fd00::7",
            "--file",
            "/0123456789abcdef0123456789abcdef/k3s=/var/lib/pictl-relay/0123456789ab/k3s",
        ]
    );
    assert!(cmd.needs_sudo());
}

fn out(status: i32, stdout: &str, stderr: &str) -> Output {
    Output {
        status,
        signal: None,
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

#[test]
fn address_and_port_are_read_strictly() {
    let a = parse_address(&out(0, "10.0.0.1 50000 10.0.0.11 22\n", ""));
    assert_eq!(a, Some("10.0.0.11".parse().unwrap()));
    assert_eq!(parse_address(&out(0, "\n", "")), None);
    assert_eq!(parse_address(&out(0, "a b c; rm d", "")), None);
    assert_eq!(parse_port(&out(0, "41234\n", "")), Some(41234));
    assert_eq!(parse_port(&out(0, "0\n", "")), None);
    assert_eq!(parse_port(&out(0, "port\n", "")), None);
}

#[test]
fn fetch_results_say_why_nothing_was_installed() {
    let e = fetch_result("aa", &out(86, "", "pictl-sha256-mismatch bb\n")).unwrap_err();
    assert!(
        matches!(e, FetchError::Mismatch { ref actual, .. } if actual == "bb"),
        "{e}"
    );
    assert!(e.to_string().contains("refused, nothing installed"));
    assert!(matches!(
        fetch_result("aa", &out(87, "", "")),
        Err(FetchError::NoCurl)
    ));
    let e = fetch_result("aa", &out(88, "", "curl: (7) Failed to connect\n")).unwrap_err();
    assert!(e.to_string().contains("Failed to connect"), "{e}");
    assert!(fetch_result("aa", &out(0, "", "")).is_ok());
}

/// Runs the install script locally: the same /bin/sh and coreutils as a
/// Debian node.
fn run_install(target: &std::path::Path, want: &str, from: &str) -> Output {
    let o = std::process::Command::new("/bin/sh")
        .args(["-c", INSTALL_SCRIPT, "pictl"])
        .arg(target)
        .args(["0755", want, from, "1000000", "20"])
        .output()
        .unwrap();
    out(
        o.status.code().unwrap_or(-1),
        "",
        &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn install_script_installs_a_matching_copy_and_refuses_a_tampered_one() {
    use crate::transport::upload::sha256_hex;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let staged = dir.path().join("staged");
    std::fs::write(&staged, b"release bytes").unwrap();
    let target = dir.path().join("bin/k3s");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, b"old").unwrap();
    let want = sha256_hex(b"release bytes");
    // Tampered: one byte more than the release.
    std::fs::write(&staged, b"release bytes!").unwrap();
    let r = fetch_result(
        &want,
        &run_install(&target, &want, staged.to_str().unwrap()),
    );
    assert!(matches!(r, Err(FetchError::Mismatch { .. })), "{r:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"old", "nothing installed");
    assert_eq!(
        std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
        1,
        "temp removed"
    );
    std::fs::write(&staged, b"release bytes").unwrap();
    let r = fetch_result(
        &want,
        &run_install(&target, &want, staged.to_str().unwrap()),
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"release bytes");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn install_script_fetches_over_http_and_checks_the_hash() {
    use crate::transport::upload::sha256_hex;
    use std::io::{Read, Write};
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is needed for this test (the nodes have it)");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbytes",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("k3s");
    let url = format!("http://{addr}/id/k3s");
    let r = fetch_result("x", &run_install(&target, &sha256_hex(b"other"), &url));
    assert!(matches!(r, Err(FetchError::Mismatch { .. })), "{r:?}");
    assert!(!target.exists());
    let r = fetch_result("x", &run_install(&target, &sha256_hex(b"bytes"), &url));
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"bytes");
    // Nothing listens: a fetch failure, not a mismatch.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = fetch_result(
        "x",
        &run_install(&target, "x", &format!("http://{closed}/k3s")),
    );
    assert!(
        matches!(r, Err(FetchError::Failed { status: 88, .. })),
        "{r:?}"
    );
}

/// A seed that streams a body without a length, for ever: curl before 8.4
/// (Debian 12 and Pi OS bookworm ship 7.88) ignores `--max-filesize` for
/// it, so the cap must bound the write itself.
#[test]
fn a_copy_streamed_without_a_length_is_cut_at_the_cap_and_refused() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let head =
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            if s.write_all(head).is_err() {
                continue;
            }
            let chunk = [b'x'; 65536];
            while s.write_all(b"10000\r\n").is_ok()
                && s.write_all(&chunk).is_ok()
                && s.write_all(b"\r\n").is_ok()
            {}
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("k3s");
    let url = format!("http://{addr}/id/k3s");
    let r = fetch_result("x", &run_install(&target, "x", &url));
    assert!(matches!(r, Err(FetchError::TooLarge)), "{r:?}");
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp removed"
    );
}

/// The stop removes this run's staging dir and nothing of another run's
/// (another controller's, on the same seed); the root goes once empty.
#[test]
fn the_stop_removes_only_its_own_runs_copies() {
    use std::os::unix::fs::PermissionsExt;
    let share = Share::new();
    let cmd = stop_command(&share, false);
    assert_eq!(cmd.arguments()[4], share.dir(), "{:?}", cmd.arguments());
    let dir = tempfile::tempdir().unwrap();
    // A systemctl that only says what it was asked: the host's stays out of it.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("systemctl"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(
        bin.join("systemctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let root = dir.path().join("pictl-relay");
    let (ours, theirs) = (root.join("aaaaaaaaaaaa"), root.join("bbbbbbbbbbbb"));
    for d in [&ours, &theirs] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("k3s"), b"copy").unwrap();
    }
    let stop = |run: &std::path::Path| {
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let o = std::process::Command::new("/bin/sh")
            .args(["-c", STOP_SCRIPT, "pictl", "pictl-share-aaaaaaaaaaaa"])
            .arg(run)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    };
    stop(&ours);
    assert!(!ours.exists(), "our copies stayed");
    assert_eq!(
        std::fs::read(theirs.join("k3s")).unwrap(),
        b"copy",
        "another run's copy went"
    );
    stop(&theirs);
    assert!(!root.exists(), "the empty staging root stayed");
}
