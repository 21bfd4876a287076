//! sd_notify without libsystemd: K3s's units are Type=notify and systemd only
//! considers k3s started once READY=1 arrives on $NOTIFY_SOCKET.

pub fn ready() {
    send("READY=1");
}

pub fn send(msg: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            crate::warn!("sd_notify: {e}");
            return;
        }
    };
    let res = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = res {
        crate::warn!("sd_notify to {path}: {e}");
    }
}
