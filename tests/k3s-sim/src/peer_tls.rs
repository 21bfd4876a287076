//! The etcd peer certificate: what servers present to each other on the peer
//! port, both ways (K3s's `server/tls/etcd/peer-server-client.crt`, signed by
//! its etcd peer CA; here by the one cluster CA). The peer listener admits
//! only this certificate's common name, so an admin client certificate,
//! which every kubeconfig holds, cannot speak replication.

use anyhow::{Context, Result};
use rcgen::{ExtendedKeyUsagePurpose, Issuer, KeyPair};
use std::path::Path;

pub const PEER_CN: &str = "etcd-peer";

/// (certificate, key) PEM, issued once per set of addresses, and again
/// within K3s's renewal window ([`crate::leaf::expiring`]).
pub fn ensure(data_dir: &Path, sans: &[String]) -> Result<(String, String)> {
    let tls = data_dir.join("server/tls");
    let dir = tls.join("etcd");
    let (crt, key, sans_file) = (
        dir.join("peer-server-client.crt"),
        dir.join("peer-server-client.key"),
        dir.join("peer-server-client.sans"),
    );
    let ca_pem =
        std::fs::read_to_string(tls.join("server-ca.crt")).context("reading server-ca.crt")?;
    // The SAN record also names the CA, so a new CA (a join) re-issues it.
    let want = format!("{}\n{}", crate::certs::ca_hash(&ca_pem), sans.join("\n"));
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    if let (Some(c), Some(k), Some(s)) = (read(&crt), read(&key), read(&sans_file))
        && s == want
        && !crate::leaf::expiring(&c)
    {
        return Ok((c, k));
    }
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(tls.join("server-ca.key"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("parsing server-ca.crt")?;
    let k = KeyPair::generate()?;
    let p = crate::certs::leaf_params(
        PEER_CN,
        sans,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    let cert = p.signed_by(&k, &issuer)?;
    crate::certs::write_private(&key, k.serialize_pem().as_bytes(), 0o600)?;
    crate::certs::write_private(&crt, cert.pem().as_bytes(), 0o644)?;
    crate::certs::write_private(&sans_file, want.as_bytes(), 0o644)?;
    Ok((cert.pem(), k.serialize_pem()))
}

/// Whether a verified peer certificate (DER) is a peer's, not a client's.
pub fn is_peer(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
        c.subject()
            .iter_common_name()
            .any(|cn| cn.as_str() == Ok(PEER_CN))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn der(pem: &str) -> Vec<u8> {
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }

    #[test]
    fn only_the_peer_certificate_passes_the_peer_check() {
        let d = std::env::temp_dir().join(format!("peer-tls-{}", crate::certs::random_hex(4)));
        let tls = crate::certs::ensure(&d, &["127.0.0.1".into()]).expect("cluster tls");
        let (cert, _) = ensure(&d, &["10.0.0.1".into(), "s1".into()]).expect("peer");
        assert!(is_peer(&der(&cert)));
        assert!(
            !is_peer(&der(&tls.admin_cert_pem)),
            "the admin certificate is no peer"
        );
        assert!(!is_peer(&der(&tls.serving_cert_pem)));
        // Kept while nothing changed; issued again for new addresses.
        assert_eq!(
            ensure(&d, &["10.0.0.1".into(), "s1".into()])
                .expect("again")
                .0,
            cert
        );
        assert_ne!(
            ensure(&d, &["10.0.0.2".into(), "s1".into()])
                .expect("moved")
                .0,
            cert
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
