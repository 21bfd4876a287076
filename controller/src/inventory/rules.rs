//! Rules for the values an inventory holds (names, addresses, versions,
//! labels, the words of its closed choices). Pure functions returning the
//! value or why it is wrong; where the problem is, the loader knows.

use std::net::IpAddr;

use super::model::{AgentMetrics, HostKeyPolicy, ImageArchCheck, Role};
use crate::arch::Arch;

/// Why a value breaks a rule, and how to fix it when the rule knows better
/// than the place that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub message: String,
    pub hint: Option<String>,
}

impl Violation {
    fn new(message: String, hint: impl Into<String>) -> Self {
        Self {
            message,
            hint: Some(hint.into()),
        }
    }
}

impl From<String> for Violation {
    fn from(message: String) -> Self {
        Self {
            message,
            hint: None,
        }
    }
}

/// `vX.Y.Z+k3sN`, as K3s tags its releases.
pub fn is_k3s_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Some((semver, build)) = rest.split_once('+') else {
        return false;
    };
    let numeric = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    // The testing channel's release candidates: vX.Y.Z-rcN+k3sM.
    let (semver, rc) = match semver.split_once('-') {
        Some((v, pre)) => (v, pre.strip_prefix("rc").is_some_and(numeric)),
        None => (semver, true),
    };
    let parts: Vec<&str> = semver.split('.').collect();
    rc && parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && build.strip_prefix("k3s").is_some_and(numeric)
}

/// [`is_k3s_version`], saying why not.
pub fn k3s_version(v: &str) -> Result<(), String> {
    if is_k3s_version(v) {
        Ok(())
    } else {
        Err(format!("\"{v}\" is not a K3s release version"))
    }
}

/// [`is_channel`], saying why not.
pub fn channel(c: &str) -> Result<(), String> {
    if is_channel(c) {
        Ok(())
    } else {
        Err(format!("\"{c}\" is not a K3s channel"))
    }
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

/// An IP address a node can be reached at, or a DNS host name.
///
/// An IPv4 address must be in its one canonical form: `inet_aton` (and so
/// `ssh`, `curl`, glibc) reads `10.1`, `0x7f.1` or `010.0.0.1` as addresses
/// other tools read differently or not at all.
pub fn address(s: &str) -> Result<(), Violation> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Err(Violation::new(
                format!("\"{s}\" is the unspecified address, which reaches no node"),
                "write the node's own address",
            ));
        }
        if ip.is_ipv6() || ip.to_string() == s {
            return Ok(());
        }
    }
    if looks_like_ipv4(s) {
        let message = format!("\"{}\" is not a valid IP address", s.escape_debug());
        if s.is_empty() || is_dotted_decimal(s) {
            return Err(message.into());
        }
        return Err(Violation::new(
            message,
            "write an IPv4 address as four decimal numbers without leading zeros, e.g. 10.0.0.1; \
             tools read hex, octal and shortened forms differently",
        ));
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
        Err(format!("\"{}\" is not a valid address", s.escape_debug()).into())
    }
}

/// A name whose last label is a number (decimal or `0x` hex) is read as an
/// IPv4 address by `inet_aton` and by URL parsers (WHATWG "ends in a number").
fn looks_like_ipv4(s: &str) -> bool {
    let last = s.rsplit('.').next().unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    let decimal = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit());
    hex || decimal || s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Four decimal parts without leading zeros (whatever their range).
fn is_dotted_decimal(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

/// An absolute path without `..` (a file on a node).
pub fn absolute_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} is not an absolute path"));
    }
    if p.split('/').any(|c| c == "..") || p.contains(char::is_control) {
        return Err(format!("{p:?}: no \"..\" or control characters"));
    }
    Ok(())
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

/// [`is_env_name`], saying why not.
pub fn env_name(s: &str) -> Result<(), String> {
    if is_env_name(s) {
        Ok(())
    } else {
        Err(format!("\"{s}\" is not an environment variable name"))
    }
}

/// The first bytes of an OpenSSH (or RFC 4716) public key file.
pub fn is_public_key(head: &[u8]) -> bool {
    const STARTS: [&[u8]; 5] = [
        b"ssh-",
        b"ecdsa-sha2-",
        b"sk-ssh-",
        b"sk-ecdsa-",
        b"---- BEGIN SSH2 PUBLIC KEY",
    ];
    STARTS.iter().any(|s| head.starts_with(s))
}

/// An http(s) URL with a host part.
pub fn http_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
        Err(format!("\"{s}\" is not an http(s) URL"))
    } else {
        Ok(())
    }
}

pub fn role(s: &str) -> Result<Role, Violation> {
    match s {
        "server" => Ok(Role::Server),
        "agent" => Ok(Role::Agent),
        other => {
            let hint = match other {
                "master" | "control-plane" | "controlplane" => {
                    "K3s calls a control-plane node \"server\""
                }
                "worker" | "node" => "K3s calls a worker \"agent\"",
                _ => "expected \"server\" or \"agent\"",
            };
            Err(Violation::new(format!("invalid role \"{other}\""), hint))
        }
    }
}

pub fn arch(s: &str) -> Result<Arch, Violation> {
    s.parse::<Arch>().map_err(|_| {
        Violation::new(
            format!("unknown arch \"{s}\""),
            "expected \"amd64\", \"arm64\" or \"armhf\"",
        )
    })
}

pub fn host_key_policy(s: &str) -> Result<HostKeyPolicy, Violation> {
    match s {
        "strict" => Ok(HostKeyPolicy::Strict),
        "accept-new" => Ok(HostKeyPolicy::AcceptNew),
        other => {
            let hint = match other {
                "no" | "off" | "none" | "insecure" | "false" => {
                    "pictl never turns host key checking off; use \"accept-new\" for a first contact"
                }
                _ => "expected \"strict\" or \"accept-new\"",
            };
            Err(Violation::new(
                format!("invalid host key policy \"{other}\""),
                hint,
            ))
        }
    }
}

pub fn image_arch_check(s: &str) -> Result<ImageArchCheck, Violation> {
    match s {
        "warn" => Ok(ImageArchCheck::Warn),
        "require" => Ok(ImageArchCheck::Require),
        "off" => Ok(ImageArchCheck::Off),
        other => Err(Violation::new(
            format!("invalid image_arch_check \"{other}\""),
            "expected \"warn\", \"require\" or \"off\"",
        )),
    }
}

pub fn agent_metrics(s: &str) -> Result<AgentMetrics, Violation> {
    match s {
        "loopback" => Ok(AgentMetrics::Loopback),
        "pod-network" => Ok(AgentMetrics::PodNetwork),
        other => Err(Violation::new(
            format!("invalid metrics \"{other}\""),
            "expected \"loopback\" (default) or \"pod-network\"",
        )),
    }
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

/// Labels the kubelet may set on its own Node (k8s.io/kubelet's
/// `IsKubeletLabel`, `pkg/apis/well_known_labels.go`); it refuses to start
/// with any other label in the kubernetes.io or k8s.io namespaces.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
];
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn in_namespace(namespace: &str, ns: &str) -> bool {
    namespace == ns || namespace.ends_with(&format!(".{ns}"))
}

/// A node label the kubelet will set on its own Node (K3s passes node
/// labels to the kubelet's `--node-labels`).
pub fn kubelet_label(k: &str) -> Result<(), Violation> {
    let namespace = k.split_once('/').map_or("", |(ns, _)| ns);
    let reserved = in_namespace(namespace, "kubernetes.io") || in_namespace(namespace, "k8s.io");
    // Role labels are refused by the kubelet but set by pictl through the API.
    let allowed = KUBELET_LABELS.contains(&k)
        || namespace == "node-role.kubernetes.io"
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|ns| in_namespace(namespace, ns));
    if !reserved || allowed {
        return Ok(());
    }
    let hint = "in kubernetes.io and k8s.io the kubelet accepts only the node.kubernetes.io/ and \
                kubelet.kubernetes.io/ prefixes and a few well-known labels (pictl sets node-role.kubernetes.io/ \
                roles through the API); use your own prefix";
    Err(Violation::new(
        format!(
            "the kubelet refuses to start with the label \"{}\"",
            k.escape_debug()
        ),
        hint,
    ))
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

    #[test]
    fn release_candidates_of_the_testing_channel_are_versions() {
        assert!(is_k3s_version("v1.33.0-rc1+k3s1"));
        assert!(is_k3s_version("v1.32.5+k3s1"));
        for bad in [
            "v1.33.0-beta1+k3s1",
            "v1.33.0-rc+k3s1",
            "v1.33.0-+k3s1",
            "v1.33-rc1+k3s1",
        ] {
            assert!(!is_k3s_version(bad), "{bad}");
        }
    }

    #[test]
    fn labels_the_kubelet_refuses_are_refused_and_the_rest_pass() {
        for ok in [
            "zone",
            "example.com/role",
            "node.kubernetes.io/pool",
            "a.node.kubernetes.io/x",
            "kubelet.kubernetes.io/x",
            "topology.kubernetes.io/zone",
            "kubernetes.io/arch",
        ] {
            assert!(kubelet_label(ok).is_ok(), "{ok}");
        }
        assert!(
            kubelet_label("node-role.kubernetes.io/worker").is_ok(),
            "set through the API"
        );
        for bad in [
            "x.node-role.kubernetes.io/y",
            "kubernetes.io/role",
            "x.k8s.io/y",
            "k8s.io/z",
        ] {
            let why = kubelet_label(bad).expect_err(bad);
            assert!(why.message.contains("refuses to start"), "{}", why.message);
        }
        let why = kubelet_label("kubernetes.io/role").expect_err("role");
        assert!(why.hint.unwrap_or_default().contains("your own prefix"));
    }

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
    fn non_canonical_ipv4_forms_are_refused_with_a_hint() {
        for bad in [
            "10.1",
            "0x7f.1",
            "010.0.0.1",
            "0x7f000001",
            "127.0.0.0x1",
            "1.2.3.4.5",
            "host.123",
        ] {
            let why = address(bad).expect_err(bad);
            assert_eq!(why.message, format!("\"{bad}\" is not a valid IP address"));
            assert!(
                why.hint.is_some_and(|h| h.contains("four decimal numbers")),
                "{bad}"
            );
        }
        // Out of range but well formed: no canonical-form hint.
        assert_eq!(address("10.0.0.256").expect_err("range").hint, None);
        assert!(address("0.0.0.0").is_err());
        assert!(address("::").is_err());
        assert!(address("10.0.0.1").is_ok());
        assert!(
            address("0x7f.example").is_ok(),
            "a host name whose last label is a word"
        );
        assert!(address("foo.").expect_err("dot").hint.is_none());
    }

    #[test]
    fn taints_follow_kubernetes_syntax() {
        assert!(taint("dedicated=edge:NoSchedule").is_ok());
        assert!(taint("gpu:NoExecute").is_ok());
        assert!(taint("dedicated=edge").is_err());
        assert!(taint("x=y:Sometimes").is_err());
    }
}
