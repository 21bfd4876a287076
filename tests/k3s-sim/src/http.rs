//! HTTP plumbing on hyper 1 without extra crates: a body type that is either a
//! complete buffer or a stream of chunks (watches), request body collection with a
//! size limit, TLS configuration for the API listener, and a minimal HTTPS client
//! the agent uses to talk to the server.

use anyhow::{Context, Result, anyhow, bail};
use hyper::body::{Bytes, Frame, Incoming};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Some(b.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(Some(b)) => hyper::body::SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => hyper::body::SizeHint::with_exact(0),
            Body::Stream(_) => hyper::body::SizeHint::default(),
        }
    }
}

pub async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>> {
    use hyper::body::Body as _;
    let mut out = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(e)) => return Err(anyhow!("reading request body: {e}")),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    out.extend_from_slice(&data);
                    if out.len() > limit {
                        bail!("request body larger than {limit} bytes");
                    }
                }
            }
        }
    }
    Ok(out)
}

pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("parsing certificate PEM: {e:?}"))
}

pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| anyhow!("parsing key PEM: {e:?}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The API listener: client certificates from the cluster CA authenticate; a
/// connection without one is allowed so `/cacerts`, `/ping` and the token-auth
/// `/v1-k3s/` paths work, and everything else answers 401 like the apiserver.
pub fn server_config(tls: &crate::certs::ClusterTls) -> Result<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(&tls.ca_pem)? {
        roots.add(c).context("adding CA to client roots")?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .context("building client verifier")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem(&tls.serving_cert_pem)?,
            key_from_pem(&tls.serving_key_pem)?,
        )
        .context("loading serving certificate")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts any server certificate: used only to fetch `/cacerts`, whose content is
/// then checked against the token's CA hash (what K3s agents do).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn insecure_client() -> Result<Arc<rustls::ClientConfig>> {
    let p = provider();
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(p)))
            .with_no_client_auth(),
    ))
}

/// Mutual TLS between servers: the other side must present a certificate of
/// the cluster CA, and this side presents `cert_pem`.
pub fn mutual_client(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c)?;
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)
            .context("loading the client certificate")?,
    ))
}

/// The peer listener (etcd's :2380): only clients with a certificate of the
/// cluster CA get through the handshake; it serves the peer certificate.
pub fn peer_server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c).context("adding CA to peer roots")?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .context("building peer verifier")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)
        .context("loading the peer certificate")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

pub fn pinned_client(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c)?;
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[derive(Clone)]
pub struct Url {
    pub host: String,
    pub port: u16,
}

pub fn parse_server_url(s: &str) -> Result<Url> {
    let rest = s
        .strip_prefix("https://")
        .ok_or_else(|| anyhow!("invalid server url {s:?}: must start with https://"))?;
    let hostport = rest.split('/').next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().context("invalid port in server url")?,
        ),
        _ => (hostport.to_string(), 443),
    };
    if host.is_empty() {
        bail!("invalid server url {s:?}: no host");
    }
    Ok(Url { host, port })
}

pub struct ClientResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub local_ip: std::net::IpAddr,
    pub content_type: String,
}

/// One HTTPS request with `Connection: close`, enough for the agent's few calls.
pub async fn request(
    cfg: Arc<rustls::ClientConfig>,
    url: &Url,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Result<ClientResponse> {
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if let Some(a) = auth {
        use base64::Engine;
        headers.push((
            "Authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(a)
            ),
        ));
    }
    request_with(cfg, url, method, path, &headers, body).await
}

/// [`request`] with the caller's headers (a server forwarding a write to the
/// etcd leader's apiserver keeps the client's content type).
pub async fn request_with(
    cfg: Arc<rustls::ClientConfig>,
    url: &Url,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<ClientResponse> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| anyhow!("dial tcp {}:{}: i/o timeout", url.host, url.port))?
    .map_err(|e| anyhow!("dial tcp {}:{}: {e}", url.host, url.port))?;
    let local_ip = tcp.local_addr()?.ip();
    let name =
        ServerName::try_from(url.host.clone()).map_err(|e| anyhow!("bad server name: {e}"))?;
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| anyhow!("tls: {e}"))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: k3s/{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        url.host,
        url.port,
        crate::version::version(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await?;
    tls.write_all(body).await?;
    tls.flush().await?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut raw),
    )
    .await;
    match read {
        Ok(Ok(_)) => {}
        // Servers may close without close_notify; what was read is still the answer.
        Ok(Err(e)) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => return Err(anyhow!("reading response: {e}")),
        Err(_) => bail!("timeout reading response"),
    }
    parse_response(&raw, local_ip)
}

/// A raw HTTP/1.1 answer as status, content type and (de-chunked) body.
fn parse_response(raw: &[u8], local_ip: std::net::IpAddr) -> Result<ClientResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line"))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(ClientResponse {
        status,
        body,
        local_ip,
        content_type,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < pos + 2 + size {
            break;
        }
        out.extend_from_slice(&b[pos + 2..pos + 2 + size]);
        b = &b[(pos + 4 + size).min(b.len())..];
    }
    out
}
