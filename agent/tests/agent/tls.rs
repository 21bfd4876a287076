//! The publishing client against a real TLS server: it trusts only the
//! cluster CA it was given, sends the bearer token, and reads the answer;
//! with `api_spki_sha256` pins, it also talks only to a server holding a
//! pinned key, and refuses an impostor with a leaf from the same CA (as
//! K3s's server-ca signs for any node) before sending a byte of the request.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use pictl_agent::publish::client::{Api, ClientError};
use pictl_agent::publish::pin::SpkiPin;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData, SanType};
use rustls_ring as rustls;
use sha2::{Digest, Sha256};

/// A CA and the serving certificates it signs.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A serving certificate (DER), its key (PKCS#8 DER) and the key's pin,
/// computed here from rcgen's SubjectPublicKeyInfo, not by the agent.
struct Leaf {
    cert: Vec<u8>,
    key: Vec<u8>,
    pin: String,
}

impl Ca {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let ca = p.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::from_ca_cert_pem(&ca.pem(), ca_key).expect("issuer");
        Self {
            pem: ca.pem(),
            issuer,
        }
    }

    /// A leaf for 127.0.0.1 with a fresh key.
    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let leaf = p.signed_by(&key, &self.issuer).expect("leaf");
        Leaf {
            cert: leaf.der().to_vec(),
            key: key.serialize_der(),
            pin: hex::encode(Sha256::digest(key.subject_public_key_info())),
        }
    }
}

/// A CA (PEM) and a serving certificate for 127.0.0.1 signed by it (DER, key DER).
fn pki() -> (String, Vec<u8>, Vec<u8>) {
    let ca = Ca::new();
    let leaf = ca.leaf();
    (ca.pem, leaf.cert, leaf.key)
}

/// Serves one connection over TLS, answering 200 `{}` once it has a request
/// head; sends every byte of request it received (none if the client gave up
/// in the handshake) when the connection ends.
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
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let complete = head.windows(4).any(|w| w == b"\r\n\r\n");
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        if complete {
            let _ = tls.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, rx)
}

/// What the server received, once its connection ended.
fn received(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the server saw a connection")
}

fn patch(api: &Api) -> Result<pictl_agent::publish::client::Answer, ClientError> {
    api.send(
        "PATCH",
        "/api/v1/nodes/n1/status",
        "application/strategic-merge-patch+json",
        b"{}",
    )
}

fn url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

fn pins(hex: &[&str]) -> Vec<SpkiPin> {
    hex.iter()
        .map(|h| SpkiPin::parse(h).expect("pin"))
        .collect()
}

#[test]
fn the_client_trusts_the_cluster_ca_and_sends_its_token() {
    let (ca, cert, key) = pki();
    let (port, heads) = serve_once(cert, key);
    let api = Api::new(
        &format!("https://127.0.0.1:{port}"),
        ca.as_bytes(),
        "tok-123".into(),
        &[],
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
    let head = received(&heads);
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
        &[],
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
    assert_eq!(received(&heads), "", "no request reached the impostor");
}

#[test]
fn with_the_right_pin_the_client_talks_to_the_api_server_as_before() {
    let ca = Ca::new();
    let real = ca.leaf();
    let other = ca.leaf();
    let (port, heads) = serve_once(real.cert, real.key);
    // An HA peer's or a rotation's pin beside it changes nothing.
    let pinned = pins(&[&other.pin, &real.pin]);
    let api = Api::new(&url(port), ca.pem.as_bytes(), "tok-123".into(), &pinned).expect("client");
    let answer = patch(&api).expect("answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "{}"));
    let head = received(&heads);
    assert!(
        head.contains("\r\nAuthorization: Bearer tok-123\r\n"),
        "{head}"
    );
}

#[test]
fn an_impostor_with_a_leaf_from_the_same_ca_is_refused_by_the_pin_before_any_request() {
    let ca = Ca::new();
    let real = ca.leaf();
    // Same CA, same IP SAN (127.0.0.1), another key: what root on any K3s
    // node can get signed by server-ca through the kubelet serving request.
    let impostor = ca.leaf();
    let (port, heads) = serve_once(impostor.cert, impostor.key);
    let pinned = pins(&[&real.pin]);
    let api = Api::new(&url(port), ca.pem.as_bytes(), "tok-123".into(), &pinned).expect("client");
    let err = patch(&api).expect_err("the impostor must be refused");
    assert!(matches!(err, ClientError::NotPinned(..)), "{err:?}");
    let chain = pictl_agent::error_chain(&err);
    assert!(
        chain.contains(&format!(
            "the API server's key (SubjectPublicKeyInfo sha256 {}) is not the pinned one",
            impostor.pin
        )),
        "{chain}"
    );
    assert_eq!(
        received(&heads),
        "",
        "not a byte of the request, so no token, reached the impostor"
    );
}

#[test]
fn without_a_pin_an_impostor_from_the_same_ca_gets_the_token_which_is_why_pins_exist() {
    let ca = Ca::new();
    let impostor = ca.leaf();
    let (port, heads) = serve_once(impostor.cert, impostor.key);
    let api = Api::new(&url(port), ca.pem.as_bytes(), "tok-123".into(), &[]).expect("client");
    let answer = patch(&api).expect("the CA alone accepts any leaf it signed");
    assert_eq!(answer.status, 200);
    assert!(
        received(&heads).contains("\r\nAuthorization: Bearer tok-123\r\n"),
        "the impostor holds the token"
    );
}

#[test]
fn a_pinned_key_with_a_leaf_from_another_ca_is_still_refused() {
    // The pin is checked after, not instead of, the CA: the right key in a
    // certificate the cluster CA did not sign is refused.
    let (ca, other_ca) = (Ca::new(), Ca::new());
    let real = other_ca.leaf();
    let (port, heads) = serve_once(real.cert, real.key);
    let pinned = pins(&[&real.pin]);
    let api = Api::new(&url(port), ca.pem.as_bytes(), "tok-123".into(), &pinned).expect("client");
    let err = patch(&api).expect_err("another CA's leaf must be refused");
    assert!(matches!(err, ClientError::ExchangeFailed(..)), "{err:?}");
    let chain = pictl_agent::error_chain(&err);
    // (rcgen's CAs share a name: webpki finds the wrong issuer's signature bad.)
    assert!(
        chain.contains("invalid peer certificate") && !chain.contains("pinned"),
        "{chain}"
    );
    assert_eq!(received(&heads), "");
}

#[test]
fn the_pin_in_publish_conf_reaches_the_client_the_agent_connects_with() {
    let ca = Ca::new();
    let (real, impostor) = (ca.leaf(), ca.leaf());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "tok-123\n").expect("token");
    std::fs::write(dir.path().join("ca.crt"), &ca.pem).expect("ca");
    let conf = |port: u16| {
        pictl_agent::publish::config::parse(&format!(
            "server = {}\nnode = n1\ntoken_file = {}\nca_file = {}\napi_spki_sha256 = {}\n",
            url(port),
            dir.path().join("token").display(),
            dir.path().join("ca.crt").display(),
            real.pin,
        ))
        .expect("publish.conf")
    };
    let mut connect = pictl_agent::publish::connect_files();
    let (port, heads) = serve_once(real.cert, real.key);
    let api = connect(&conf(port)).expect("client");
    let answer = api.send("PATCH", "/", "application/json", b"{}");
    assert_eq!(answer.expect("the pinned server").status, 200);
    assert!(received(&heads).contains("Bearer tok-123"));
    let (port, heads) = serve_once(impostor.cert, impostor.key);
    let api = connect(&conf(port)).expect("client");
    let err = api
        .send("PATCH", "/", "application/json", b"{}")
        .expect_err("the impostor");
    assert!(matches!(err, ClientError::NotPinned(..)), "{err:?}");
    assert_eq!(received(&heads), "");
}
