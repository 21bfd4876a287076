//! K3s as its own installer leaves it, for tests that start from an
//! install.sh node: the systemd unit text of install.sh's
//! `create_systemd_service_file` (k3s-io/k3s install.sh), one copy for
//! every suite.

/// The unit install.sh writes, up to `ExecStart=/usr/local/bin/k3s `: the
/// caller appends the command (`server`/`agent`) and its flags. `env_file`
/// is the unit's `EnvironmentFile` (install.sh: `/etc/systemd/system/<unit>.env`).
pub fn install_sh_unit(env_file: &str) -> String {
    format!(
        "[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-{env_file}
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s "
    )
}

/// The K3s simulator of this checkout (`cargo build -p k3s-sim`), built once
/// per process and copied to a private path at once, so a concurrent build
/// in a shared target dir cannot swap it under the tests. `K3S_SIM_BIN`
/// names one built elsewhere instead.
pub fn sim_bin() -> std::path::PathBuf {
    use std::path::PathBuf;
    static BUILD: std::sync::Once = std::sync::Once::new();
    if let Some(bin) = std::env::var_os("K3S_SIM_BIN") {
        return PathBuf::from(bin);
    }
    let root = crate::lab::repo_root();
    let private = std::env::temp_dir().join(format!("k3s-sim-e2e-bin-{}", std::process::id()));
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "k3s-sim"])
            .current_dir(&root)
            .status()
            .expect("running cargo build -p k3s-sim");
        assert!(st.success(), "cargo build -p k3s-sim failed");
        std::fs::create_dir_all(&private).expect("private bin dir");
        std::fs::copy(
            crate::pictl::target_dir().join("debug/k3s"),
            private.join("k3s"),
        )
        .expect("copy k3s");
    });
    private.join("k3s")
}
