//! The SSH handshake's trust decisions: which host-key algorithms to ask
//! for (those known_hosts can verify first), the known_hosts files to read
//! (the user's, then the system's), and the [`Handler`] that judges the key
//! or host certificate the server presents, before anything else is sent.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::Preferred;
use russh::client::{self, Handler};
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey, PublicKeyOrCertificate};

use super::error::TransportError;
use super::known_hosts::{self, CertVerdict, HostKeyPolicy, KnownHosts, Verdict};
use super::target::SshTarget;

/// russh's host-key algorithm list with the ones known_hosts has for this
/// host first, so the server presents a key we can verify instead of one we
/// would have to call unknown.
pub(super) fn prefer_known(known: &[Algorithm]) -> Vec<Algorithm> {
    let is_rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
    let same_kind = |a: &Algorithm, b: &Algorithm| a == b || (is_rsa(a) && is_rsa(b));
    let mut algs: Vec<Algorithm> = Preferred::DEFAULT.key.to_vec();
    algs.sort_by_key(|a| !known.iter().any(|k| same_kind(k, a)));
    algs
}

/// The user's known_hosts, then the system's (as OpenSSH reads them).
pub(super) fn load_known_hosts(target: &SshTarget) -> Result<KnownHosts, TransportError> {
    let mut known = KnownHosts::default();
    let files = std::iter::once(&target.known_hosts).chain(&target.system_known_hosts);
    for path in files {
        known
            .add_file(path)
            .map_err(|source| TransportError::KnownHostsRead {
                path: path.clone(),
                source,
            })?;
    }
    Ok(known)
}

pub(super) fn client_config(
    target: &SshTarget,
    known: &KnownHosts,
    lookup: &str,
) -> client::Config {
    let key = prefer_known(&known.algorithms_for(lookup));
    // Certificates only when a CA is trusted for this host: otherwise the
    // server would prove itself with something nothing here can check.
    let certificates = if known.has_authority_for(lookup) {
        key.clone()
    } else {
        Vec::new()
    };
    client::Config {
        keepalive_interval: Some(target.keepalive),
        keepalive_max: 3,
        nodelay: true,
        preferred: Preferred {
            key: Cow::Owned(key),
            host_key_certificates: Cow::Owned(certificates),
            ..Preferred::default()
        },
        ..client::Config::default()
    }
}

/// The russh callback that applies the host-key policy.
pub(super) struct HostKeyCheck {
    pub(super) host: String,
    pub(super) lookup: String,
    /// The name a host certificate must be valid for: the address as given.
    pub(super) principal: String,
    pub(super) path: PathBuf,
    pub(super) policy: HostKeyPolicy,
    pub(super) record: bool,
    /// The only new key to accept (by SHA256 fingerprint), when confirmed.
    pub(super) confirmed: Option<String>,
    pub(super) known: KnownHosts,
    /// Set to the key's fingerprint when a read-only run accepted a key it
    /// did not record: nothing vouches for that host, so no password goes to it.
    pub(super) unrecorded: Arc<Mutex<Option<String>>>,
}

#[derive(Debug)]
pub(super) enum CheckError {
    Ssh(russh::Error),
    /// Boxed: a TransportError is large and this travels through russh.
    Rejected(Box<TransportError>),
}

impl From<russh::Error> for CheckError {
    fn from(e: russh::Error) -> Self {
        CheckError::Ssh(e)
    }
}

impl HostKeyCheck {
    fn verdict(&self, key: &PublicKey) -> Result<(), TransportError> {
        let mut verdict = self.known.check(&self.lookup, key);
        let offered = key.fingerprint(HashAlg::Sha256).to_string();
        if verdict == Verdict::Unknown && self.confirmed.as_ref().is_some_and(|c| *c != offered) {
            return Err(TransportError::HostKeyUnknown {
                host: self.host.clone(),
                lookup: self.lookup.clone(),
                known_hosts: known_hosts::display_path(&self.path),
                fingerprint: offered,
            });
        }
        if verdict == Verdict::Unknown && self.policy == HostKeyPolicy::AcceptNew && !self.record {
            tracing::warn!(
                host = %self.host,
                fingerprint = %key.fingerprint(HashAlg::Sha256),
                "new host key accepted for this read-only run, not recorded"
            );
            *self.unrecorded.lock().unwrap_or_else(|e| e.into_inner()) = Some(offered);
            return Ok(());
        }
        if verdict == Verdict::Unknown && self.policy == HostKeyPolicy::AcceptNew {
            verdict = known_hosts::learn(&self.path, &self.lookup, key).map_err(|source| {
                TransportError::KnownHostsWrite {
                    host: self.host.clone(),
                    path: self.path.clone(),
                    source,
                }
            })?;
            if verdict == Verdict::Unknown {
                tracing::warn!(
                    host = %self.host,
                    fingerprint = %key.fingerprint(HashAlg::Sha256),
                    file = %self.path.display(),
                    "learned new host key"
                );
                return Ok(());
            }
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match verdict {
            Verdict::Known => Ok(()),
            Verdict::Unknown => Err(TransportError::HostKeyUnknown {
                host: self.host.clone(),
                lookup: self.lookup.clone(),
                known_hosts: known_hosts::display_path(&self.path),
                fingerprint,
            }),
            Verdict::Changed { path, line } => Err(TransportError::HostKeyChanged {
                host: self.host.clone(),
                known_hosts: known_hosts::display_path(&path),
                line,
                key_type: key.algorithm().as_str().to_owned(),
                fingerprint,
            }),
            Verdict::Revoked { path, line } => Err(self.revoked(&path, line, fingerprint)),
        }
    }

    fn revoked(&self, path: &Path, line: usize, fingerprint: String) -> TransportError {
        TransportError::HostKeyRevoked {
            host: self.host.clone(),
            known_hosts: known_hosts::display_path(path),
            line,
            fingerprint,
        }
    }

    /// A host certificate: trusted through an `@cert-authority` line, else
    /// (like OpenSSH) the key inside it is checked as a plain key.
    fn certificate_verdict(&self, cert: &Certificate) -> Result<(), TransportError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self
            .known
            .check_certificate(&self.lookup, &self.principal, cert, now)
        {
            CertVerdict::Trusted => Ok(()),
            CertVerdict::Revoked {
                path,
                line,
                fingerprint,
            } => Err(self.revoked(&path, line, fingerprint)),
            CertVerdict::Untrusted(reason) => {
                tracing::warn!(
                    host = %self.host,
                    %reason,
                    "host certificate not trusted; checking its key as a plain host key"
                );
                self.verdict(&PublicKey::new(cert.public_key().clone(), ""))
            }
        }
    }
}

impl Handler for HostKeyCheck {
    type Error = CheckError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verdict(key),
            PublicKeyOrCertificate::Certificate(cert) => self.certificate_verdict(cert),
        };
        verdict
            .map(|()| true)
            .map_err(|e| CheckError::Rejected(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_algorithms_are_asked_for_first() {
        let algs = prefer_known(&[Algorithm::Rsa { hash: None }]);
        assert!(matches!(algs[0], Algorithm::Rsa { .. }), "{algs:?}");
        let default = prefer_known(&[]);
        assert_eq!(default, Preferred::DEFAULT.key.to_vec());
    }
}
