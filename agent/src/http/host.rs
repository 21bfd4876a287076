//! Which `Host` a request may name: the agent's defence against DNS rebinding.
//!
//! A web page can make a browser on the node (or on a machine the agent
//! listens for) send requests to the agent under the page's own host name, by
//! pointing that name at the agent's address. The browser then sends
//! `Host: evil.example`, so the agent answers only requests naming it by an
//! address no one can rebind: `localhost`, `127.0.0.1`, `[::1]`, the listen
//! address, or the local address the connection arrived on (which is what a
//! scraper uses when the agent listens on a wildcard like `0.0.0.0`), each
//! with or without a port. Scrapers must therefore use the node's IP, not a
//! DNS name.
//!
//! Without `Host`: HTTP/1.1 requires it (400). HTTP/1.0 may omit it, and a
//! browser never does, so such a request is served only to a loopback peer
//! (`curl -0`, old health checkers on the node) and refused otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses a connection involves.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    /// The client.
    pub peer: IpAddr,
    /// Where the connection arrived (differs from `listen` on a wildcard).
    pub local: IpAddr,
    /// What the agent was told to listen on.
    pub listen: IpAddr,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Host`, and the request is HTTP/1.1 or not from loopback.
    Missing,
    /// A `Host` that is not one of the agent's own names.
    Misdirected,
}

pub fn check(host: Option<&str>, http10: bool, ends: &Ends) -> Result<(), Refusal> {
    match host {
        None if http10 && ends.peer.to_canonical().is_loopback() => Ok(()),
        None => Err(Refusal::Missing),
        Some(h) if names_agent(h, ends) => Ok(()),
        Some(_) => Err(Refusal::Misdirected),
    }
}

fn names_agent(host: &str, ends: &Ends) -> bool {
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => host.split_at(end + 1),
            None => return false,
        }
    } else {
        host.find(':').map_or((host, ""), |at| host.split_at(at))
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok()
        });
    if !port_ok {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let ip = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().map(IpAddr::V6),
        None => name.parse::<Ipv4Addr>().map(IpAddr::V4),
    };
    ip.is_ok_and(|ip| {
        ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
            || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
            || (!ends.listen.is_unspecified() && ip == ends.listen.to_canonical())
            || ip == ends.local.to_canonical()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(peer: &str, local: &str, listen: &str) -> Ends {
        Ends {
            peer: peer.parse().expect("peer"),
            local: local.parse().expect("local"),
            listen: listen.parse().expect("listen"),
        }
    }

    #[test]
    fn loopback_names_are_accepted_with_or_without_a_port() {
        let e = ends("127.0.0.1", "127.0.0.1", "127.0.0.1");
        for h in [
            "localhost",
            "LocalHost:9750",
            "127.0.0.1",
            "127.0.0.1:9750",
            "[::1]",
            "[::1]:9750",
        ] {
            assert_eq!(check(Some(h), false, &e), Ok(()), "{h}");
        }
    }

    #[test]
    fn other_names_are_misdirected() {
        let e = ends("127.0.0.1", "127.0.0.1", "127.0.0.1");
        for h in [
            "evil.example",
            "evil.example:9750",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "localhost:",
            "localhost:97500",
            "localhost:http",
            "127.0.0.2",
            "0127.0.0.1",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:99999",
            "192.168.0.196:9750",
            "",
        ] {
            assert_eq!(check(Some(h), false, &e), Err(Refusal::Misdirected), "{h}");
        }
    }

    #[test]
    fn listen_and_arrival_addresses_are_accepted() {
        let e = ends("192.168.0.50", "192.168.0.196", "192.168.0.196");
        assert_eq!(check(Some("192.168.0.196:9750"), false, &e), Ok(()));
        // Listening on every address: the one the client used is the agent's.
        let e = ends("192.168.0.50", "192.168.0.196", "0.0.0.0");
        assert_eq!(check(Some("192.168.0.196"), false, &e), Ok(()));
        assert_eq!(check(Some("0.0.0.0"), false, &e), Err(Refusal::Misdirected));
        let e = ends("::ffff:192.168.0.50", "::ffff:192.168.0.196", "::");
        assert_eq!(check(Some("192.168.0.196:9750"), false, &e), Ok(()));
        let e = ends("fe80::2", "fd00::196", "::");
        assert_eq!(check(Some("[fd00::196]:9750"), false, &e), Ok(()));
        assert_eq!(
            check(Some("pi-node1:9750"), false, &e),
            Err(Refusal::Misdirected)
        );
    }

    #[test]
    fn missing_host_is_accepted_only_from_http10_on_loopback() {
        let local = ends("127.0.0.1", "127.0.0.1", "127.0.0.1");
        assert_eq!(check(None, true, &local), Ok(()));
        assert_eq!(check(None, false, &local), Err(Refusal::Missing));
        let v6 = ends("::1", "::1", "::1");
        assert_eq!(check(None, true, &v6), Ok(()));
        let remote = ends("192.168.0.50", "192.168.0.196", "0.0.0.0");
        assert_eq!(check(None, true, &remote), Err(Refusal::Missing));
    }
}
