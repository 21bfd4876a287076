//! Facts: parsing, and the script run locally (see [`super::SCRIPT`]).

use super::*;

fn enc(k: &str, v: &str) -> String {
    record(k, v)
}

fn sample() -> String {
    [
        enc("uname", "aarch64"),
        enc("os", "Debian GNU/Linux 12 (bookworm)"),
        enc("model", "Raspberry Pi 4 Model B Rev 1.4"),
        enc("machine_id", "0123456789abcdef0123456789abcdef"),
        enc("hostname", "boolayan"),
        enc("boot_id", "b1"),
        enc("now", "1000"),
        enc("cgroup2", "cpuset cpu io pids"),
        enc("kernel", "6.12.25+rpt-rpi-v8"),
        enc("cgroup1", " cpuset cpu memory pids"),
        enc("cmdline_path", "/boot/firmware/cmdline.txt"),
        enc("cmdline", "console=tty1 root=PARTUUID=1 rootwait"),
        enc("k3s_version", "k3s version v1.32.5+k3s1 (8e8f2a47)"),
        enc("file", "/usr/local/bin/k3s abc123"),
        enc("meta", "/usr/local/bin/k3s 755 0 0"),
        enc("file", "/etc/rancher/k3s/config.yaml fff"),
        enc("meta", "/etc/rancher/k3s/config.yaml 644 1000 4"),
        enc("started_with", "abc123  /usr/local/bin/k3s\nfff  /etc/rancher/k3s/config.yaml\n"),
        enc(
            "unit",
            "k3s.service LoadState=loaded ActiveState=active UnitFileState=enabled NeedDaemonReload=no ",
        ),
        enc("token", "K10aa::server:s3cret"),
    ]
    .concat()
}

#[test]
fn without_a_cgroup_v2_root_the_enabled_v1_controllers_count() {
    let v1 = sample().replace(&enc("cgroup2", "cpuset cpu io pids"), &enc("cgroup2", ""));
    let f = Facts::parse(&v1, 998).expect("facts");
    assert!(f.memory_cgroup());
    assert_eq!(f.cgroup_controllers, ["cpuset", "cpu", "memory", "pids"]);
}

#[test]
fn parses_a_pi_without_memory_cgroup() {
    let f = Facts::parse(&sample(), 998).expect("facts");
    assert_eq!(f.arch, Ok(Arch::Arm64));
    assert_eq!(
        f.pi_model.as_deref(),
        Some("Raspberry Pi 4 Model B Rev 1.4")
    );
    assert!(!f.memory_cgroup(), "cgroup v2's root list wins over v1's");
    assert_eq!(f.cgroup_controllers, ["cpuset", "cpu", "io", "pids"]);
    assert_eq!(f.kernel, "6.12.25+rpt-rpi-v8");
    assert_eq!(f.clock_skew, 2);
    assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
    assert_eq!(f.file_sha(paths::K3S_BIN), Some("abc123"));
    assert_eq!(
        f.started_with.get(paths::CONFIG).map(String::as_str),
        Some("fff")
    );
    let unit = f.unit("k3s.service");
    assert!(unit.active && unit.enabled && !unit.need_daemon_reload && unit.loaded);
    assert!(!f.unit("k3s-agent.service").active);
    assert_eq!(
        f.server_token.as_ref().map(Secret::expose),
        Some("K10aa::server:s3cret")
    );
}

#[test]
fn clocks_at_the_edges_of_i64_saturate_instead_of_overflowing() {
    let (min, max) = (i64::MIN, i64::MAX);
    for (node_now, controller_now, skew) in [
        (max.to_string(), min, max),
        (min.to_string(), max, min),
        (min.to_string(), 1, min),
        (max.to_string(), -1, max),
        (max.to_string(), max, 0),
        (min.to_string(), min, 0),
        ("0".to_string(), min, max),
        ("-1".to_string(), max, min),
        // Not an i64: the node's clock is unknown, so no skew is claimed.
        ("99999999999999999999999".to_string(), max, 0),
        ("-99999999999999999999999".to_string(), min, 0),
        ("1e18".to_string(), 5, 0),
    ] {
        let out = sample().replace(&enc("now", "1000"), &enc("now", &node_now));
        let f = Facts::parse(&out, controller_now).expect("facts");
        assert_eq!(
            f.clock_skew, skew,
            "node {node_now}, controller {controller_now}"
        );
    }
}

#[test]
fn the_datastore_is_etcd_sqlite_or_none() {
    let f = Facts::parse(&sample(), 1000).expect("facts");
    assert_eq!(f.datastore, None);
    for (word, want) in [("etcd", Datastore::Etcd), ("sqlite", Datastore::Sqlite)] {
        let out = format!("{}\n{}", sample(), enc("datastore", word));
        let f = Facts::parse(&out, 1000).expect("facts");
        assert_eq!(f.datastore, Some(want));
    }
    // The script asks in K3s's order: an initialized etcd wins over state.db.
    let etcd = SCRIPT.find("e datastore etcd").expect("etcd line");
    let sqlite = SCRIPT.find("e datastore sqlite").expect("sqlite line");
    assert!(etcd < sqlite && SCRIPT.contains("db/etcd/member/wal"));
}

#[test]
fn parses_each_files_mode_and_owner() {
    let f = Facts::parse(&sample(), 1000).expect("facts");
    assert_eq!(f.file_meta(paths::K3S_BIN), Some(FileMeta::root(0o755)));
    assert_eq!(
        f.file_meta(paths::CONFIG),
        Some(FileMeta {
            mode: 0o644,
            uid: 1000,
            gid: 4
        })
    );
    assert_eq!(f.file_meta(paths::SERVER_UNIT), None);
    // setuid and sticky bits are kept, not cut to three digits.
    assert_eq!(FileMeta::parse("4755 0 0"), Some(FileMeta::root(0o4755)));
}

/// The script itself, run locally read-only (the same sh, coreutils
/// and stat as a Debian node): what it reports for a file parses.
#[test]
fn the_scripts_modes_parse() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "token: x\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", SCRIPT, "pictl", "no-secrets", "no-record"])
        .arg(&file)
        .output()
        .expect("sh");
    let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
    let path = file.to_string_lossy();
    let meta = f.file_meta(&path).expect("reported");
    assert_eq!(meta.mode, 0o640);
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&file).expect("stat");
    assert_eq!((meta.uid, meta.gid), (md.uid(), md.gid()));
    assert_eq!(
        f.file_sha(&path),
        Some(crate::artifacts::sha256_hex(b"token: x\n").as_str())
    );
}

/// A scratch node for running the script locally: pictl's record
/// directory and the K3s binary moved under a temp dir, and every
/// program the script starts logged by a shim on `PATH`.
pub(super) struct Scratch {
    dir: tempfile::TempDir,
    pub(super) script: String,
}

impl Scratch {
    pub(super) fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().to_string_lossy().into_owned();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        let shims = [
            "uname",
            "date",
            "stat",
            "sha256sum",
            "systemctl",
            "hostname",
            "mkdir",
            "chmod",
            "mv",
        ];
        for p in shims {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| format!("{d}/{p}"))
                .find(|f| std::path::Path::new(f).exists())
                .unwrap_or_else(|| format!("/bin/{p}"));
            let shim = format!("#!/bin/sh\necho {p} >>{root}/programs\nexec {real} \"$@\"\n");
            std::fs::write(bin.join(p), shim).expect("shim");
            std::fs::set_permissions(bin.join(p), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let k3s = format!(
            "#!/bin/sh\necho k3s >>{root}/programs\necho 'k3s version v1.32.5+k3s1 (8e8f2a47)'\necho 'go version go1.23'\n"
        );
        std::fs::write(dir.path().join("k3s"), k3s).expect("k3s");
        std::fs::set_permissions(
            dir.path().join("k3s"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        let script = SCRIPT
            .replace("/var/lib/pictl", &format!("{root}/lib"))
            .replace(paths::K3S_BIN, &format!("{root}/k3s"));
        Self { dir, script }
    }

    pub(super) fn path(&self, p: &str) -> String {
        self.dir.path().join(p).to_string_lossy().into_owned()
    }

    /// Runs the script; returns the facts and the programs it started.
    fn run(&self, record: &str, files: &[String]) -> (Facts, Vec<String>) {
        let _ = std::fs::remove_file(self.path("programs"));
        let args = ["no-secrets", record]
            .into_iter()
            .chain(files.iter().map(String::as_str));
        let out = crate::test_sh::run(&self.script, args, &self.path("bin"));
        let facts = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
        let programs = std::fs::read_to_string(self.path("programs")).unwrap_or_default();
        (facts, programs.lines().map(String::from).collect())
    }
}

#[test]
fn hashes_and_the_k3s_version_are_served_from_the_cache() {
    let node = Scratch::new();
    let (k3s, conf) = (node.path("k3s"), node.path("config.yaml"));
    std::fs::write(&conf, "a: 1\n").expect("write");
    let files = [k3s.clone(), conf.clone()];
    let (f, first) = node.run("record", &files);
    assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
    let real = crate::artifacts::sha256_hex(b"a: 1\n");
    assert_eq!(f.file_sha(&conf), Some(real.as_str()));
    assert_eq!(
        first.iter().filter(|p| *p == "sha256sum").count(),
        2,
        "{first:?}"
    );
    assert!(first.contains(&"k3s".to_string()), "{first:?}");
    // A hit: neither K3s nor sha256sum runs, and nothing is rewritten.
    let (f, again) = node.run("record", &files);
    assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
    assert_eq!(f.file_sha(&conf), Some(real.as_str()));
    assert_eq!(again, ["uname", "date", "stat", "systemctl", "hostname"]);
    // What is reported on a hit is the cache's word (proof it was used) ...
    let cache = std::fs::read_to_string(node.path("lib/hashes")).expect("cache");
    std::fs::write(node.path("lib/hashes"), cache.replace(&real, "feed")).expect("poison");
    let (f, _) = node.run("no-record", &files);
    assert_eq!(f.file_sha(&conf), Some("feed"));
    // ... and a changed file (new ctime) is hashed again.
    std::fs::write(&conf, "a: 2\n").expect("write");
    let (f, changed) = node.run("no-record", &files);
    let now = crate::artifacts::sha256_hex(b"a: 2\n");
    assert_eq!(f.file_sha(&conf), Some(now.as_str()));
    assert_eq!(
        changed.iter().filter(|p| *p == "sha256sum").count(),
        1,
        "{changed:?}"
    );
}

/// The cache is read in order (each entry the next line), but an entry
/// out of that order is still found: a new file between two cached ones,
/// and a cache whose lines were shuffled, hash only the new file.
#[test]
fn cached_hashes_are_found_out_of_order_too() {
    let node = Scratch::new();
    let (k3s, a, b) = (node.path("k3s"), node.path("a.yaml"), node.path("b.yaml"));
    std::fs::write(&a, "a: 1\n").expect("write");
    std::fs::write(&b, "b: 1\n").expect("write");
    node.run("record", &[k3s.clone(), a.clone()]);
    let cache = std::fs::read_to_string(node.path("lib/hashes")).expect("cache");
    let mut lines: Vec<&str> = cache.lines().collect();
    lines.reverse();
    std::fs::write(node.path("lib/hashes"), lines.join("\n") + "\n").expect("shuffle");
    let (f, programs) = node.run("record", &[k3s.clone(), b.clone(), a.clone()]);
    let hashed = programs.iter().filter(|p| *p == "sha256sum").count();
    assert_eq!(hashed, 1, "{programs:?}");
    assert!(!programs.contains(&"k3s".to_string()), "{programs:?}");
    assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
    for (path, body) in [(&a, "a: 1\n"), (&b, "b: 1\n")] {
        let want = crate::artifacts::sha256_hex(body.as_bytes());
        assert_eq!(f.file_sha(path), Some(want.as_str()), "{path}");
    }
    // The rewritten cache is in lookup order again: a re-run hashes nothing.
    let (_, again) = node.run("no-record", &[k3s, b, a]);
    assert!(!again.contains(&"sha256sum".to_string()), "{again:?}");
}

/// A large upload records the hash it verified in the facts cache: the
/// re-check after the run reads it instead of hashing the file again. A
/// small one does not (hashing it costs less), nor one without the flag.
#[test]
fn a_large_upload_is_not_hashed_again_by_the_next_facts_run() {
    use std::io::Write;
    let node = Scratch::new();
    node.run("record", &[]); // the first gather makes pictl's record dir
    let put = crate::transport::upload::PUT_SCRIPT.replace("/var/lib/pictl", &node.path("lib"));
    let upload = |name: &str, data: &[u8], keep: &str| {
        let target = node.path(name);
        let want = crate::artifacts::sha256_hex(data);
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", &put, "pictl", &target, "0755", &want, keep])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
        assert!(child.wait().expect("wait").success());
        (target, want)
    };
    let (big, big_sha) = upload("k3s-new", &[7u8; 4096], "yes");
    let (small, small_sha) = upload("small.conf", b"a: 1\n", "no");
    let (f, programs) = node.run("no-record", &[big.clone(), small.clone()]);
    assert_eq!(f.file_sha(&big), Some(big_sha.as_str()));
    assert_eq!(f.file_sha(&small), Some(small_sha.as_str()));
    let hashed = programs.iter().filter(|p| *p == "sha256sum").count();
    assert_eq!(hashed, 1, "only the unrecorded file: {programs:?}");
    // The record is root's: the cache stays private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.path("lib/hashes"))
        .expect("cache")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn the_script_reads_files_with_builtins_exactly_as_cat_would() {
    let node = Scratch::new();
    // Backslashes, leading spaces, no final newline, several trailing ones.
    let text = "  a\\b\n\tc=d\n\n\nlast";
    for (body, want) in [(text.to_string(), text), (format!("{text}\n\n\n"), text)] {
        std::fs::write(node.path("k3s.yaml"), &body).expect("write");
        let script = node
            .script
            .replace("/etc/rancher/k3s/k3s.yaml", &node.path("k3s.yaml"));
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "pictl", "secrets", "no-record"])
            .output()
            .expect("sh");
        let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
        assert_eq!(f.admin_kubeconfig.as_ref().map(Secret::expose), Some(want));
    }
}

#[test]
fn a_pi_model_ending_in_nul_is_read_by_the_shell_without_it() {
    let node = Scratch::new();
    // /proc/device-tree/model on a Pi: no newline, a NUL at the end.
    std::fs::write(node.path("model"), b"Raspberry Pi 4 Model B Rev 1.4\0").expect("write");
    let script = node
        .script
        .replace("/proc/device-tree/model", &node.path("model"));
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script, "pictl", "no-secrets", "no-record"])
        .output()
        .expect("sh");
    let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
    assert_eq!(
        f.pi_model.as_deref(),
        Some("Raspberry Pi 4 Model B Rev 1.4")
    );
}

#[test]
fn an_unreadable_mode_is_an_error_not_a_default() {
    let out = sample() + &enc("meta", "/usr/local/bin/k3s rwx 0 0");
    let err = Facts::parse(&out, 1000).expect_err("bad mode");
    assert!(err.to_string().contains("mode and owner"), "{err}");
}

#[test]
fn the_script_keeps_pictls_records_private() {
    assert!(SCRIPT.starts_with("set -u\numask 077\n"));
    assert!(SCRIPT.contains("chmod 700 /var/lib/pictl"));
    assert!(SCRIPT.contains("stat -c '%i %s %.9Z %a %u %g %n'"));
}

#[test]
fn missing_essentials_are_an_error_not_a_guess() {
    let err = Facts::parse(&enc("uname", "x86_64"), 0).expect_err("incomplete");
    assert!(err.to_string().contains("did not report"), "{err}");
    assert!(Facts::parse("uname\0", 0).is_err());
}

#[test]
fn unknown_arch_is_kept_as_an_error_naming_it() {
    let out = sample().replace(&enc("uname", "aarch64"), &enc("uname", "armv6l"));
    let f = Facts::parse(&out, 1000).expect("facts");
    assert!(f.arch.as_ref().is_err_and(|e| e.contains("armv6l")));
}

#[test]
fn a_symlinked_agent_token_means_the_server_has_none() {
    // K3s's printTokens: without a configured agent token, server/agent-token
    // (like node-token) is a symlink to server/token.
    // On an SSD, as a Pi booting from SD keeps it: `data-dir` in config.yaml.
    let node = Scratch::new();
    let data_dir = node.path("ssd/k3s");
    let server = format!("{data_dir}/server");
    std::fs::create_dir_all(&server).expect("mkdir");
    std::fs::write(
        node.path("config.yaml"),
        format!("data-dir: \"{data_dir}/\"\n"),
    )
    .expect("config");
    let token = format!("{server}/token");
    std::fs::write(&token, "K10abc::server:s3cret\n").expect("token");
    std::os::unix::fs::symlink(&token, format!("{server}/node-token")).expect("link");
    std::os::unix::fs::symlink(&token, format!("{server}/agent-token")).expect("link");
    let facts = || {
        let script = node
            .script
            .replace("/etc/rancher/k3s/config.yaml", &node.path("config.yaml"));
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "pictl", "secrets", "no-record"])
            .output()
            .expect("sh");
        Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts")
    };
    let f = facts();
    assert_eq!(
        f.server_token.as_ref().map(Secret::expose),
        Some("K10abc::server:s3cret")
    );
    assert!(f.agent_token.is_none(), "a symlink is no agent token");
    // A configured agent token is a file of its own.
    std::fs::remove_file(format!("{server}/agent-token")).expect("rm");
    std::fs::write(format!("{server}/agent-token"), "K10abc::node:agents\n").expect("write");
    assert_eq!(
        facts().agent_token.as_ref().map(Secret::expose),
        Some("K10abc::node:agents")
    );
}

#[test]
fn the_vxlan_module_is_found_loaded_or_in_the_kernels_module_lists() {
    let node = Scratch::new();
    let modules = node.path("modules");
    std::fs::write(node.path("osrelease"), "6.8.0-1004-raspi\n").expect("release");
    let facts = |loaded: bool| {
        let sys = if loaded {
            node.path("")
        } else {
            node.path("no-such")
        };
        let script = node
            .script
            .replace("/sys/module/vxlan", &sys)
            .replace("/lib/modules", &modules)
            .replace("/proc/sys/kernel/osrelease", &node.path("osrelease"));
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "pictl", "no-secrets", "no-record"])
            .output()
            .expect("sh");
        Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts")
    };
    // No module files to read: unknown, not missing.
    assert_eq!(facts(false).vxlan, None);
    assert_eq!(facts(false).kernel, "6.8.0-1004-raspi");
    let dir = format!("{modules}/6.8.0-1004-raspi");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Ubuntu's raspi kernel without linux-modules-extra-raspi.
    std::fs::write(
        format!("{dir}/modules.dep"),
        "kernel/fs/overlayfs/overlay.ko.zst:\n",
    )
    .expect("dep");
    assert_eq!(facts(false).vxlan, Some(false));
    assert_eq!(facts(true).vxlan, Some(true), "loaded or built in");
    std::fs::write(
        format!("{dir}/modules.dep"),
        "kernel/drivers/net/vxlan/vxlan.ko.zst: kernel/net/ipv4/udp_tunnel.ko.zst\n",
    )
    .expect("dep");
    assert_eq!(facts(false).vxlan, Some(true));
}

/// The data-dir line K3s would use (drop-ins after config.yaml, by name)
/// and kubectl/crictl/ctr as install.sh's `create_symlinks` sees them: a
/// dangling link is missing (to be replaced), a file that is no command
/// is taken (left).
#[test]
fn the_data_dir_and_the_tools_to_link_are_reported() {
    let mut node = Scratch::new();
    let (etc, local) = (node.path("etc-k3s"), node.path("local-bin"));
    std::fs::create_dir_all(format!("{etc}/config.yaml.d")).expect("mkdir");
    std::fs::create_dir_all(&local).expect("mkdir");
    std::fs::write(
        format!("{etc}/config.yaml"),
        "# Managed by pictl\ntoken: x\ndata-dir: /cfg\n",
    )
    .expect("write");
    std::fs::write(
        format!("{etc}/config.yaml.d/50-ssd.yaml"),
        "data-dir: \"/mnt/ssd/k3s\"\n",
    )
    .expect("write");
    std::fs::write(
        format!("{etc}/config.yaml.d/10-first.yaml"),
        "data-dir: /no\n",
    )
    .expect("write");
    std::os::unix::fs::symlink("/nowhere", format!("{local}/kubectl")).expect("link");
    std::fs::write(format!("{local}/crictl"), "no program").expect("write");
    node.script = node
        .script
        .replace("/etc/rancher/k3s/", &format!("{etc}/"))
        .replace("/usr/local/bin/", &format!("{local}/"));
    let (f, _) = node.run("no-record", &[]);
    assert_eq!(f.data_dir_config.as_deref(), Some("/mnt/ssd/k3s"));
    assert_eq!(f.tools_missing, ["kubectl", "ctr"]);
    assert_eq!(f.tools_taken, ["crictl"]);
    assert_eq!(crate::data_dir::on_node(&f), "/mnt/ssd/k3s");
}

/// The one parser of `data-dir:` (the shell's): YAML's plain scalar up to
/// a ` #` comment, or a quoted one; relative values are reported as they
/// are (the reset refuses them), never used to find the token.
#[test]
fn the_data_dir_value_is_read_plain_or_quoted() {
    let node = Scratch::new();
    let config = node.path("config.yaml");
    let script = node.script.replace("/etc/rancher/k3s/config.yaml", &config);
    for (line, want) in [
        ("data-dir: /srv/k3s", "/srv/k3s"),
        ("data-dir:   /srv/k3s   # on the SSD", "/srv/k3s"),
        ("data-dir: /srv/my k3s", "/srv/my k3s"),
        ("data-dir: /srv/k3s#1", "/srv/k3s#1"),
        ("\"data-dir\": \"/srv/k3s\"", "/srv/k3s"),
        ("'data-dir': '/mnt/ssd/k3s' # quoted", "/mnt/ssd/k3s"),
        ("data-dir: relative/k3s", "relative/k3s"),
    ] {
        std::fs::write(&config, format!("{line}\n")).expect("config");
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "pictl", "no-secrets", "no-record"])
            .output()
            .expect("sh");
        let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
        assert_eq!(f.data_dir_config.as_deref(), Some(want), "{line}");
    }
}

#[test]
fn the_server_pictls_config_joined_is_reported_and_a_foreign_ones_is_not() {
    let node = Scratch::new();
    let config = node.path("config.yaml");
    let script = node.script.replace("/etc/rancher/k3s/config.yaml", &config);
    let joined = |text: &str| {
        std::fs::write(&config, text).expect("config");
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "pictl", "no-secrets", "no-record"])
            .output()
            .expect("sh");
        let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
        f.joined
    };
    let managed = "# Managed by pictl: edits are reverted by the next `pictl apply`.\n";
    let url = "https://10.0.0.2:6443";
    let text = format!("{managed}node-name: s1\nserver: {url}\ntoken: K10abc::server:x\n");
    assert_eq!(joined(&text).as_deref(), Some(url));
    let init = format!("{managed}node-name: s1\ntoken: x\ncluster-init: true\n");
    assert_eq!(joined(&init), None);
    // install.sh's or a hand-written config is adoption's business.
    assert_eq!(joined(&format!("server: {url}\n")), None);
}
