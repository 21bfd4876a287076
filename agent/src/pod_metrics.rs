//! The pod-network metrics listener: lets an in-cluster Prometheus scrape
//! the agent without opening the agent's port to the LAN.
//!
//! publish.conf's `metrics_listen = IPv4:PORT` names the node's address on
//! the pod network: K3s's flannel with the bridge CNI gives each node's
//! `cni0` bridge the first address of its podCIDR (`10.42.1.1`). A second
//! listener there serves only `GET /metrics` and `GET /healthz`, and only to
//! peers in `metrics_peers` (the cluster's pod CIDR, `10.42.0.0/16`); any
//! other peer is closed when accepted, unread and unanswered
//! ([`Scope::Metrics`]). Loopback is not implied.
//!
//! Why the peer check holds: pods reach a node's `cni0` address from any
//! node with their pod IP as the source (flannel masquerades only traffic
//! leaving the pod CIDR, not pod-to-pod-CIDR traffic). A LAN host can send
//! packets to `10.42.x.1` by routing them through the node (Linux accepts a
//! packet for any of its local addresses on any interface), but it completes
//! a TCP handshake only with a source address the node routes the answer
//! back to: the node sends replies to pod-CIDR addresses into the overlay or
//! the bridge, never to the LAN. So a LAN host cannot converse from an
//! address inside `metrics_peers`, and from its own address it is closed
//! unanswered. pictl also adds the CIDR to the unit's `IPAddressAllow=` in a
//! drop-in, a kernel filter where cgroup BPF is available; this check is
//! what holds where it is not.
//!
//! The address usually does not exist when the agent starts: `cni0` appears
//! when the first Pod lands on the node. So the listener binds in its own
//! thread, retrying every [`RETRY`] on any bind error, forever; `/v1/report`
//! (`metrics_listener`) and `/metrics` (`pictl_node_pod_metrics_listening`)
//! say whether it listens, and the journal gets the first failure and the
//! success, once each.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error_chain;
use crate::http::{Reports, Scope, Server};
use crate::publish::config::PodMetrics;
use crate::report::{ListenerState, MetricsListener};

/// Pause between bind attempts while the address is not there.
pub const RETRY: Duration = Duration::from_secs(5);
/// Stack of the bind-and-accept thread (it only loops over `accept`).
const STACK_BYTES: usize = 128 * 1024;

/// The listener's state, shared with the report source.
pub type Status = Arc<Mutex<MetricsListener>>;

/// The state before the first attempt: waiting for `cfg.listen`.
pub fn status(cfg: &PodMetrics) -> Status {
    Arc::new(Mutex::new(MetricsListener {
        address: cfg.listen.to_string(),
        state: ListenerState::Waiting,
        error: None,
    }))
}

/// Starts the thread that binds `cfg.listen` (retrying until it can) and
/// then serves `reports` there to `cfg.peers`, keeping `status` current.
pub fn start(cfg: PodMetrics, status: Status, reports: Reports) -> crate::Result<()> {
    let addr = SocketAddr::V4(cfg.listen);
    let scope = Scope::Metrics { peers: cfg.peers };
    std::thread::Builder::new()
        .name("pod-metrics".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let log = |line: String| eprintln!("pictl-agent: {line}");
            let listener = bind_when_possible(
                addr,
                &status,
                TcpListener::bind,
                || std::thread::sleep(RETRY),
                log,
            );
            match Server::serve(addr, listener, reports, scope) {
                Ok(server) => server.run(),
                Err(e) => {
                    let why = error_chain(&e);
                    log(format!(
                        "pod-network metrics listener on {addr} stopped: {why}"
                    ));
                    set(&status, ListenerState::Waiting, Some(why));
                }
            }
        })
        .map_err(crate::Error::StartWorkersFailed)?;
    Ok(())
}

/// Calls `bind(addr)` until it succeeds, with `pause()` between attempts.
/// `status` shows each failure while waiting, then `listening`; `log` gets
/// the first failure and the success, one line each, not every retry.
pub fn bind_when_possible<L>(
    addr: SocketAddr,
    status: &Mutex<MetricsListener>,
    mut bind: impl FnMut(SocketAddr) -> io::Result<L>,
    mut pause: impl FnMut(),
    mut log: impl FnMut(String),
) -> L {
    let mut failed = false;
    loop {
        match bind(addr) {
            Ok(listener) => {
                log(format!(
                    "pod-network metrics listener on http://{addr} (/metrics, /healthz)"
                ));
                set(status, ListenerState::Listening, None);
                return listener;
            }
            Err(e) => {
                if !failed {
                    log(format!(
                        "cannot listen on {addr} yet ({e}); retrying every {}s",
                        RETRY.as_secs()
                    ));
                    failed = true;
                }
                set(status, ListenerState::Waiting, Some(e.to_string()));
                pause();
            }
        }
    }
}

fn set(status: &Mutex<MetricsListener>, state: ListenerState, error: Option<String>) {
    let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
    s.state = state;
    s.error = error;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PodMetrics {
        PodMetrics {
            listen: "10.42.1.1:9750".parse().expect("addr"),
            peers: vec!["10.42.0.0/16".parse().expect("cidr")],
        }
    }

    #[test]
    fn it_waits_through_bind_failures_then_listens_logging_each_once() {
        let status = status(&cfg());
        assert_eq!(status.lock().expect("lock").state, ListenerState::Waiting);
        let addr = "10.42.1.1:9750".parse().expect("addr");
        let mut attempts = 0;
        let mut seen = Vec::new();
        let mut logged = Vec::new();
        let got = bind_when_possible(
            addr,
            &status,
            |a| {
                assert_eq!(a, addr);
                attempts += 1;
                match attempts {
                    1..=3 => Err(io::Error::from(io::ErrorKind::AddrNotAvailable)),
                    4 => Err(io::Error::from(io::ErrorKind::AddrInUse)),
                    _ => Ok("the listener"),
                }
            },
            || seen.push(status.lock().expect("lock").clone()),
            |line| logged.push(line),
        );
        assert_eq!((got, attempts), ("the listener", 5));
        // Paused after each failure, with that failure in the state.
        assert_eq!(seen.len(), 4);
        assert!(seen.iter().all(|s| s.state == ListenerState::Waiting));
        let unavailable = io::Error::from(io::ErrorKind::AddrNotAvailable).to_string();
        assert_eq!(seen[0].error.as_deref(), Some(unavailable.as_str()));
        let in_use = io::Error::from(io::ErrorKind::AddrInUse).to_string();
        assert_eq!(seen[3].error.as_deref(), Some(in_use.as_str()));
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(
            logged[0].starts_with("cannot listen on 10.42.1.1:9750 yet"),
            "{logged:?}"
        );
        assert!(logged[1].contains("listener on http://10.42.1.1:9750"));
        let now = status.lock().expect("lock").clone();
        assert_eq!(
            now,
            MetricsListener {
                address: "10.42.1.1:9750".into(),
                state: ListenerState::Listening,
                error: None,
            }
        );
    }

    #[test]
    fn an_address_free_at_once_is_bound_without_pausing_or_a_failure_line() {
        let status = status(&cfg());
        let mut logged = Vec::new();
        let listener = bind_when_possible(
            "127.0.0.1:0".parse().expect("addr"),
            &status,
            TcpListener::bind,
            || panic!("no pause when the first bind works"),
            |line| logged.push(line),
        );
        assert!(listener.local_addr().expect("bound").port() != 0);
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(status.lock().expect("lock").state, ListenerState::Listening);
    }

    #[test]
    fn only_peers_inside_the_networks_are_admitted_loopback_included_only_if_listed() {
        let scope = Scope::Metrics {
            peers: vec![
                "10.42.0.0/16".parse().expect("cidr"),
                "192.168.5.7/32".parse().expect("cidr"),
            ],
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        for yes in ["10.42.0.0", "10.42.1.5", "10.42.255.255", "192.168.5.7"] {
            assert!(scope.admits(ip(yes)), "{yes}");
        }
        // An IPv4 peer seen on a dual-stack socket is still that IPv4 peer.
        assert!(scope.admits(ip("::ffff:10.42.3.4")));
        for no in [
            "127.0.0.1",
            "10.43.0.1",
            "10.41.255.255",
            "192.168.5.8",
            "192.168.1.10",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!scope.admits(ip(no)), "{no}");
        }
        assert!(Scope::Full.admits(ip("192.168.1.10")) && Scope::Full.admits(ip("::1")));
    }
}
