//! Reading and parsing a request head: the request line and the headers the
//! agent looks at (`Host`), within a size cap and a deadline. Anything the
//! parser refuses becomes the [`Response`] to send. The edge: no bodies, no
//! keep-alive; what a request may see is decided by the caller.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Instant;

use super::response::Response;

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, PartialEq)]
pub enum HeadError {
    TooLarge,
    /// Timed out, shed, or hung up before a full head.
    Incomplete,
}

/// Reads up to the blank line ending the head, giving up at `deadline`.
pub fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HeadError> {
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
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .filter(|end| *end <= MAX_HEAD_BYTES)
}

#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// `HTTP/1.0` may omit `Host`; `HTTP/1.1` may not.
    pub http10: bool,
    /// The `Host` header's value, trimmed; `None` when absent.
    pub host: Option<&'a str>,
}

pub fn parse_head(head: &[u8]) -> Result<Request<'_>, Response> {
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
    if !is_token(method) || !target.starts_with('/') {
        return Err(bad());
    }
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(Response::text(505, "HTTP version not supported\n"));
    }
    let mut host = None;
    for (count, line) in lines.enumerate() {
        if count >= MAX_HEADERS {
            return Err(Response::text(431, "too many headers\n"));
        }
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        if !is_token(name) {
            return Err(bad());
        }
        if name.eq_ignore_ascii_case("host") {
            // Two Hosts could be read differently by a proxy and by us.
            if host.replace(value.trim_matches([' ', '\t'])).is_some() {
                return Err(Response::text(400, "more than one Host header\n"));
            }
        }
    }
    Ok(Request {
        method,
        target,
        http10: version == "HTTP/1.0",
        host,
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &[u8]) -> u16 {
        parse_head(head).expect_err("refused").status
    }

    #[test]
    fn request_line_must_have_three_parts_and_a_known_version() {
        assert!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x").is_ok());
        assert_eq!(status(b"GET /metrics"), 400);
        assert_eq!(status(b"GET  /metrics HTTP/1.1"), 400);
        assert_eq!(status(b"GET metrics HTTP/1.1"), 400);
        assert_eq!(status(b"GET / HTTP/2.0"), 505);
        assert_eq!(status(b"GET / HTTP/1.1\r\nno colon"), 400);
        assert_eq!(status(b"G\xffT / HTTP/1.1"), 400);
    }

    #[test]
    fn too_many_headers_are_refused() {
        let mut head = String::from("GET / HTTP/1.1");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("\r\nX-{i}: v"));
        }
        assert_eq!(status(head.as_bytes()), 431);
    }

    #[test]
    fn host_is_found_in_any_case_trimmed_and_only_once() {
        let r = parse_head(b"GET /healthz HTTP/1.1\r\nUser-Agent: t\r\nhOsT: \t127.0.0.1:9750 ")
            .expect("parses");
        assert_eq!(r.host, Some("127.0.0.1:9750"));
        assert!(!r.http10);
        let r = parse_head(b"GET /healthz HTTP/1.0").expect("parses");
        assert_eq!((r.host, r.http10), (None, true));
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example"),
            400
        );
    }

    #[test]
    fn head_end_is_found_with_crlf_or_lf() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
