//! Kubelet health: `GET /healthz` on its loopback port, answered `200 ok`.
//! A few bytes over std `TcpStream` with a deadline; no HTTP client crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Whether the kubelet answered healthy within `timeout` (connect and read).
/// Refused or timed out counts as unhealthy: the kubelet should be there.
pub fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.set_write_timeout(Some(timeout)).is_err()
        || stream.write_all(request.as_bytes()).is_err()
    {
        return false;
    }
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while buf.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return false,
        }
    }
    is_healthy_response(&buf)
}

/// A `200` status and a body of `ok`.
pub fn is_healthy_response(resp: &[u8]) -> bool {
    let text = String::from_utf8_lossy(resp);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let status = head.lines().next().unwrap_or("");
    let mut parts = status.split(' ');
    let proto_ok = parts.next().is_some_and(|p| p.starts_with("HTTP/1."));
    proto_ok && parts.next() == Some("200") && body.trim() == "ok"
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server answering `response` to the first connection.
    fn serve_once(response: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(response.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn kubelet_answering_ok_is_healthy() {
        let addr = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert!(probe(addr, Duration::from_secs(1)));
    }

    #[test]
    fn kubelet_answering_500_is_unhealthy() {
        let addr = serve_once("HTTP/1.1 500 Internal Server Error\r\n\r\n[-]ping failed");
        assert!(!probe(addr, Duration::from_secs(1)));
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        assert!(!probe(addr, Duration::from_secs(1)));
    }

    #[test]
    fn silent_kubelet_times_out_within_the_budget() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let started = Instant::now();
        assert!(!probe(addr, Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(l);
    }
}
