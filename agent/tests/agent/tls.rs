//! The publishing client against a real TLS server: it trusts only the
//! cluster CA it was given, sends the bearer token, and reads the answer.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;

use pictl_agent::publish::client::{Api, ClientError};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_ring as rustls;

/// A CA (PEM) and a serving certificate for 127.0.0.1 signed by it (DER, key DER).
fn pki() -> (String, Vec<u8>, Vec<u8>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let ca = p.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::from_ca_cert_pem(&ca.pem(), ca_key).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let leaf = p.signed_by(&key, &issuer).expect("leaf");
    (ca.pem(), leaf.der().to_vec(), key.serialize_der())
}

/// Serves one connection over TLS, answering 200 `{}`; sends the request head.
fn serve_once(cert: Vec<u8>, key: Vec<u8>) -> (u16, mpsc::Receiver<String>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
        )
        .expect("server config");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((tcp, _)) = l.accept() else { return };
        let conn = rustls::ServerConnection::new(Arc::new(cfg)).expect("conn");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = vec![0u8; 8192];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        let _ = tls.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        );
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    (port, rx)
}

#[test]
fn the_client_trusts_the_cluster_ca_and_sends_its_token() {
    let (ca, cert, key) = pki();
    let (port, heads) = serve_once(cert, key);
    let api = Api::new(
        &format!("https://127.0.0.1:{port}"),
        ca.as_bytes(),
        "tok-123".into(),
    )
    .expect("client");
    let answer = api
        .send(
            "PATCH",
            "/api/v1/nodes/n1/status",
            "application/strategic-merge-patch+json",
            b"{}",
        )
        .expect("answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "{}"));
    let head = heads.recv().expect("request head");
    assert!(
        head.starts_with("PATCH /api/v1/nodes/n1/status HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nAuthorization: Bearer tok-123\r\n"),
        "{head}"
    );
}

#[test]
fn a_server_with_a_certificate_from_another_ca_is_refused() {
    let (_, cert, key) = pki();
    let (other_ca, _, _) = pki();
    let (port, heads) = serve_once(cert, key);
    let api = Api::new(
        &format!("https://127.0.0.1:{port}"),
        other_ca.as_bytes(),
        "tok-123".into(),
    )
    .expect("client");
    let err = api
        .send(
            "PATCH",
            "/api/v1/nodes/n1/status",
            "application/json",
            b"{}",
        )
        .expect_err("another CA's server must be refused");
    assert!(matches!(err, ClientError::ExchangeFailed(..)), "{err:?}");
    let chain = pictl_agent::error_chain(&err);
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate"),
        "{chain}"
    );
    assert!(heads.try_recv().is_err(), "no request reached the impostor");
}
