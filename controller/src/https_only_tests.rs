//! https is never downgraded by a redirect, shown on the real clients: the
//! download client and the registry's, each against a loopback https
//! server (rustls, certificates from openssl) that redirects to a plain
//! http server, which must never see a request.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// A CA and a leaf for 127.0.0.1 and `registry.test`, by openssl: (CA PEM,
/// leaf chain, leaf key).
fn certificates(
    dir: &std::path::Path,
) -> (
    Vec<u8>,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
) {
    let p = |f: &str| dir.join(f).display().to_string();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-subj", "/CN=test-ca", "-days", "1"],
        &["-keyout", &p("ca.key"), "-out", &p("ca.crt")],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=test",
            "-keyout",
            &p("leaf.key"),
            "-out",
            &p("leaf.csr"),
        ],
    ]
    .concat());
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:registry.test\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("ext"),
        "-out",
        &p("leaf.crt"),
    ]);
    let chain = CertificateDer::pem_file_iter(p("leaf.crt"))
        .expect("leaf")
        .map(|c| c.expect("pem"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(p("leaf.key")).expect("key");
    (std::fs::read(p("ca.crt")).expect("ca"), chain, key)
}

/// A plain http server that counts the connections it gets.
fn counting_http() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (url, hits)
}

/// An https server answering every request with a 302 to `to`; its port.
fn redirecting_https(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    to: String,
) -> u16 {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config"),
    );
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).expect("conn");
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let resp = format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tls.write_all(resp.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

fn setup() -> (
    tempfile::TempDir,
    reqwest::Certificate,
    u16,
    String,
    Arc<AtomicUsize>,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let (ca, chain, key) = certificates(dir.path());
    let (http, hits) = counting_http();
    let port = redirecting_https(chain, key, http.clone());
    (
        dir,
        reqwest::Certificate::from_pem(&ca).expect("ca"),
        port,
        http,
        hits,
    )
}

/// The error names the refused downgrade, and the http server saw nothing.
fn refused_unasked(text: &str, http: &str, hits: &AtomicUsize) {
    assert!(
        text.contains(&format!("refusing a redirect from https to {http}/plain")),
        "{text}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the http server was asked");
}

#[tokio::test]
async fn the_download_client_refuses_an_https_redirect_to_http_and_sends_it_nothing() {
    let (_dir, ca, port, http, hits) = setup();
    let client = crate::download::client_with(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(5),
        |b| b.add_root_certificate(ca),
    );
    let url = format!("https://127.0.0.1:{port}/k3s");
    let err = crate::download::get_limited(&client, &url, 1 << 20)
        .await
        .expect_err("downgrade refused");
    refused_unasked(&crate::error_chain(&err), &http, &hits);
}

#[tokio::test]
async fn the_registry_client_refuses_an_https_redirect_to_http_and_sends_it_nothing() {
    let (_dir, ca, port, http, hits) = setup();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let registry = crate::workload::registry::Registry::with(|b| {
        b.add_root_certificate(ca.clone())
            .resolve("registry.test", addr)
    });
    let image = crate::workload::reference::ImageRef::parse(&format!("registry.test:{port}/app:1"))
        .expect("image");
    assert!(
        !image.is_loopback(),
        "the registry must be reached over https"
    );
    let err = registry
        .platforms(&image)
        .await
        .expect_err("downgrade refused");
    refused_unasked(&crate::error_chain(&err), &http, &hits);
}
