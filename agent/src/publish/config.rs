//! The publishing configuration pictl writes on each node
//! (`/etc/pictl-agent/publish.conf`, `key = value` lines). No file means
//! the agent does not publish; a file it cannot read is an error at start.

use std::path::PathBuf;
use std::time::Duration;

use super::conditions::DEFAULT_DISK_PRESSURE_PERCENT;

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
    })
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
}
