//! The server itself: `--version`, the mirror's layout, the token,
//! kubeconfig and TLS it writes, and a restarted server keeping everything.

use super::*;

fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

pub fn version_format() {
    let out = Command::new(pictl_e2e::k3s::sim_bin())
        .arg("--version")
        .output()
        .expect("k3s --version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("k3s version v1.32.5+k3s1 ("), "{text}");
    assert!(
        lines[0].ends_with(')') && lines[1].starts_with("go version go1."),
        "{text}"
    );
}

pub fn mirror_layout_two_versions() {
    let dir = Scratch::new("mirror");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = here.join("k3s-sim/mirror.sh");
    // Idempotent: a second run rewrites nothing (same inode and mtime).
    let stamps = |dir: &Path| -> Vec<(u64, std::time::SystemTime)> {
        use std::os::unix::fs::MetadataExt;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("v1.32.5+k3s1"))
            .expect("mirror dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let m = std::fs::metadata(f).expect("stat");
                (m.ino(), m.modified().expect("mtime"))
            })
            .collect()
    };
    let mut seen = Vec::new();
    for _ in 0..2 {
        let st = Command::new(&script)
            .arg(&dir.0)
            .status()
            .expect("mirror.sh");
        assert!(st.success(), "mirror.sh failed");
        seen.push(stamps(&dir.0));
    }
    assert_eq!(seen[0], seen[1], "a second mirror.sh run rewrote files");
    let mut amd64 = Vec::new();
    for v in ["v1.32.5+k3s1", "v1.33.1+k3s1"] {
        let d = dir.0.join(v);
        for (sums, file) in [
            ("sha256sum-amd64.txt", "k3s"),
            ("sha256sum-arm64.txt", "k3s-arm64"),
            ("sha256sum-arm.txt", "k3s-armhf"),
        ] {
            let listed = std::fs::read_to_string(d.join(sums)).expect("sums file");
            let line = listed
                .lines()
                .find(|l| l.ends_with(&format!("  {file}")))
                .unwrap_or_else(|| panic!("{sums} lacks {file}: {listed}"));
            assert_eq!(
                line.split_whitespace().next(),
                Some(sha256_file(&d.join(file)).as_str()),
                "{v}/{sums}"
            );
        }
        let out = Command::new(d.join("k3s"))
            .arg("--version")
            .output()
            .expect("run mirrored k3s");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("k3s version {v} (")),
            "{v}: {text}"
        );
        amd64.push(sha256_file(&d.join("k3s")));
        // k3s-arm64 is never the host's binary: either a real aarch64 build
        // (which runs here only under qemu-user, and then knows its release),
        // or, without a cross toolchain, the host build stamped arm64, which
        // fails like a foreign binary.
        let arm = Command::new(d.join("k3s-arm64"))
            .arg("--version")
            .output()
            .expect("run arm64");
        let elf = std::fs::read(d.join("k3s-arm64")).expect("read k3s-arm64");
        if elf[18..20] == [183, 0] {
            let binfmt = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists();
            assert_eq!(arm.status.success(), binfmt, "{arm:?}");
            if binfmt {
                let text = String::from_utf8_lossy(&arm.stdout);
                assert!(text.starts_with(&format!("k3s version {v} (")), "{text}");
            }
        } else {
            assert!(!arm.status.success());
            assert!(String::from_utf8_lossy(&arm.stderr).contains("Exec format error"));
        }
    }
    assert_ne!(amd64[0], amd64[1], "the two versions' binaries must differ");

    // The amd64 demo's mirror: no cross build, the host build stamped for the
    // other arches (an x86-64 ELF named k3s-arm64).
    let demo = Scratch::new("mirror-demo");
    let st = Command::new(&script)
        .arg(&demo.0)
        .env("PICTL_MIRROR_CROSS", "")
        .status()
        .expect("mirror.sh");
    assert!(st.success(), "mirror.sh failed");
    for f in ["k3s", "k3s-arm64", "k3s-armhf"] {
        let elf = std::fs::read(demo.0.join("v1.32.5+k3s1").join(f)).expect("binary");
        assert_eq!(elf[18..20], [62, 0], "{f} is not the host (x86-64) build");
    }
}

pub fn server_writes_token_kubeconfig_and_real_tls() {
    let sim = Sim::start(
        "token: s3cret-token\nwrite-kubeconfig-mode: \"0640\"\ntls-san:\n  - pictl.example.test\n  - 10.99.0.1\nnode-label:\n  - pictl.io/role=edge\nnode-name: simserver\n",
        &[],
    );
    use std::os::unix::fs::PermissionsExt;
    let token_path = sim.path("data/server/token");
    let token = sim.token();
    let ca = std::fs::read(sim.path("data/server/tls/server-ca.crt")).expect("CA");
    let ca_hash = {
        let out = Command::new("sha256sum")
            .arg(sim.path("data/server/tls/server-ca.crt"))
            .output()
            .expect("sha");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert!(!ca.is_empty());
    assert_eq!(token, format!("K10{ca_hash}::server:s3cret-token"));
    assert_eq!(
        std::fs::metadata(&token_path)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let kc = sim.path("kubeconfig.yaml");
    assert_eq!(
        std::fs::metadata(&kc).expect("meta").permissions().mode() & 0o777,
        0o640
    );
    let kc_text = std::fs::read_to_string(&kc).expect("kubeconfig");
    assert!(
        kc_text.contains(&format!("server: https://127.0.0.1:{}", sim.port)),
        "{kc_text}"
    );
    assert!(
        kc_text.contains("client-certificate-data:")
            && kc_text.contains("certificate-authority-data:")
    );

    // The serving certificate's SANs, read by openssl.
    let serving = serving_cert(&sim);
    let sans = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&serving)
        .output()
        .expect("openssl");
    let sans = String::from_utf8_lossy(&sans.stdout);
    for want in [
        "IP Address:127.0.0.1",
        "DNS:pictl.example.test",
        "IP Address:10.99.0.1",
        "DNS:kubernetes.default.svc",
        "DNS:simserver",
    ] {
        assert!(sans.contains(want), "SANs lack {want}: {sans}");
    }
    // Verify the chain independently of our own code.
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(sim.path("data/server/tls/server-ca.crt"))
        .arg(&serving)
        .arg(sim.path("data/server/tls/client-admin.crt"))
        .output()
        .expect("openssl verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let nodes = sim.k(&["get", "nodes"]);
    let line = nodes
        .lines()
        .find(|l| l.starts_with("simserver "))
        .unwrap_or_else(|| panic!("{nodes}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "Ready", "{nodes}");
    assert_eq!(cols[2], "control-plane,master", "{nodes}");
    assert_eq!(cols[4], "v1.32.5+k3s1", "{nodes}");
    let node = json(&sim.k(&["get", "node", "simserver", "-o", "json"]));
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/hostname"], "simserver");
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
    assert_eq!(labels["node-role.kubernetes.io/master"], "true");
    assert_eq!(labels["pictl.io/role"], "edge");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.32.5+k3s1");
    assert!(
        node["status"]["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["type"] == "InternalIP"))
    );

    let version = json(&sim.k(&["get", "--raw", "/version"]));
    assert_eq!(version["gitVersion"], "v1.32.5+k3s1");
    let ns = sim.k(&["get", "namespaces", "-o", "name"]);
    for want in [
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
        "namespace/kube-node-lease",
    ] {
        assert!(ns.contains(want), "{ns}");
    }
    // Without a client certificate the API refuses, like the apiserver.
    let anon = sim.path("anon.yaml");
    let stripped: String = kc_text
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &anon,
        stripped.replace("  user:\n", "  user: {token: not-a-valid-token}\n"),
    )
    .expect("anon kubeconfig");
    let out = kubectl_with(&anon, &sim.path("kcache-anon"), &["get", "nodes"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provide credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a client that does not trust the cluster CA refuses the server.
    let insecure = kubectl_with(
        &kc,
        &sim.path("kcache-x"),
        &[
            "--certificate-authority=/etc/ssl/certs/ca-certificates.crt",
            "get",
            "nodes",
        ],
    );
    assert!(
        !insecure.status.success(),
        "server cert must not verify against system CAs"
    );
}

pub fn restarted_server_keeps_everything() {
    let config = "node-name: keeper\n";
    let sim = Sim::start(config, &[]);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep, namespace: default}\ndata: {a: b}\n";
    assert!(sim.apply(cm, &[]).status.success());
    let before = json(&sim.k(&["get", "cm", "keep", "-o", "json"]));
    let token = sim.token();
    let ca = std::fs::read(sim.path("data/server/tls/server-ca.crt")).expect("ca");
    let sim = sim.restart(config, &[]);
    let after = json(&sim.k(&["get", "cm", "keep", "-o", "json"]));
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    assert_eq!(sim.token(), token, "an existing token is kept");
    assert_eq!(
        std::fs::read(sim.path("data/server/tls/server-ca.crt")).expect("ca"),
        ca
    );
    // A different configured token is refused, like K3s's bootstrap data check.
    let Sim {
        dir,
        port,
        mut server,
    } = sim;
    server.stop();
    let mut other = Proc::spawn(
        &[
            "server",
            "-c",
            "/dev/null",
            "-d",
            dir.0.join("data").to_str().expect("utf8"),
            "--token",
            "different",
            "--https-listen-port",
            &port.to_string(),
            "--bind-address",
            "127.0.0.1",
            "--write-kubeconfig",
            dir.0.join("kc2.yaml").to_str().expect("utf8"),
            "--kubelet-arg",
            &format!("healthz-port={}", free_port()),
        ],
        &[(
            "K3S_SIM_NODE_ROOT",
            node_root(&dir.0.join("root-other"), ALL_CONTROLLERS)
                .to_str()
                .expect("utf8"),
        )],
        dir.0.join("other.log"),
    );
    assert_ne!(other.wait_exit(Duration::from_secs(20)), 0);
    assert!(
        other
            .log()
            .contains("bootstrap data already found and encrypted with different token"),
        "{}",
        other.log()
    );
}

// ---------------- lab case ----------------

/// The API port's certificate as dynamiclistener stores it
/// (`server/tls/dynamic-cert.json`, a Secret as JSON), written out as PEM.
pub fn serving_cert(sim: &Sim) -> PathBuf {
    use base64::Engine;
    let text = std::fs::read_to_string(sim.path("data/server/tls/dynamic-cert.json"))
        .expect("dynamic-cert.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["type"], "kubernetes.io/tls", "{v}");
    assert_eq!(v["metadata"]["name"], "k3s-serving", "{v}");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(v["data"]["tls.crt"].as_str().expect("tls.crt"))
        .expect("base64");
    let out = sim.path("serving.crt");
    std::fs::write(&out, pem).expect("write");
    out
}

/// The public key a served certificate carries, as openssl prints it.
fn public_key(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a client on the API port is shown (not the file): its public key.
fn served_public_key(sim: &Sim) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", sim.port))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").expect("its end") + 25;
    let pem = sim.path("served.crt");
    std::fs::write(&pem, &text[start..end]).expect("write");
    public_key(&pem)
}

pub fn a_new_san_keeps_the_serving_key_and_only_regenerate_replaces_it() {
    let config = "token: s3cret-token\nnode-name: simserver\n";
    let sim = Sim::start(config, &[]);
    let first = public_key(&serving_cert(&sim));
    assert_eq!(
        served_public_key(&sim),
        first,
        "the port serves the stored key"
    );

    // A new tls-san: dynamiclistener re-signs with the same key.
    let sim = sim.restart(&format!("{config}tls-san:\n  - pi.example.test\n"), &[]);
    let renamed = serving_cert(&sim);
    let sans = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&renamed)
        .output()
        .expect("openssl");
    assert!(String::from_utf8_lossy(&sans.stdout).contains("DNS:pi.example.test"));
    assert_eq!(public_key(&renamed), first, "a new SAN changed the key");
    assert_eq!(served_public_key(&sim), first);

    // K3s's regenerate file: a new key, the file removed.
    let regen = sim.path("data/server/tls/dynamic-cert-regenerate");
    std::fs::write(&regen, "").expect("touch");
    let sim = sim.restart(&format!("{config}tls-san:\n  - pi.example.test\n"), &[]);
    assert!(!regen.exists(), "the regenerate file is removed once seen");
    let new = public_key(&serving_cert(&sim));
    assert_ne!(new, first, "regenerate kept the key");
    assert_eq!(served_public_key(&sim), new);
}
