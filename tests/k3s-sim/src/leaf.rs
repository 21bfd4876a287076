//! Leaf certificate lifetimes as K3s gives them: every leaf is signed for
//! 365 days (dynamiclistener cert/cert.go `NewSignedCert`), or for
//! `CATTLE_NEW_SIGNED_CERT_EXPIRATION_DAYS` days when that variable is set
//! in the process's environment; a server renews, at its start, each of its
//! leaves that expires within `CertificateRenewDays`
//! (pkg/daemons/control/deps/deps.go `createClientCertKey` through `expired`,
//! dynamiclistener's `IsCertExpired`). An agent's kubelet certificates are
//! signed afresh by the server at every agent start
//! (pkg/server/handlers/handlers.go `ServingKubeletCert`,
//! `ClientKubeletCert`), so any restart renews them. Here also: the kubelet
//! certificates themselves, written under `<data-dir>/agent/` as K3s's agent
//! keeps them.

use anyhow::{Context, Result};
use rcgen::{DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// pkg/daemons/config/types.go `CertificateRenewDays`: 120 since the May
/// 2025 releases (v1.32.5+k3s1, v1.33.1+k3s1; k3s-io/k3s#12232), 90 before.
pub const RENEW_DAYS: i64 = 120;
/// dynamiclistener cert/cert.go `NewSignedCert`: the validity in days.
pub const VALIDITY_ENV: &str = "CATTLE_NEW_SIGNED_CERT_EXPIRATION_DAYS";
const DEFAULT_DAYS: i64 = 365;

/// How long a leaf signed now lives: the variable's days when it parses as
/// an integer (Go's `strconv.Atoi`: no spaces), else 365 days.
pub fn validity() -> time::Duration {
    let days = match std::env::var(VALIDITY_ENV) {
        Ok(v) if !v.is_empty() => v.parse::<i64>().unwrap_or_else(|_| {
            crate::info!(
                "[NewSignedCert] expiration days from ENV ({v}) could not be converted to int (falling back to default value: {DEFAULT_DAYS})"
            );
            DEFAULT_DAYS
        }),
        _ => DEFAULT_DAYS,
    };
    time::Duration::days(days)
}

/// The validity bounds of a leaf signed now (dynamiclistener's
/// `CalculateNotBefore`: an hour back for clock skew).
pub fn bounds() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now - time::Duration::hours(1), now + validity())
}

/// A random serial, as `NewSignedCert` draws one (`rand.Int` below
/// MaxInt64); rcgen would otherwise derive it from the key, and a renewal
/// with the same key (the serving certificate's) would repeat it.
pub fn serial() -> rcgen::SerialNumber {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    b[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&b)
}

/// dynamiclistener's `IsCertExpired(cert, CertificateRenewDays)` on the
/// first certificate of `pem`: true when it expires within the window
/// (days left `<=` [`RENEW_DAYS`]), logging K3s's line. A file that does
/// not parse is not "expired" (deps.go `expired` returns false).
pub fn expiring(pem: &str) -> bool {
    let Ok((_, p)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = p.parse_x509() else {
        return false;
    };
    let not_after = cert.validity().not_after.to_datetime();
    let days = (not_after - time::OffsetDateTime::now_utc()).as_seconds_f64() / 86400.0;
    if days <= RENEW_DAYS as f64 {
        crate::info!(
            "certificate {} will expire in {days:.6} days at {not_after}",
            cert.subject()
        );
        return true;
    }
    false
}

/// A node's kubelet certificates as the server hands them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeletCerts {
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
}

/// Signs `node`'s kubelet client (`system:node:<node>` in `system:nodes`)
/// and serving certificate (the node name, localhost, 127.0.0.1 and
/// `node_ip`) with the cluster CA under `data_dir`, for [`validity`].
pub fn sign_kubelet(data_dir: &Path, node: &str, node_ip: &str) -> Result<KubeletCerts> {
    let tls = data_dir.join("server/tls");
    let ca_pem =
        std::fs::read_to_string(tls.join("server-ca.crt")).context("reading server-ca.crt")?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(tls.join("server-ca.key"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("parsing server-ca.crt")?;

    let client_key = KeyPair::generate()?;
    let mut p = crate::certs::leaf_params(
        &format!("system:node:{node}"),
        &[],
        &[ExtendedKeyUsagePurpose::ClientAuth],
    )?;
    p.distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    let client = p.signed_by(&client_key, &issuer)?;

    let mut sans = vec![node.to_string(), "localhost".into(), "127.0.0.1".into()];
    if !node_ip.is_empty() && !sans.iter().any(|s| s == node_ip) {
        sans.push(node_ip.to_string());
    }
    let serving_key = KeyPair::generate()?;
    let p = crate::certs::leaf_params(node, &sans, &[ExtendedKeyUsagePurpose::ServerAuth])?;
    let serving = p.signed_by(&serving_key, &issuer)?;
    Ok(KubeletCerts {
        client_cert: format!("{}{ca_pem}", client.pem()),
        client_key: client_key.serialize_pem(),
        serving_cert: format!("{}{ca_pem}", serving.pem()),
        serving_key: serving_key.serialize_pem(),
    })
}

/// Writes them where K3s's agent keeps them (pkg/agent/config/config.go:
/// `<data-dir>/agent/{client,serving}-kubelet.{crt,key}`, 0600).
pub fn write_kubelet(data_dir: &Path, c: &KubeletCerts) -> Result<()> {
    let agent = data_dir.join("agent");
    for (name, text) in [
        ("client-kubelet.crt", &c.client_cert),
        ("client-kubelet.key", &c.client_key),
        ("serving-kubelet.crt", &c.serving_cert),
        ("serving-kubelet.key", &c.serving_key),
    ] {
        crate::certs::write_private(&agent.join(name), text.as_bytes(), 0o600)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for_days(days: i64) -> String {
        let key = KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["x".to_string()]).expect("params");
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        p.self_signed(&key).expect("cert").pem()
    }

    #[test]
    fn only_certificates_within_k3s_renewal_window_are_expiring() {
        assert!(expiring(&cert_for_days(1)));
        assert!(expiring(&cert_for_days(119)));
        assert!(!expiring(&cert_for_days(121)));
        assert!(!expiring(&cert_for_days(365)));
        assert!(
            expiring(&cert_for_days(-3)),
            "an expired one is renewed too"
        );
        assert!(!expiring("not a certificate"));
    }
}
