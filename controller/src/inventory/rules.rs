//! Syntax rules for the values an inventory holds (names, addresses,
//! versions, labels). Pure functions returning why a value is wrong.

use std::net::IpAddr;

/// `vX.Y.Z+k3sN`, as K3s tags its releases.
pub fn is_k3s_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Some((semver, build)) = rest.split_once('+') else {
        return false;
    };
    let parts: Vec<&str> = semver.split('.').collect();
    let numeric = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && build.strip_prefix("k3s").is_some_and(numeric)
}

/// K3s release channels: `stable`, `latest`, `testing` or `vX.Y`.
pub fn is_channel(c: &str) -> bool {
    matches!(c, "stable" | "latest" | "testing")
        || c.strip_prefix('v').is_some_and(|r| {
            let parts: Vec<&str> = r.split('.').collect();
            parts.len() == 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// An RFC 1123 label (cluster names end up in file names and kube contexts).
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err(format!("\"{s}\" must be 1 to 63 characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || s.starts_with('-')
        || s.ends_with('-')
    {
        return Err(format!("\"{s}\" is not a valid name"));
    }
    Ok(())
}

/// A Kubernetes node name (DNS-1123 subdomain).
pub fn node_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!(
            "node name \"{}\" must be 1 to 253 characters",
            s.escape_debug()
        ));
    }
    for part in s.split('.') {
        if dns_label(part).is_err() {
            return Err(format!("\"{}\" is not a valid node name", s.escape_debug()));
        }
    }
    Ok(())
}

/// An IP address or a DNS host name.
pub fn address(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let looks_numeric = s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if looks_numeric {
        return Err(format!("\"{s}\" is not a valid IP address"));
    }
    let host_ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if host_ok {
        Ok(())
    } else {
        Err(format!("\"{}\" is not a valid address", s.escape_debug()))
    }
}

pub fn unix_user(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!("\"{}\" is not a valid user name", s.escape_debug()))
    }
}

pub fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn qualified_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `[prefix/]name`, as Kubernetes label keys.
pub fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| node_name(p).is_ok());
    if prefix_ok && qualified_name(name) {
        Ok(())
    } else {
        Err(format!("\"{}\" is not a valid label key", k.escape_debug()))
    }
}

pub fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || qualified_name(v) {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" is not a valid label value",
            v.escape_debug()
        ))
    }
}

/// `key[=value]:Effect`, as `--node-taint` takes it.
pub fn taint(t: &str) -> Result<(), String> {
    let bad = || format!("\"{}\" is not a valid taint", t.escape_debug());
    let (kv, effect) = t.rsplit_once(':').ok_or_else(bad)?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "taint effect \"{}\" is not valid",
            effect.escape_debug()
        ));
    }
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    label_key(k).map_err(|_| bad())?;
    label_value(v).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3s_versions_need_the_k3s_build_suffix() {
        assert!(is_k3s_version("v1.32.5+k3s1"));
        assert!(!is_k3s_version("1.32.5+k3s1"));
        assert!(!is_k3s_version("v1.32.5"));
        assert!(!is_k3s_version("v1.32+k3s1"));
        assert!(!is_k3s_version("v1.32.5+rke2r1"));
    }

    #[test]
    fn addresses_accept_ips_and_hostnames_only() {
        assert!(address("192.168.0.196").is_ok());
        assert!(address("fe80::1").is_ok());
        assert!(address("boolayan.local").is_ok());
        assert!(address("192.168.0.300").is_err());
        assert!(address("a b").is_err());
        assert!(address("host;rm -rf /").is_err());
    }

    #[test]
    fn taints_follow_kubernetes_syntax() {
        assert!(taint("dedicated=edge:NoSchedule").is_ok());
        assert!(taint("gpu:NoExecute").is_ok());
        assert!(taint("dedicated=edge").is_err());
        assert!(taint("x=y:Sometimes").is_err());
    }
}
