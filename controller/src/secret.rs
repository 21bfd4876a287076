//! Secret values (the cluster token, a sudo password, a key passphrase).
//!
//! The type exists so that a secret cannot end up in a log line, an error
//! message or a `Debug` dump by accident: it only gives its bytes to code that
//! asks for them explicitly with [`Secret::expose`].

use std::fmt;

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: only for writing it to a 0600 file or a stdin pipe.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The password part of any token form K3s accepts: `K10<ca-hash>::<user>:<password>`
/// (the user is `server` or `node`), or a bare password (K3s's
/// pkg/clientaccess/token.go splits once at "::", then once at ":").
pub fn token_password(token: &str) -> &str {
    match token.split_once("::") {
        Some((_, rest)) => rest.split_once(':').map_or(rest, |(_, s)| s),
        None => token,
    }
}

/// The CA hash of a `K10<ca-hash>::<user>:<password>` token: what makes a
/// joining node check the cluster CA it is given (K3s's
/// pkg/clientaccess/token.go: a token without it trusts any CA on its first
/// connection). `None` for a bare password or a `K10::…` without a hash.
pub fn token_ca_hash(token: &str) -> Option<&str> {
    let (hash, _) = token.strip_prefix("K10")?.split_once("::")?;
    (!hash.is_empty()).then_some(hash)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("K10abc::server:hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "K10abc::server:hunter2");
    }
}

#[cfg(test)]
mod token_tests {
    #[test]
    fn every_token_form_yields_its_password_and_colons_in_it_stay() {
        assert_eq!(super::token_password("K10abc::server:s3cret"), "s3cret");
        assert_eq!(super::token_password("K10abc::node:a:b"), "a:b");
        assert_eq!(super::token_password("K10::server:x"), "x");
        assert_eq!(super::token_ca_hash("K10abc::server:a:b"), Some("abc"));
        assert_eq!(super::token_ca_hash("K10::server:x"), None);
        assert_eq!(super::token_ca_hash("a:b"), None);
        assert_eq!(super::token_ca_hash("K10abc"), None);
        assert_eq!(super::token_password("bare"), "bare");
    }
}

/// Whether a config key names a secret: `token`, `agent-token`,
/// `*password*`, `*-secret`, … (`secrets-encryption` is a switch, not one).
pub fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "token"
        || k == "auth"
        || k == "secret"
        || k.ends_with("-token")
        || k.ends_with("_token")
        || k.ends_with("-secret")
        || k.ends_with("_secret")
        || k.ends_with("access-key")
        || k.ends_with("secret-key")
        || k.contains("password")
        || k.contains("passwd")
}

/// A whitespace-separated word that looks like a K3s token (`K10…::server:…`,
/// `K10…::node:…`) or a URL with a password (`scheme://user:pass@host`).
pub fn redact_word(word: &str) -> Option<String> {
    let bare = word.trim_matches(['"', '\'']);
    if bare.contains("::server:") || bare.contains("::node:") || bare.starts_with("K10") {
        return Some(REDACTED.to_string());
    }
    let (scheme, rest) = word.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    let (user, _) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:{REDACTED}@{host}"))
}
