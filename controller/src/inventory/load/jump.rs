//! `proxy_jump` and ssh_config(5): the hops on the way to a node, written in
//! OpenSSH's `ProxyJump` syntax, and what the user's ssh_config says about a
//! `Host` (HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile).
//!
//! Precedence: the inventory wins; ssh_config fills only what the inventory
//! leaves unset; pictl's defaults come last. ssh_config never weakens host-key
//! checking: `StrictHostKeyChecking` is not read, and a `UserKnownHostsFile`
//! of `/dev/null` or `none` is refused. The edge: parsing the file is the
//! `ssh2-config` crate's; nothing here connects (the transport walks the hops).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use crate::inventory::model::{JumpHost, SshAuth, SshSettings};
use crate::inventory::paths::resolve_path;
use crate::inventory::rules::{self, Violation};

/// Longer chains are refused (a `ProxyJump` loop in ssh_config ends here).
const MAX_HOPS: usize = 8;

const HOP_HINT: &str = "write \"[user@]host[:port]\", hops separated by commas (first hop first), \
                        or \"none\"";

/// One hop as written: `[user@]host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Hop {
    pub(super) user: Option<String>,
    pub(super) host: String,
    pub(super) port: Option<u16>,
}

/// A `ProxyJump` value, first hop first; `none` is the empty chain.
pub(super) fn parse_chain(s: &str) -> Result<Vec<Hop>, Violation> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let chain = s
        .split(',')
        .map(|h| parse_hop(h.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if chain.len() > MAX_HOPS {
        return Err(too_long());
    }
    Ok(chain)
}

fn too_long() -> Violation {
    Violation {
        message: format!("more than {MAX_HOPS} jump hosts"),
        hint: Some("is there a ProxyJump loop in ssh_config?".into()),
    }
}

fn parse_hop(s: &str) -> Result<Hop, Violation> {
    let bad = |why: &str| Violation {
        message: format!("\"{}\" is not a jump host: {why}", s.escape_debug()),
        hint: Some(HOP_HINT.into()),
    };
    let rest = s.strip_prefix("ssh://").unwrap_or(s);
    let (user, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (host, port) = split_port(rest).ok_or_else(|| bad("the port is not 1 to 65535"))?;
    if let Some(u) = user {
        rules::unix_user(u).map_err(|m| bad(&m))?;
    }
    rules::address(host).map_err(|v| bad(&v.message))?;
    Ok(Hop {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    if let Some(inner) = s.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        if after.is_empty() {
            return Some((host, None));
        }
        return Some((host, Some(port(after.strip_prefix(':')?)?)));
    }
    match s.split_once(':') {
        Some((host, p)) if !p.contains(':') => Some((host, Some(port(p)?))),
        _ => Some((s, None)),
    }
}

/// Reads and parses an ssh_config file. `Match` blocks and unknown keywords
/// are errors (ssh2-config does not evaluate `Match`; guessing would apply
/// the wrong settings).
pub(super) fn read_config(path: &Path) -> Result<SshConfig, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    SshConfig::default()
        .parse(
            &mut BufReader::new(file),
            ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| format!("cannot parse it: {e}"))
}

/// What ssh_config says about one `Host` name, in the keys pictl reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct HostEntry {
    pub(super) host_name: Option<String>,
    pub(super) user: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) identity_file: Option<PathBuf>,
    pub(super) proxy_jump: Option<String>,
    pub(super) known_hosts: Option<PathBuf>,
}

/// The entry for `host`: the first value of each key over every matching
/// `Host` block, as ssh(1) takes them.
pub(super) fn entry(config: &SshConfig, host: &str) -> Result<HostEntry, Violation> {
    let p = config.query(host);
    let known_hosts = p
        .unsupported_fields
        .get("userknownhostsfile")
        .and_then(|files| files.first())
        .map(String::as_str);
    // Of several identity files, the first that exists (ssh(1) tries each).
    let identity_file = p.identity_file.and_then(|files| {
        let first = files.first().cloned();
        files.into_iter().find(|f| f.exists()).or(first)
    });
    Ok(HostEntry {
        host_name: p.host_name.map(|h| h.replace("%h", host)),
        user: p.user,
        port: p.port,
        identity_file,
        proxy_jump: p.proxy_jump.map(|hops| hops.join(",")),
        known_hosts: known_hosts.map(|f| match f {
            f if f.eq_ignore_ascii_case("none") => PathBuf::from(NO_FILE),
            f => resolve_path(Path::new("/"), f),
        }),
    })
}

/// `UserKnownHostsFile none` and `/dev/null`: no key could ever be known.
const NO_FILE: &str = "/dev/null";

/// Refuses an entry whose known_hosts file would be `/dev/null`, where
/// every key is new (under accept-new, trusted every time).
pub(super) fn refuse_no_known_hosts(entry: &HostEntry, host: &str) -> Result<(), Violation> {
    if entry.known_hosts.as_deref() != Some(Path::new(NO_FILE)) {
        return Ok(());
    }
    Err(Violation {
        message: format!(
            "ssh_config sets UserKnownHostsFile {NO_FILE} (or none) for {host}: pictl always \
             checks host keys"
        ),
        hint: Some("set known_hosts in the inventory's [ssh] (the inventory wins)".into()),
    })
}

/// The chain's hops settled: each hop's own ssh_config entry, then the
/// node's settings (user, key, known_hosts) for what neither the hop nor
/// ssh_config says. A first hop that ssh_config sends through a `ProxyJump`
/// of its own is reached through that first, as `ssh -J` does.
pub(super) fn settle_hops(
    mut chain: Vec<Hop>,
    node: &SshSettings,
    config: Option<&SshConfig>,
) -> Result<Vec<JumpHost>, Violation> {
    let Some(config) = config else {
        return Ok(chain.iter().map(|h| settle_hop(h, node, None)).collect());
    };
    while let Some(first) = chain.first() {
        let before = match entry(config, &first.host)?.proxy_jump {
            Some(pj) => parse_chain(&pj)?,
            None => Vec::new(),
        };
        if before.is_empty() {
            break;
        }
        chain.splice(0..0, before);
        if chain.len() > MAX_HOPS {
            return Err(too_long());
        }
    }
    let settle = |h: &Hop| {
        let e = entry(config, &h.host)?;
        refuse_no_known_hosts(&e, &h.host)?;
        Ok(settle_hop(h, node, Some(&e)))
    };
    chain.iter().map(settle).collect()
}

fn settle_hop(hop: &Hop, node: &SshSettings, entry: Option<&HostEntry>) -> JumpHost {
    let e = entry.cloned().unwrap_or_default();
    let auth = match e.identity_file {
        Some(path) => SshAuth::Key {
            path,
            passphrase_env: None,
        },
        None => node.auth.clone(),
    };
    JumpHost {
        address: e.host_name.unwrap_or_else(|| hop.host.clone()),
        name: hop.host.clone(),
        port: hop.port.or(e.port).unwrap_or(22),
        user: hop
            .user
            .clone()
            .or(e.user)
            .unwrap_or_else(|| node.user.clone()),
        auth,
        known_hosts: e.known_hosts.unwrap_or_else(|| node.known_hosts.clone()),
    }
}

#[cfg(test)]
#[path = "jump_tests.rs"]
mod tests;
