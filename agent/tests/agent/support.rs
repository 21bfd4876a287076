//! Fakes shared by the tests: a fake node tree, fake commands, a fake kubelet.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use pictl_agent::collect::{Exec, ExecError, Sources};

/// Answers exact command lines; anything else is "not installed".
#[derive(Debug, Default)]
pub struct FakeExec(pub HashMap<String, String>);

impl FakeExec {
    pub fn with(mut self, line: &str, stdout: &str) -> Self {
        self.0.insert(line.to_owned(), stdout.to_owned());
        self
    }
}

impl Exec for FakeExec {
    fn stdout(&self, program: &str, args: &[&str]) -> Result<String, ExecError> {
        let line = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        self.0.get(&line).cloned().ok_or(ExecError::NotInstalled {
            program: program.to_owned(),
        })
    }
}

pub const SYSTEMCTL_SHOW: &str =
    "systemctl show --property=Id,LoadState,ActiveState k3s.service k3s-agent.service";
pub const TIMEDATECTL: &str = "timedatectl show -p NTPSynchronized --value";

pub fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
    std::fs::write(path, content).expect("write fake file");
}

/// A Raspberry Pi 4 with an under-voltage history, as the collectors see it.
pub fn fake_pi(root: &Path) {
    write(
        root,
        "proc/meminfo",
        b"MemTotal:        3884096 kB\nMemFree:          200000 kB\nMemAvailable:    2942048 kB\n\
          Buffers:           10000 kB\nSwapTotal:        102396 kB\nSwapFree:          51198 kB\n",
    );
    write(root, "proc/loadavg", b"0.52 0.41 0.30 2/345 6789\n");
    write(root, "proc/uptime", b"86400.25 300000.00\n");
    write(root, "proc/sys/kernel/hostname", b"pi-node1\n");
    write(root, "sys/class/thermal/thermal_zone0/temp", b"51234\n");
    write(
        root,
        "proc/device-tree/model",
        b"Raspberry Pi 4 Model B Rev 1.4\0",
    );
    write(
        root,
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        b"0x50005\n",
    );
}

/// Sources over a fake tree with fake commands and a kubelet at `kubelet`.
pub fn sources(root: &Path, exec: FakeExec, kubelet: SocketAddr) -> Sources {
    Sources {
        root: root.to_owned(),
        kubelet_healthz: kubelet,
        kubelet_timeout: Duration::from_secs(1),
        exec: Box::new(exec),
        fsync: pictl_agent::collect::fsync::Probe::new(Duration::ZERO),
    }
}

/// A kubelet healthz answering `ok` to every connection, in a thread.
pub fn healthy_kubelet() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
            );
        }
    });
    addr
}

/// An address nothing listens on.
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
