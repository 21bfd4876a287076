//! The publishing configuration pictl writes on each node
//! (`/etc/pictl-agent/publish.conf`, `key = value` lines). No file means
//! the agent does not publish; a file it cannot read is an error at start.
//!
//! Two optional keys, always together, open a second, restricted listener on
//! the pod network for an in-cluster Prometheus ([`crate::pod_metrics`]):
//! `metrics_listen = IPv4:PORT` (the node's `cni0` address) and
//! `metrics_peers = CIDR[,CIDR...]` (the only peers it answers, the
//! cluster's pod CIDR).
//!
//! One optional key pins the API server's key: `api_spki_sha256 =
//! HEX[,HEX...]`, the sha256 of the DER SubjectPublicKeyInfo of the API
//! server's certificate, 64 lowercase hex digits each (several for HA servers
//! or a key rotation in progress). The agent then talks only to a server
//! holding one of these keys ([`super::pin`]); without the key, the cluster
//! CA alone is trusted, as before.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use super::conditions::DEFAULT_DISK_PRESSURE_PERCENT;
use super::pin::SpkiPin;
use crate::cidr::{CidrError, Ipv4Net};

/// Where pictl writes the configuration.
pub const DEFAULT_PATH: &str = "/etc/pictl-agent/publish.conf";
/// How often the agent judges and, if something changed, writes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `https://HOST:PORT` of the API server.
    pub server: String,
    /// The Node this agent publishes to (its own).
    pub node: String,
    /// The ServiceAccount token (0600, the agent's user).
    pub token_file: PathBuf,
    /// The cluster CA, the only trust root.
    pub ca_file: PathBuf,
    pub interval: Duration,
    pub disk_pressure_percent: f64,
    /// The pod-network metrics listener; `None` when not configured.
    pub metrics: Option<PodMetrics>,
    /// `api_spki_sha256`: the API server's keys; empty when not configured
    /// (the cluster CA alone is trusted).
    pub api_pins: Vec<SpkiPin>,
}

/// `metrics_listen` and `metrics_peers`: where the pod-network listener
/// binds and whom it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetrics {
    /// The node's address on the pod network (its `cni0` bridge), with a port.
    pub listen: SocketAddrV4,
    /// Peers outside every one of these networks are closed unanswered.
    pub peers: Vec<Ipv4Net>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("line {0}: expected key = value")]
    NotKeyValue(usize),
    #[error("line {line}: unknown key {key:?}")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: {key} = {value:?} is not valid")]
    BadValue {
        line: usize,
        key: &'static str,
        value: String,
    },
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("line {line}: {key} = {value:?}: IPv6 is not supported yet (IPv4 only)")]
    Ipv6 {
        line: usize,
        key: &'static str,
        value: String,
    },
    #[error(
        "line {line}: api_spki_sha256: {pin:?} is not a sha256 digest \
         (64 lowercase hex digits; several are separated by commas)"
    )]
    BadPin { line: usize, pin: String },
    #[error("{given} is set but {missing} is missing (the two go together)")]
    Unpaired {
        given: &'static str,
        missing: &'static str,
    },
}

/// A Node name as the API accepts it (an RFC 1123 subdomain), so it can go
/// into a URL path unescaped.
pub fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let (mut server, mut node, mut token, mut ca) = (None, None, None, None);
    let mut interval = DEFAULT_INTERVAL;
    let mut pct = DEFAULT_DISK_PRESSURE_PERCENT;
    let (mut listen, mut peers) = (None, None);
    let mut api_pins = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l.split_once('=').ok_or(ConfigError::NotKeyValue(line))?;
        let (k, v) = (k.trim(), v.trim().to_owned());
        let bad = |key| ConfigError::BadValue {
            line,
            key,
            value: v.clone(),
        };
        match k {
            "server" => {
                super::client::parse_url(&v).map_err(|_| bad("server"))?;
                server = Some(v);
            }
            "node" if valid_node_name(&v) => node = Some(v),
            "node" => return Err(bad("node")),
            "token_file" => token = Some(PathBuf::from(v)),
            "ca_file" => ca = Some(PathBuf::from(v)),
            "interval_seconds" => match v.parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => interval = Duration::from_secs(n),
                _ => return Err(bad("interval_seconds")),
            },
            "disk_pressure_percent" => match v.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => pct = p,
                _ => return Err(bad("disk_pressure_percent")),
            },
            "metrics_listen" => listen = Some(metrics_listen(line, &v)?),
            "metrics_peers" => peers = Some(metrics_peers(line, &v)?),
            "api_spki_sha256" => api_pins = spki_pins(line, &v)?,
            _ => {
                return Err(ConfigError::UnknownKey {
                    line,
                    key: k.to_owned(),
                });
            }
        }
    }
    Ok(Config {
        server: server.ok_or(ConfigError::Missing("server"))?,
        node: node.ok_or(ConfigError::Missing("node"))?,
        token_file: token.ok_or(ConfigError::Missing("token_file"))?,
        ca_file: ca.ok_or(ConfigError::Missing("ca_file"))?,
        interval,
        disk_pressure_percent: pct,
        metrics: pod_metrics(listen, peers)?,
        api_pins,
    })
}

/// `HEX[,HEX...]`, at least one pin; each one checked on its own.
fn spki_pins(line: usize, v: &str) -> Result<Vec<SpkiPin>, ConfigError> {
    v.split(',')
        .map(|p| {
            let p = p.trim();
            SpkiPin::parse(p).ok_or_else(|| ConfigError::BadPin {
                line,
                pin: p.to_owned(),
            })
        })
        .collect()
}

/// Both keys or neither.
fn pod_metrics(
    listen: Option<SocketAddrV4>,
    peers: Option<Vec<Ipv4Net>>,
) -> Result<Option<PodMetrics>, ConfigError> {
    let unpaired = |given, missing| Err(ConfigError::Unpaired { given, missing });
    match (listen, peers) {
        (Some(listen), Some(peers)) => Ok(Some(PodMetrics { listen, peers })),
        (None, None) => Ok(None),
        (Some(_), None) => unpaired("metrics_listen", "metrics_peers"),
        (None, Some(_)) => unpaired("metrics_peers", "metrics_listen"),
    }
}

/// `IPv4:PORT`: one address of the node (not `0.0.0.0`, which would also
/// take the loopback listener's port), a port other than 0.
fn metrics_listen(line: usize, v: &str) -> Result<SocketAddrV4, ConfigError> {
    let key = "metrics_listen";
    let value = v.to_owned();
    match v.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a))
            if a.port() != 0
                && !a.ip().is_unspecified()
                && !a.ip().is_broadcast()
                && !a.ip().is_multicast() =>
        {
            Ok(a)
        }
        Ok(SocketAddr::V6(_)) => Err(ConfigError::Ipv6 { line, key, value }),
        Err(_) if v.starts_with('[') || v.matches(':').count() > 1 => {
            Err(ConfigError::Ipv6 { line, key, value })
        }
        _ => Err(ConfigError::BadValue { line, key, value }),
    }
}

/// `CIDR[,CIDR...]`, IPv4 networks, at least one.
fn metrics_peers(line: usize, v: &str) -> Result<Vec<Ipv4Net>, ConfigError> {
    let key = "metrics_peers";
    v.split(',')
        .map(|n| match n.trim().parse::<Ipv4Net>() {
            Ok(net) => Ok(net),
            Err(CidrError::Ipv6) => Err(ConfigError::Ipv6 {
                line,
                key,
                value: v.to_owned(),
            }),
            Err(CidrError::Invalid) => Err(ConfigError::BadValue {
                line,
                key,
                value: v.to_owned(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_defaults_fill_the_rest() {
        let c = parse(
            "# written by pictl\nserver = https://10.0.0.1:6443\nnode = boolayan-worker1\n\
             token_file = /etc/pictl-agent/token\nca_file = /etc/pictl-agent/ca.crt\n",
        )
        .expect("parses");
        assert_eq!(c.node, "boolayan-worker1");
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.disk_pressure_percent, DEFAULT_DISK_PRESSURE_PERCENT);
        let c = parse(
            "server=https://h\nnode=n\ntoken_file=t\nca_file=c\ninterval_seconds=5\ndisk_pressure_percent=50.5",
        )
        .expect("parses");
        assert_eq!(
            (c.interval, c.disk_pressure_percent),
            (Duration::from_secs(5), 50.5)
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        assert_eq!(parse("server"), Err(ConfigError::NotKeyValue(1)));
        assert!(matches!(
            parse("\nsrv = x"),
            Err(ConfigError::UnknownKey { line: 2, .. })
        ));
        assert!(matches!(
            parse("node = ../etc"),
            Err(ConfigError::BadValue { key: "node", .. })
        ));
        assert!(matches!(
            parse("server = http://h:1"),
            Err(ConfigError::BadValue { key: "server", .. })
        ));
        assert!(matches!(
            parse("interval_seconds = 0"),
            Err(ConfigError::BadValue { .. })
        ));
        assert_eq!(
            parse("server = https://h\nnode = n\nca_file = c"),
            Err(ConfigError::Missing("token_file"))
        );
    }

    const BASE: &str = "server = https://h\nnode = n\ntoken_file = t\nca_file = c\n";

    fn with(extra: &str) -> Result<Config, ConfigError> {
        parse(&format!("{BASE}{extra}"))
    }

    #[test]
    fn the_pod_metrics_listener_takes_an_address_and_its_peers() {
        assert_eq!(with("").expect("parses").metrics, None);
        let c = with("metrics_listen = 10.42.1.1:9750\nmetrics_peers = 10.42.0.0/16\n")
            .expect("parses");
        let m = c.metrics.expect("configured");
        assert_eq!(m.listen, "10.42.1.1:9750".parse().expect("addr"));
        assert_eq!(m.peers, vec!["10.42.0.0/16".parse().expect("cidr")]);
        let m = with(
            "metrics_peers=10.42.0.0/16, 192.168.5.0/24 ,10.0.0.7/32\nmetrics_listen=127.0.0.2:1",
        )
        .expect("parses")
        .metrics
        .expect("configured");
        let peers: Vec<String> = m.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["10.42.0.0/16", "192.168.5.0/24", "10.0.0.7/32"]);
    }

    #[test]
    fn each_pod_metrics_key_needs_its_partner() {
        assert_eq!(
            with("metrics_listen = 10.42.1.1:9750"),
            Err(ConfigError::Unpaired {
                given: "metrics_listen",
                missing: "metrics_peers"
            })
        );
        let e = with("metrics_peers = 10.42.0.0/16").expect_err("unpaired");
        assert_eq!(
            e,
            ConfigError::Unpaired {
                given: "metrics_peers",
                missing: "metrics_listen"
            }
        );
        assert_eq!(
            e.to_string(),
            "metrics_peers is set but metrics_listen is missing (the two go together)"
        );
    }

    #[test]
    fn bad_pod_metrics_values_are_refused_with_their_line() {
        let peers = "metrics_peers = 10.42.0.0/16\n";
        for bad in [
            "10.42.1.1",
            "10.42.1.1:0",
            "10.42.1.1:70000",
            "0.0.0.0:9750",
            "255.255.255.255:9750",
            "224.0.0.1:9750",
            "cni0:9750",
            "",
        ] {
            let e = with(&format!("{peers}metrics_listen = {bad}")).expect_err(bad);
            assert_eq!(
                e,
                ConfigError::BadValue {
                    line: 6,
                    key: "metrics_listen",
                    value: bad.into()
                },
                "{bad:?}"
            );
        }
        let listen = "metrics_listen = 10.42.1.1:9750\n";
        for bad in ["10.42.0.0", "10.42.0.0/33", "10.42.0.0/16,", "", "any"] {
            let e = with(&format!("{listen}metrics_peers = {bad}")).expect_err(bad);
            assert!(
                matches!(&e, ConfigError::BadValue { line: 6, key: "metrics_peers", value } if value == bad),
                "{bad:?}: {e:?}"
            );
        }
    }

    const PIN_A: &str = "4f7a0c6b21d3e8f95a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071";
    const PIN_B: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn api_key_pins_are_one_or_more_sha256_digests_and_optional() {
        assert_eq!(with("").expect("parses").api_pins, vec![]);
        let one = with(&format!("api_spki_sha256 = {PIN_A}")).expect("parses");
        let shown: Vec<String> = one.api_pins.iter().map(ToString::to_string).collect();
        assert_eq!(shown, [PIN_A]);
        let two = with(&format!("api_spki_sha256={PIN_B} , {PIN_A}\n")).expect("parses");
        let shown: Vec<String> = two.api_pins.iter().map(ToString::to_string).collect();
        assert_eq!(shown, [PIN_B, PIN_A]);
    }

    #[test]
    fn a_bad_api_key_pin_is_refused_naming_the_key() {
        let upper = PIN_A.to_uppercase();
        // (the value, the pin the error names)
        let cases = [
            (String::new(), ""),
            (PIN_A[..63].to_owned(), &PIN_A[..63]),
            (format!("{PIN_A}0"), &format!("{PIN_A}0")),
            (upper.clone(), upper.as_str()),
            (format!("sha256:{PIN_A}"), &format!("sha256:{PIN_A}")),
            (format!("{PIN_A},"), ""),
            (format!("{PIN_A},{}", &PIN_B[1..]), &PIN_B[1..]),
        ];
        for (value, pin) in &cases {
            let e = with(&format!("api_spki_sha256 = {value}")).expect_err(value);
            let pin = (*pin).to_owned();
            assert_eq!(e, ConfigError::BadPin { line: 5, pin }, "{value:?}");
            let text = e.to_string();
            assert!(text.starts_with("line 5: api_spki_sha256: "), "{text}");
            assert!(text.contains("64 lowercase hex digits"), "{text}");
        }
    }

    #[test]
    fn ipv6_pod_metrics_values_are_refused_as_ipv6() {
        let cases = [
            ("metrics_listen", "[fd00::1]:9750"),
            ("metrics_listen", "fd00::1"),
            ("metrics_peers", "fd00:42::/56"),
            ("metrics_peers", "10.42.0.0/16,fd00:42::/56"),
        ];
        for (key, value) in cases {
            let e = with(&format!("{key} = {value}")).expect_err(value);
            assert_eq!(
                e,
                ConfigError::Ipv6 {
                    line: 5,
                    key,
                    value: value.into()
                }
            );
            assert!(e.to_string().contains("IPv6 is not supported yet"), "{e}");
        }
    }
}
