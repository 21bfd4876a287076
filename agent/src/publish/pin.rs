//! Pinning the API server's key (`api_spki_sha256` in `publish.conf`).
//!
//! The cluster CA alone is not enough to know the API server: K3s's
//! server-ca also signs every node's kubelet serving certificate, with the
//! IP SANs the requesting node asks for, so root on any node can hold a leaf
//! from the same CA carrying the API server's IP. With pins configured, the
//! agent's TLS client ([`PinnedVerifier`]) first verifies the server as
//! before (chain to the CA, validity, name or IP SAN, by rustls'
//! [`WebPkiServerVerifier`]) and then requires the end-entity certificate's
//! SubjectPublicKeyInfo (its DER, hashed with sha256) to be one of the pins.
//! Anything else fails the handshake, so an impostor never sees a byte of a
//! request, its token least of all.
//!
//! A pin names a key, not a certificate: K3s's serving certificate
//! (dynamiclistener's, shared by HA servers) is renewed with the same key;
//! `k3s certificate rotate` makes a new one, and pictl writes the new pin.

use std::fmt;
use std::sync::Arc;

use rustls_ring as rustls;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

/// The sha256 of a DER SubjectPublicKeyInfo; shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin([u8; 32]);

impl SpkiPin {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// The pin of a certificate's key; `None` if the certificate is not X.509.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Option<Self> {
        let ee = webpki::EndEntityCert::try_from(cert).ok()?;
        Some(Self::of_spki(ee.subject_public_key_info().as_ref()))
    }

    /// Exactly 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if s.len() != 64 || !s.bytes().all(lower_hex) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

/// The verifier's refusal of a server that is not the pinned one.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PinError {
    /// `None`: the leaf could not be read as X.509 (webpki accepted it, so
    /// this does not happen; refused all the same).
    #[error(
        "the API server's key (SubjectPublicKeyInfo sha256 {}) is not the pinned one \
         (api_spki_sha256 in publish.conf); refused before sending anything",
        .presented.map_or_else(|| "unreadable".to_owned(), |p| p.to_string())
    )]
    NotPinned { presented: Option<SpkiPin> },
}

impl PinError {
    /// The pin error inside a rustls error, if the handshake failed on one.
    pub fn in_rustls(e: &rustls::Error) -> Option<&Self> {
        match e {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<Self>()
            }
            _ => None,
        }
    }
}

/// WebPKI verification against the cluster CA, then the pin check.
#[derive(Debug)]
pub struct PinnedVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pins: Vec<SpkiPin>,
}

impl PinnedVerifier {
    /// `pins` must not be empty (an empty list would refuse every server).
    pub fn new(webpki: Arc<WebPkiServerVerifier>, pins: Vec<SpkiPin>) -> Self {
        debug_assert!(!pins.is_empty(), "no pins: use the WebPKI verifier alone");
        Self { webpki, pins }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let presented = SpkiPin::of_certificate(end_entity);
        match presented {
            Some(p) if self.pins.contains(&p) => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinError::NotPinned { presented })),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_64_lowercase_hex_digits() {
        let good = "0123456789abcdef".repeat(4);
        let pin = SpkiPin::parse(&good).expect("good");
        assert_eq!(pin.to_string(), good);
        for bad in [
            "",
            &good[..63],
            &format!("{good}0"),
            &good.to_uppercase(),
            &format!("{}g", &good[..63]),
            &format!(" {}", &good[..63]),
        ] {
            assert_eq!(SpkiPin::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_pin_of_a_key_is_the_sha256_of_its_der() {
        // sha256 of the empty input, a known value.
        assert_eq!(
            SpkiPin::of_spki(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
