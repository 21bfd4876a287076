//! The lab's host side: the Debian mirror its base image is built from comes
//! from the host's apt sources (a host case of the lab suite).

/// `lab debian-mirror` with `etc` as /etc/apt (and `over` as the override).
fn debian_mirror(etc: &std::path::Path, over: Option<&str>) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/lab");
    let mut cmd = std::process::Command::new(script);
    cmd.arg("debian-mirror").env("PICTL_LAB_APT_ETC", etc);
    match over {
        Some(m) => cmd.env("PICTL_LAB_DEBIAN_MIRROR", m),
        None => cmd.env_remove("PICTL_LAB_DEBIAN_MIRROR"),
    };
    let out = cmd.output().expect("lab debian-mirror");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn the_base_images_debian_mirror_comes_from_the_hosts_apt_sources() {
    let scratch = pictl_e2e::sim::Scratch::new("apt-etc");
    let etc = &scratch.0;
    let d = etc.join("sources.list.d");
    std::fs::create_dir(&d).expect("mkdir");
    // Nothing for bookworm: Debian's own mirror.
    assert_eq!(debian_mirror(etc, None), "http://deb.debian.org/debian");
    // One-line sources, options and all.
    std::fs::write(
        etc.join("sources.list"),
        "# deb http://old.example/debian bookworm main
         deb [arch=amd64 signed-by=/k.gpg] http://apt.lan/debian bookworm main
",
    )
    .expect("write");
    assert_eq!(debian_mirror(etc, None), "http://apt.lan/debian");
    // deb822 wins; security, source-only and disabled stanzas are not the mirror.
    std::fs::write(
        d.join("debian.sources"),
        "Types: deb\nURIs: http://sec.lan/debian-security\nSuites: bookworm-security\n\n\
         Types: deb-src\nURIs: http://src.lan/debian\nSuites: bookworm\n\n\
         Types: deb\nURIs: http://off.lan/debian\nSuites: bookworm\nEnabled: no\n\n\
         Types: deb\n# a comment\nURIs: http://mirror.lan/debian http://two.lan/debian\n\
         Suites: bookworm bookworm-updates\nComponents: main\n",
    )
    .expect("write");
    assert_eq!(debian_mirror(etc, None), "http://mirror.lan/debian");
    // The override stays.
    assert_eq!(
        debian_mirror(etc, Some("http://mine/debian")),
        "http://mine/debian"
    );
}
