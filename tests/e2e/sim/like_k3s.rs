//! Starting like K3s: config keys and missing files, the cgroup checks,
//! Ready only once the API serves, and the multi-call names.

use super::*;

pub fn config_keys_and_missing_files_like_k3s() {
    // A server skips keys it does not know, with K3s's warning; a missing explicit
    // --config is not an error.
    let missing = std::env::temp_dir().join("k3s-sim-no-such-config.yaml");
    let sim = Sim::start(
        "node-name: a\nwrite-kubeconfig-mdoe: \"0644\"\n",
        &["--config", missing.to_str().expect("utf8")],
    );
    let _ = &sim;
    let sim2 = Sim::start("node-name: a\nwrite-kubeconfig-mdoe: \"0644\"\n", &[]);
    assert!(
        sim2.server
            .log()
            .contains("level=warning msg=\"Unknown flag --write-kubeconfig-mdoe found in config.yaml, skipping\\n\""),
        "{}",
        sim2.server.log()
    );
    let dir = Scratch::new("cfg");
    let run = |args: &[&str]| {
        let out = Command::new(pictl_e2e::k3s::sim_bin())
            .args(args)
            .env_remove("K3S_TOKEN")
            .env_remove("K3S_URL")
            .env_remove("K3S_CONFIG_FILE")
            .env(
                "K3S_SIM_NODE_ROOT",
                node_root(&dir.0.join("root"), ALL_CONTROLLERS),
            )
            .output()
            .expect("run k3s");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let data = dir.0.join("data");
    let data = data.to_str().expect("utf8");
    let cfg = dir.0.join("config.yaml");
    let (code, err) = run(&["server", "--no-such-flag"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("flag provided but not defined: -no-such-flag"),
        "{err}"
    );
    // An agent with neither config nor flags: K3s's own message.
    let (code, err) = run(&["agent", "-c", "/dev/null", "-d", data]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--token is required"), "{err}");
    std::fs::write(&cfg, "token: abc\n").expect("cfg");
    let (code, err) = run(&["agent", "-c", cfg.to_str().expect("utf8"), "-d", data]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--server is required"), "{err}");
    // The agent has no config-key filter: a server key is an undefined flag.
    std::fs::write(&cfg, "node-label: [a=b]\ntls-san: [x]\n").expect("cfg");
    let (code, err) = run(&["agent", "-c", cfg.to_str().expect("utf8"), "-d", data]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("flag provided but not defined: -tls-san"),
        "{err}"
    );
    // Drop-ins are read even when the main file is missing.
    let dropins = dir.0.join("absent.yaml.d");
    std::fs::create_dir_all(&dropins).expect("dropins");
    std::fs::write(dropins.join("10-token.yaml"), "token: abc\n").expect("dropin");
    let absent = dir.0.join("absent.yaml");
    let (code, err) = run(&["agent", "-c", absent.to_str().expect("utf8"), "-d", data]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--server is required"),
        "the drop-in's token was read: {err}"
    );
}

pub fn cgroup_checks_like_k3s() {
    let dir = Scratch::new("cg");
    let check = |root: &Path| {
        let out = Command::new(pictl_e2e::k3s::sim_bin())
            .arg("check-config")
            .env("K3S_SIM_NODE_ROOT", root)
            .output()
            .expect("check-config");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let good = node_root(&dir.0.join("good"), ALL_CONTROLLERS);
    let (code, out) = check(&good);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("STATUS: pass"), "{out}");
    // cgroup v2 without memory: the server dies with K3s's message.
    let nomem = node_root(&dir.0.join("nomem"), "cpuset cpu io pids");
    assert_eq!(check(&nomem).0, Some(1));
    let port = free_port().to_string();
    let mut srv = Proc::spawn(
        &[
            "server",
            "-c",
            "/dev/null",
            "-d",
            dir.0.join("data").to_str().expect("utf8"),
            "--https-listen-port",
            &port,
            "--bind-address",
            "127.0.0.1",
            "--write-kubeconfig",
            dir.0.join("kc.yaml").to_str().expect("utf8"),
            "--kubelet-arg",
            &format!("healthz-port={}", free_port()),
        ],
        &[("K3S_SIM_NODE_ROOT", nomem.to_str().expect("utf8"))],
        dir.0.join("srv.log"),
    );
    assert_eq!(srv.wait_exit(Duration::from_secs(20)), 1);
    assert!(
        srv.log()
            .contains("level=fatal msg=\"Error: failed to find memory cgroup (v2)\""),
        "{}",
        srv.log()
    );
    // cgroup v1 without memory: K3s's Raspberry Pi hint.
    let v1 = dir.0.join("v1");
    std::fs::create_dir_all(v1.join("proc/self")).expect("v1");
    std::fs::write(
        v1.join("proc/self/cgroup"),
        "5:pids:/\n4:cpuset:/\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n",
    )
    .expect("v1 cgroup");
    let mut agent = Proc::spawn(
        &[
            "agent",
            "-c",
            "/dev/null",
            "-d",
            dir.0.join("adata").to_str().expect("utf8"),
            "--server",
            "https://127.0.0.1:1",
            "--token",
            "x",
        ],
        &[("K3S_SIM_NODE_ROOT", v1.to_str().expect("utf8"))],
        dir.0.join("agent.log"),
    );
    assert_eq!(agent.wait_exit(Duration::from_secs(20)), 1);
    assert!(
        agent.log().contains("failed to find memory cgroup, you may need to add \\\"cgroup_memory=1 cgroup_enable=memory\\\" to your linux cmdline (/boot/cmdline.txt on a Raspberry Pi)"),
        "{}",
        agent.log()
    );
    // A kernel booted with memory disabled (a Raspberry Pi without
    // cgroup_enable=memory) lists it with enabled 0 in /proc/cgroups and has no
    // memory hierarchy: the lab hides it in /proc/cgroups only, and the
    // simulator reads /proc/self/cgroup as that kernel writes it.
    let off = dir.0.join("off");
    std::fs::create_dir_all(off.join("proc/self")).expect("off");
    std::fs::write(
        off.join("proc/self/cgroup"),
        "6:memory:/\n5:pids:/\n4:cpuset:/\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n",
    )
    .expect("off cgroup");
    let proc_cgroups = |memory: &str| {
        format!(
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t4\t1\t1\ncpu\t3\t1\t1\nmemory\t6\t1\t{memory}\npids\t5\t1\t1\n"
        )
    };
    std::fs::write(off.join("proc/cgroups"), proc_cgroups("0")).expect("proc/cgroups");
    let (code, out) = check(&off);
    assert_eq!(code, Some(1), "memory disabled: {out}");
    assert!(out.contains("missing memory"), "{out}");
    std::fs::write(off.join("proc/cgroups"), proc_cgroups("1")).expect("proc/cgroups");
    let (code, out) = check(&off);
    assert_eq!(code, Some(0), "memory enabled: {out}");
}

pub fn ready_only_after_api_serves_and_first_start_unpacks() {
    use std::os::unix::net::UnixDatagram;
    let dir = Scratch::new("notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    let port = free_port();
    let port_s = port.to_string();
    let data = dir.0.join("data");
    let kc = dir.0.join("kc.yaml");
    let root = node_root(&dir.0.join("root"), ALL_CONTROLLERS);
    let hz = format!("healthz-port={}", free_port());
    let args = [
        "server",
        "-c",
        "/dev/null",
        "-d",
        data.to_str().expect("utf8"),
        "--https-listen-port",
        &port_s,
        "--bind-address",
        "127.0.0.1",
        "--write-kubeconfig",
        kc.to_str().expect("utf8"),
        "--kubelet-arg",
        &hz,
    ];
    let env = [
        ("K3S_SIM_NODE_ROOT", root.to_str().expect("utf8")),
        ("NOTIFY_SOCKET", sock_path.to_str().expect("utf8")),
        ("K3S_SIM_UNPACK_DELAY", "3s"),
    ];
    let started = Instant::now();
    let mut srv = Proc::spawn(&args, &env, dir.0.join("s1.log"));
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "READY came before the data dir was unpacked"
    );
    // The API serves when READY arrives.
    let cache = dir.0.join("cache");
    let out = kubectl_with(&kc, &cache, &["get", "--raw", "/readyz"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = srv.log();
    assert!(log.contains("Preparing data dir"), "{log}");
    assert!(
        log.find("Kube API server is now running") < log.find("k3s is up and running"),
        "{log}"
    );
    srv.stop();
    // Second start of the same version: nothing to unpack, no delay.
    let again = Instant::now();
    let srv = Proc::spawn(&args, &env, dir.0.join("s2.log"));
    let n = sock.recv(&mut buf).expect("READY=1 again");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(
        again.elapsed() < Duration::from_secs(3),
        "{:?}",
        again.elapsed()
    );
    assert!(!srv.log().contains("Preparing data dir"), "{}", srv.log());
    // An agent notifies only once its node is registered.
    let token = std::fs::read_to_string(data.join("server/token")).expect("token");
    let aroot = node_root(&dir.0.join("aroot"), ALL_CONTROLLERS);
    let url = format!("https://127.0.0.1:{port}");
    let _agent = Proc::spawn(
        &[
            "agent",
            "-c",
            "/dev/null",
            "-d",
            dir.0.join("adata").to_str().expect("utf8"),
            "--server",
            &url,
            "--node-name",
            "late",
            "--kubelet-arg",
            &format!("healthz-port={}", free_port()),
        ],
        &[
            ("K3S_TOKEN", token.trim()),
            ("K3S_SIM_NODE_ROOT", aroot.to_str().expect("utf8")),
            ("NOTIFY_SOCKET", sock_path.to_str().expect("utf8")),
        ],
        dir.0.join("a.log"),
    );
    let n = sock.recv(&mut buf).expect("agent READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    let out = kubectl_with(&kc, &cache, &["get", "node", "late", "-o", "name"]);
    assert!(
        out.status.success(),
        "the node exists at READY: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn multi_call_names_like_k3s() {
    let sim = Sim::start("", &[]);
    let bin = sim.path("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    for name in ["kubectl", "crictl", "ctr"] {
        std::os::unix::fs::symlink(pictl_e2e::k3s::sim_bin(), bin.join(name)).expect("symlink");
    }
    let kc = sim.path("kubeconfig.yaml");
    let kc = kc.to_str().expect("utf8");
    let real = kubectl_bin();
    let real = Command::new("sh")
        .args(["-c", &format!("command -v {real}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("which kubectl");
    for mut cmd in [Command::new(bin.join("kubectl")), {
        let mut c = Command::new(pictl_e2e::k3s::sim_bin());
        c.arg("kubectl");
        c
    }] {
        let out = cmd
            .args(["--kubeconfig", kc, "get", "nodes", "-o", "name"])
            .env("K3S_SIM_KUBECTL", &real)
            .output()
            .expect("kubectl via k3s");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("node/"));
    }
    let out = Command::new(bin.join("crictl"))
        .arg("ps")
        .output()
        .expect("crictl");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("crictl ps"));
    let out = Command::new(pictl_e2e::k3s::sim_bin())
        .arg("check-config")
        .env("K3S_SIM_NODE_ROOT", sim.path("root-server"))
        .output()
        .expect("check-config");
    assert!(String::from_utf8_lossy(&out.stdout).contains("STATUS: pass"));
}
