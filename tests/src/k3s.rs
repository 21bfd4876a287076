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
