//! IPv4 networks in CIDR notation (`10.42.0.0/16`), for the pod-network
//! metrics listener's peer check. Our own few lines rather than a crate: the
//! agent needs parsing and containment only, and stays std-only for it.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with its host bits cleared and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a text is not an IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("IPv6 networks are not supported yet (IPv4 only)")]
    Ipv6,
    #[error("expected an IPv4 network like 10.42.0.0/16")]
    Invalid,
}

impl Ipv4Net {
    /// The network of `addr`/`prefix` (host bits cleared); `None` past /32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }
}

/// The netmask of a prefix length (`0..=32`) as a number.
fn mask(prefix: u8) -> u32 {
    // A shift by 32 overflows: /0 is handled on its own.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    /// `A.B.C.D/N` with `N` in `0..=32`, as Go's `net.ParseCIDR` reads it for
    /// K3s's `--cluster-cidr`: set host bits are cleared (`10.42.1.1/16` is
    /// `10.42.0.0/16`). A bare address, a missing or signed prefix, and any
    /// IPv6 network are refused.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| {
            if s.contains(':') {
                CidrError::Ipv6
            } else {
                CidrError::Invalid
            }
        })?;
        if addr.contains(':') {
            return Err(CidrError::Ipv6);
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| CidrError::Invalid)?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Invalid);
        }
        let prefix = prefix.parse().map_err(|_| CidrError::Invalid)?;
        Self::new(addr, prefix).ok_or(CidrError::Invalid)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_network_holds_its_first_and_last_address_and_nothing_beyond() {
        let n = net("10.42.0.0/16");
        for inside in ["10.42.0.0", "10.42.0.1", "10.42.1.1", "10.42.255.255"] {
            assert!(n.contains(ip(inside)), "{inside}");
        }
        for outside in ["10.41.255.255", "10.43.0.0", "192.168.1.10", "127.0.0.1"] {
            assert!(!n.contains(ip(outside)), "{outside}");
        }
        let n = net("192.168.1.128/25");
        assert!(n.contains(ip("192.168.1.128")) && n.contains(ip("192.168.1.255")));
        assert!(!n.contains(ip("192.168.1.127")) && !n.contains(ip("192.168.2.0")));
    }

    #[test]
    fn slash_0_holds_every_address_and_slash_32_only_its_own() {
        let all = net("0.0.0.0/0");
        for a in ["0.0.0.0", "10.42.1.1", "255.255.255.255"] {
            assert!(all.contains(ip(a)), "{a}");
        }
        // /0 ignores the address's bits entirely.
        assert_eq!(net("10.1.2.3/0"), all);
        let one = net("10.42.1.7/32");
        assert!(one.contains(ip("10.42.1.7")));
        assert!(!one.contains(ip("10.42.1.6")) && !one.contains(ip("10.42.1.8")));
        assert_eq!(one.to_string(), "10.42.1.7/32");
        let top = net("255.255.255.255/32");
        assert!(top.contains(ip("255.255.255.255")) && !top.contains(ip("255.255.255.254")));
    }

    #[test]
    fn host_bits_are_cleared_as_go_parse_cidr_does() {
        let n = net("10.42.1.1/16");
        assert_eq!((n.network(), n.prefix()), (ip("10.42.0.0"), 16));
        assert_eq!(n.to_string(), "10.42.0.0/16");
        assert!(n.contains(ip("10.42.200.3")));
        assert_eq!(net("10.42.1.1/31").network(), ip("10.42.1.0"));
    }

    #[test]
    fn anything_but_an_ipv4_cidr_is_refused() {
        for bad in [
            "",
            "10.42.0.0",
            "10.42.0.0/",
            "10.42.0.0/33",
            "10.42.0.0/+8",
            "10.42.0.0/-1",
            "10.42.0.0/016",
            "10.42.0.0/16/1",
            "10.42.0/16",
            "10.42.0.256/16",
            "010.42.0.0/16",
            " 10.42.0.0/16",
            "localhost/8",
        ] {
            assert_eq!(bad.parse::<Ipv4Net>(), Err(CidrError::Invalid), "{bad:?}");
        }
        for v6 in ["fd00::/8", "::1/128", "::ffff:10.42.0.0/112", "fd00::1"] {
            assert_eq!(v6.parse::<Ipv4Net>(), Err(CidrError::Ipv6), "{v6:?}");
        }
    }
}
