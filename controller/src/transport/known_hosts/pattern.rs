//! The host-pattern field of a known_hosts line, matched like OpenSSH does:
//! comma-separated patterns with `*`/`?` wildcards, `!` negation, and hashed
//! names (`|1|base64 salt|base64 hmac`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Whether `patterns` (one known_hosts field) selects `name` (already in
/// known_hosts form: lower-case, `[host]:port` when the port is not 22).
/// A matching negated pattern wins over any positive one.
pub fn matches(patterns: &str, name: &str) -> bool {
    let mut positive = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if matches_one(negated, name) {
                return false;
            }
        } else if matches_one(pattern, name) {
            positive = true;
        }
    }
    positive
}

fn matches_one(pattern: &str, name: &str) -> bool {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        return matches_hashed(hashed, name);
    }
    glob(pattern.to_ascii_lowercase().as_bytes(), name.as_bytes())
}

fn matches_hashed(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    // HMAC accepts keys of any length, so this cannot fail; a salt it did
    // refuse would just be a name that matches nothing.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `name` hashed as OpenSSH's `HashKnownHosts` writes it:
/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, with a fresh 20-byte salt
/// (OpenSSH's hostfile.c `host_hash`).
pub fn hash_name(name: &str) -> String {
    let salt: [u8; 20] = rand::random();
    let mut mac = Hmac::<Sha1>::new_from_slice(&salt).expect("HMAC takes any key length");
    mac.update(name.as_bytes());
    let hash = mac.finalize().into_bytes();
    format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(hash))
}

/// Whether a known_hosts text already hides its names (any entry hashed):
/// a name learned into it is hashed too, or it would give away the hosts
/// the others hide.
pub fn uses_hashing(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().find(|w| !w.starts_with('@')))
        .any(|names| names.starts_with("|1|"))
}

/// `*` matches any run (including empty), `?` exactly one byte.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lists_match_any_member() {
        assert!(matches("10.77.0.11,node1", "10.77.0.11"));
        assert!(matches("10.77.0.11,node1", "node1"));
        assert!(!matches("10.77.0.11,node1", "10.77.0.1"));
        assert!(!matches("10.77.0.11,node1", "node"));
    }

    #[test]
    fn ports_are_part_of_the_name() {
        assert!(matches("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
        assert!(!matches("127.0.0.1", "[127.0.0.1]:2222"));
    }

    #[test]
    fn wildcards_and_negation() {
        assert!(matches("*.lan", "pi.lan"));
        assert!(matches("node?", "node1"));
        assert!(!matches("node?", "node12"));
        assert!(!matches("*.lan,!evil.lan", "evil.lan"));
        assert!(matches("*.lan,!evil.lan", "good.lan"));
        assert!(
            !matches("!evil.lan", "good.lan"),
            "negation alone selects nothing"
        );
    }

    #[test]
    fn patterns_are_case_insensitive() {
        assert!(matches("Node1.LAN", "node1.lan"));
    }

    /// Written by `ssh-keygen -H` for `node1`: the RustCrypto HMAC-SHA1 must
    /// agree with OpenSSH's.
    #[test]
    fn hashed_name_from_ssh_keygen_matches_only_its_host() {
        let hashed = "|1|7m16hVRw4Zvl+m0QZhkJ39MwX3I=|7j2NTB5mrE+9vG/5dC2uYFckStY=";
        assert!(matches(hashed, "node1"));
        assert!(!matches(hashed, "node2"));
        assert!(matches(&format!("other,{hashed}"), "node1"));
    }

    #[test]
    fn malformed_hashed_names_never_match() {
        assert!(!matches("|1|notbase64!|x", "node1"));
        assert!(!matches("|1|", "node1"));
    }
}
