//! The agent's HTTP endpoint: `GET /healthz`, `/metrics` and `/v1/report`.
//!
//! Deliberately tiny: std `TcpListener`, one thread, one request per
//! connection (`Connection: close`), the request head capped at 8 KiB and read
//! within a deadline. No keep-alive, no bodies, no TLS: the agent listens on
//! loopback by default, and a scraper on the LAN sees only node facts.
//! Reports are collected on demand and cached briefly so a burst of scrapes
//! costs one collection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::report::{Health, NodeReport};
use crate::{Error, Result, metrics};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;
/// Time a client has to send its request head; the only thread waits this long at most.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);
/// How long a collected report is served before collecting again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_millis(1500);

/// Produces a fresh report (the collectors, or a fixed report in tests).
pub type Source = Box<dyn FnMut() -> NodeReport + Send>;

pub struct Server {
    listener: TcpListener,
    source: Source,
    ttl: Duration,
    cache: Option<Cached>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// One collection and its renderings, made on first use.
struct Cached {
    at: Instant,
    report: NodeReport,
    json: Option<String>,
    metrics: Option<String>,
}

impl Server {
    pub fn bind(addr: SocketAddr, source: Source, ttl: Duration) -> Result<Self> {
        let listener =
            TcpListener::bind(addr).map_err(|source| Error::BindFailed { addr, source })?;
        Ok(Self {
            listener,
            source,
            ttl,
            cache: None,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections one after another, forever.
    pub fn run(mut self) -> ! {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.handle(stream),
                // Out of descriptors or similar: back off instead of spinning.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn handle(&mut self, mut stream: TcpStream) {
        let _ = stream.set_write_timeout(Some(READ_DEADLINE));
        let response = match read_head(&mut stream) {
            Ok(head) => match parse_head(&head) {
                Ok(req) => self.route(&req),
                Err(resp) => resp,
            },
            Err(HeadError::TooLarge) => Response::text(431, "request head too large\n"),
            // Timed out or hung up before a full head: nobody to answer.
            Err(HeadError::Incomplete) => return,
        };
        let _ = stream.write_all(&response.to_bytes());
        let _ = stream.flush();
        if response.status >= 400 {
            linger(&mut stream);
        }
    }

    fn route(&mut self, req: &Request<'_>) -> Response {
        let path = req.target.split_once('?').map_or(req.target, |(p, _)| p);
        if !matches!(path, "/healthz" | "/metrics" | "/v1/report") {
            return Response::text(404, "not found\n");
        }
        if !matches!(req.method, "GET" | "HEAD") {
            let mut r = Response::text(405, "method not allowed\n");
            r.allow = true;
            return r;
        }
        let cached = self.fresh();
        let mut resp = match path {
            "/healthz" => healthz(&cached.report),
            "/metrics" => {
                let body = cached
                    .metrics
                    .get_or_insert_with(|| metrics::render(&cached.report));
                Response::new(200, metrics::CONTENT_TYPE, body.clone().into_bytes())
            }
            _ => {
                let body = cached.json.get_or_insert_with(|| {
                    serde_json::to_string(&cached.report).unwrap_or_else(|_| "{}".into())
                });
                Response::new(200, "application/json", body.clone().into_bytes())
            }
        };
        resp.head_only = req.method == "HEAD";
        resp
    }

    /// The cached collection, collecting again when it is older than the TTL.
    fn fresh(&mut self) -> &mut Cached {
        if self
            .cache
            .as_ref()
            .is_some_and(|c| c.at.elapsed() >= self.ttl)
        {
            self.cache = None;
        }
        let source = &mut self.source;
        self.cache.get_or_insert_with(|| Cached {
            report: source(),
            at: Instant::now(),
            json: None,
            metrics: None,
        })
    }
}

fn healthz(r: &NodeReport) -> Response {
    if r.health == Health::Failing {
        let mut body = String::from("failing\n");
        for p in &r.problems {
            body.push_str(p);
            body.push('\n');
        }
        Response::text(503, &body)
    } else {
        Response::text(200, "ok\n")
    }
}

/// After refusing a request, reads (a bounded amount of) what the client still
/// sends before closing: closing with unread input makes the kernel send a
/// reset, which can destroy the refusal before the client reads it.
/// Served requests are GETs without bodies, so they skip this.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[derive(Debug, PartialEq)]
enum HeadError {
    TooLarge,
    Incomplete,
}

/// Reads up to the blank line ending the head, within [`READ_DEADLINE`].
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() >= MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(HeadError::Incomplete);
        }
        let want = chunk.len().min(MAX_HEAD_BYTES + 4 - head.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(HeadError::Incomplete),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(HeadError::Incomplete),
        }
    }
}

/// End of the head (exclusive of the blank line), accepting bare `\n` too.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .filter(|end| *end <= MAX_HEAD_BYTES)
}

#[derive(Debug)]
struct Request<'a> {
    method: &'a str,
    target: &'a str,
}

fn parse_head(head: &[u8]) -> Result<Request<'_>, Response> {
    let bad = || Response::text(400, "bad request\n");
    let text = std::str::from_utf8(head).map_err(|_| bad())?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or_else(bad)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) || !target.starts_with('/') {
        return Err(bad());
    }
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(Response::text(505, "HTTP version not supported\n"));
    }
    let mut count = 0;
    for line in lines {
        count += 1;
        if count > MAX_HEADERS {
            return Err(Response::text(431, "too many headers\n"));
        }
        let (name, _) = line.split_once(':').ok_or_else(bad)?;
        if !token(name) {
            return Err(bad());
        }
    }
    Ok(Request { method, target })
}

#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    allow: bool,
    head_only: bool,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type,
            body,
            allow: false,
            head_only: false,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_must_have_three_parts_and_a_known_version() {
        assert!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x").is_ok());
        assert_eq!(parse_head(b"GET /metrics").expect_err("short").status, 400);
        assert_eq!(
            parse_head(b"GET  /metrics HTTP/1.1")
                .expect_err("double space")
                .status,
            400
        );
        assert_eq!(
            parse_head(b"GET metrics HTTP/1.1")
                .expect_err("relative")
                .status,
            400
        );
        assert_eq!(parse_head(b"GET / HTTP/2.0").expect_err("h2").status, 505);
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nno colon")
                .expect_err("header")
                .status,
            400
        );
        assert_eq!(
            parse_head(b"G\xffT / HTTP/1.1").expect_err("utf8").status,
            400
        );
    }

    #[test]
    fn too_many_headers_are_refused() {
        let mut head = String::from("GET / HTTP/1.1");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("\r\nX-{i}: v"));
        }
        assert_eq!(
            parse_head(head.as_bytes()).expect_err("too many").status,
            431
        );
    }

    #[test]
    fn head_end_is_found_with_crlf_or_lf() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
