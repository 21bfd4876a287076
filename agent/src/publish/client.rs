//! A tiny HTTPS/1.1 client for the Kubernetes API: one request per
//! connection, the server verified against the cluster CA only (no system
//! roots) and, when `api_spki_sha256` is configured, required to hold one of
//! the pinned keys ([`super::pin`]) before any byte of the request is sent;
//! a bearer token that never appears in `Debug` or errors. Enough for a
//! PATCH and a POST every few minutes; not a general client.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls_ring as rustls;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::pin::{PinError, PinnedVerifier, SpkiPin};

/// Connect, write and read budget of one request.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (a Node object is a few KiB).
pub const MAX_ANSWER: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the API server URL {0:?} is not https://HOST[:PORT]")]
    BadUrl(String),
    #[error("the CA file holds no PEM certificate")]
    NoCaCertificate,
    #[error("the CA certificate is not usable")]
    BadCaCertificate(#[source] rustls::Error),
    #[error("connecting to {0}")]
    ConnectFailed(String, #[source] io::Error),
    #[error("talking TLS to {0}")]
    ExchangeFailed(String, #[source] io::Error),
    #[error("talking TLS to {0}")]
    NotPinned(String, #[source] PinError),
    #[error("the answer from {0} is not HTTP")]
    NotHttp(String),
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// The API server and how to talk to it.
pub struct Api {
    host: String,
    port: u16,
    name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    token: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `https://HOST[:PORT][/]` → (host, port); IPv6 hosts in brackets.
pub fn parse_url(url: &str) -> Result<(String, u16), ClientError> {
    let bad = || ClientError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 443,
            None => return Err(bad()),
        };
        (h.to_owned(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
            None => (rest.to_owned(), 443),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// The certificates in `ca_pem`, at least one.
fn roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|_| ClientError::NoCaCertificate)?;
        roots.add(cert).map_err(ClientError::BadCaCertificate)?;
    }
    if roots.is_empty() {
        return Err(ClientError::NoCaCertificate);
    }
    Ok(roots)
}

/// TLS trusting only `roots`; with `pins`, also only a server holding one
/// of those keys.
fn tls_config(
    roots: rustls::RootCertStore,
    pins: &[SpkiPin],
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ClientError::BadCaCertificate)?;
    if pins.is_empty() {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    }
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .map_err(|e| ClientError::BadCaCertificate(rustls::Error::General(e.to_string())))?;
    let verifier = PinnedVerifier::new(webpki, pins.to_vec());
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// A failed exchange: a refusal by the pin is named as such.
fn exchange_failed(authority: String, e: io::Error) -> ClientError {
    let pin = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(PinError::in_rustls);
    match pin {
        Some(pin) => ClientError::NotPinned(authority, pin.clone()),
        None => ClientError::ExchangeFailed(authority, e),
    }
}

impl Api {
    /// A client for `url` trusting only the certificates in `ca_pem` and,
    /// unless `pins` is empty, only a server whose key is one of `pins`.
    pub fn new(
        url: &str,
        ca_pem: &[u8],
        token: String,
        pins: &[SpkiPin],
    ) -> Result<Self, ClientError> {
        let (host, port) = parse_url(url)?;
        let name =
            ServerName::try_from(host.clone()).map_err(|_| ClientError::BadUrl(url.into()))?;
        let tls = tls_config(roots(ca_pem)?, pins)?;
        Ok(Self {
            host,
            port,
            name,
            tls: Arc::new(tls),
            token,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Sends one request with the bearer token and reads the whole answer.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Answer, ClientError> {
        let authority = self.authority();
        let tcp = connect(&authority)?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), self.name.clone())
            .map_err(|e| ClientError::ExchangeFailed(authority.clone(), io::Error::other(e)))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: pictl-agent/{}\r\n\
             Authorization: Bearer {}\r\nAccept: application/json\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            crate::VERSION,
            self.token,
            body.len()
        );
        let exchange = |tls: &mut rustls::StreamOwned<_, TcpStream>| -> io::Result<Vec<u8>> {
            tls.write_all(head.as_bytes())?;
            tls.write_all(body)?;
            tls.flush()?;
            let mut raw = Vec::new();
            match tls.take(MAX_ANSWER).read_to_end(&mut raw) {
                Ok(_) => Ok(raw),
                // A server that closes without close_notify after a full answer.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
                Err(e) => Err(e),
            }
        };
        let raw = exchange(&mut tls).map_err(|e| exchange_failed(authority.clone(), e))?;
        parse_answer(&raw).ok_or(ClientError::NotHttp(authority))
    }
}

fn connect(authority: &str) -> Result<TcpStream, ClientError> {
    let failed = |e| ClientError::ConnectFailed(authority.to_owned(), e);
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in authority.to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(TIMEOUT)).map_err(failed)?;
                s.set_write_timeout(Some(TIMEOUT)).map_err(failed)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(failed(last))
}

/// Status and body of a complete HTTP/1.1 answer (Content-Length, chunked,
/// or read to close).
pub fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (k, v) = line.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        } else if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().ok()?);
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&rest[..eol]).ok()?;
        let size_hex = size_field.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_host_and_port_only() {
        assert_eq!(
            parse_url("https://10.0.0.1:6443").ok(),
            Some(("10.0.0.1".into(), 6443))
        );
        assert_eq!(
            parse_url("https://api.example/").ok(),
            Some(("api.example".into(), 443))
        );
        assert_eq!(
            parse_url("https://[fd00::1]:6443").ok(),
            Some(("fd00::1".into(), 6443))
        );
        for bad in [
            "http://10.0.0.1:6443",
            "https://",
            "https://h:x",
            "https://h/api",
            "https://u@h",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_with_length_chunks_or_close_are_read() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk").expect("ok");
        assert_eq!((a.status, a.body.as_str()), (200, "{}"));
        let a = parse_answer(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!((a.status, a.body.as_str()), (403, "abcde"));
        let a = parse_answer(b"HTTP/1.0 404 Not Found\r\n\r\nnope").expect("close");
        assert_eq!((a.status, a.body.as_str()), (404, "nope"));
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"),
            None
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let api = Api {
            host: "h".into(),
            port: 1,
            name: ServerName::try_from("h").expect("name"),
            tls: Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
            token: "s3cr3t-token".into(),
        };
        assert!(!format!("{api:?}").contains("s3cr3t"));
    }
}
