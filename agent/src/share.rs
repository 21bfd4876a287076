//! `pictl-agent share`: a transient, read-only HTTP server for one rollout.
//!
//! When pictl installs K3s on several nodes of one arch, it uploads the
//! binary once, to one node (the seed), and the others fetch it from there
//! over the LAN. This is what serves it: each `--file URLPATH=FILE` is
//! answered at exactly that path (GET or HEAD), everything else is a 404;
//! there is no directory listing and no path is ever joined to a request.
//! The server exits by itself after `--for SECONDS`, binds the one address
//! it is given (port 0: an ephemeral port, written to `--port-file` once it
//! listens) and holds at most [`MAX_CLIENTS`] connections.
//!
//! Nothing it serves is secret (release binaries), and nothing it serves is
//! trusted: the fetching node checks the sha256 that the controller got from
//! the release's checksum file before it installs anything. The edge: this
//! module serves files; choosing, staging and checking them is pictl's.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Connections served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 32;
/// Time a client has to send its whole request head (one deadline for
/// all of it: a client that trickles bytes is cut off too).
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Time one write may stall (a slow or stopped reader).
const WRITE_STALL: Duration = Duration::from_secs(30);

/// What `share` serves, where, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    pub listen: SocketAddr,
    /// `(url path, file)`: the path must start with `/`.
    pub files: Vec<(String, PathBuf)>,
    pub port_file: Option<PathBuf>,
    pub lifetime: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("listening on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("writing the port file {path}")]
    PortFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds, announces the port, and serves until the lifetime is over.
pub fn run(cfg: ShareConfig) -> Result<(), ShareError> {
    let listener = bind(&cfg)?;
    let lifetime = cfg.lifetime;
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        std::process::exit(0);
    });
    serve(listener, Arc::new(cfg.files));
    Ok(())
}

/// Binds `cfg.listen` and writes the port it got to `cfg.port_file`.
pub fn bind(cfg: &ShareConfig) -> Result<TcpListener, ShareError> {
    let listener = TcpListener::bind(cfg.listen).map_err(|source| ShareError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ShareError::Bind {
        addr: cfg.listen,
        source,
    })?;
    if let Some(path) = &cfg.port_file {
        write_port(path, addr.port()).map_err(|source| ShareError::PortFile {
            path: path.clone(),
            source,
        })?;
    }
    eprintln!("pictl-agent share: listening on http://{addr}");
    Ok(listener)
}

/// Temp file then rename: a reader sees no port or the whole port.
fn write_port(path: &Path, port: u16) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Accepts forever, one thread per client, at most [`MAX_CLIENTS`].
pub fn serve(listener: TcpListener, files: Arc<Vec<(String, PathBuf)>>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (files, active) = (files.clone(), active.clone());
        std::thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            match answer(stream, &files) {
                Ok((status, path, bytes)) => {
                    eprintln!("pictl-agent share: {status} {path} {bytes} bytes to {peer:?}");
                }
                Err(e) => eprintln!("pictl-agent share: client {peer:?}: {e}"),
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// One request: `(status, path, bytes of body sent)`.
fn answer(mut s: TcpStream, files: &[(String, PathBuf)]) -> io::Result<(u16, String, u64)> {
    s.set_write_timeout(Some(WRITE_STALL))?;
    let deadline = std::time::Instant::now() + READ_DEADLINE;
    let head = crate::http::head::read_head(&mut s, deadline).map_err(|e| {
        let why = format!("no complete request head: {e:?}");
        io::Error::new(io::ErrorKind::InvalidData, why)
    })?;
    let (method, path) = match request_line(&head) {
        Some(mp) => mp,
        None => return status(&mut s, 400, String::new()),
    };
    if method != "GET" && method != "HEAD" {
        return status(&mut s, 405, path);
    }
    let Some((_, file)) = files.iter().find(|(p, _)| *p == path) else {
        return status(&mut s, 404, path);
    };
    let Ok(mut f) = File::open(file) else {
        return status(&mut s, 404, path);
    };
    let len = f.metadata()?.len();
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )?;
    if method == "HEAD" {
        return Ok((200, path, 0));
    }
    let sent = io::copy(&mut (&mut f).take(len), &mut s)?;
    s.flush()?;
    Ok((200, path, sent))
}

fn status(s: &mut TcpStream, code: u16, path: String) -> io::Result<(u16, String, u64)> {
    let reason = match code {
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    Ok((code, path, 0))
}

/// `(method, path)` of an `HTTP/1.x` request line.
fn request_line(head: &[u8]) -> Option<(String, String)> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let (method, path, version) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() || !version.starts_with("HTTP/1.") || !path.starts_with('/') {
        return None;
    }
    Some((method.to_owned(), path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &str) -> Vec<u8> {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(req.as_bytes()).expect("send");
        let mut out = Vec::new();
        c.read_to_end(&mut out).expect("read");
        out
    }

    fn start(files: Vec<(String, PathBuf)>, port_file: Option<PathBuf>) -> SocketAddr {
        let cfg = ShareConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            files,
            port_file,
            lifetime: Duration::from_secs(60),
        };
        let listener = bind(&cfg).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let files = Arc::new(cfg.files);
        std::thread::spawn(move || serve(listener, files));
        addr
    }

    #[test]
    fn a_client_trickling_its_head_is_cut_off_at_the_deadline() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("k3s");
        std::fs::write(&file, b"the binary").expect("write");
        let addr = start(vec![("/abc/k3s".into(), file)], None);
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        // One byte every 400 ms: each read is quick, the head never ends.
        let started = std::time::Instant::now();
        let mut cut = false;
        while started.elapsed() < READ_DEADLINE * 2 {
            if c.write_all(b"G").is_err() {
                cut = true;
                break;
            }
            let mut buf = [0u8; 64];
            match c.read(&mut buf) {
                Ok(0) => {
                    cut = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => {
                    cut = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            cut,
            "the server kept a trickling client for {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn serves_exactly_the_named_paths_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("k3s");
        std::fs::write(&file, b"the binary").expect("write");
        std::fs::write(dir.path().join("secret"), b"no").expect("write");
        let port_file = dir.path().join("port");
        let addr = start(vec![("/abc/k3s".into(), file)], Some(port_file.clone()));
        let port: u16 = std::fs::read_to_string(&port_file)
            .expect("port file")
            .trim()
            .parse()
            .expect("a port");
        assert_eq!(port, addr.port());
        let ok = get(addr, "GET /abc/k3s HTTP/1.1\r\nHost: x\r\n\r\n");
        let ok = String::from_utf8_lossy(&ok);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 10\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nthe binary"), "{ok}");
        for path in [
            "/abc/secret",
            "/abc/../abc/secret",
            "/abc/k3s/",
            "/abc",
            "/",
        ] {
            let out = get(addr, &format!("GET {path} HTTP/1.1\r\n\r\n"));
            assert!(out.starts_with(b"HTTP/1.1 404 "), "{path}");
        }
        let post = get(addr, "POST /abc/k3s HTTP/1.1\r\n\r\n");
        assert!(post.starts_with(b"HTTP/1.1 405 "));
        let bad = get(addr, "nonsense\r\n\r\n");
        assert!(bad.starts_with(b"HTTP/1.1 400 "));
        let head = get(addr, "HEAD /abc/k3s HTTP/1.1\r\n\r\n");
        assert!(String::from_utf8_lossy(&head).ends_with(
            "Content-Length: 10\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn a_file_changed_on_disk_is_served_as_it_is_now() {
        // The server holds no copy: what the fetching node checks is what
        // the seed's disk holds at that moment.
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("k3s");
        std::fs::write(&file, b"one").expect("write");
        let addr = start(vec![("/p".into(), file.clone())], None);
        std::fs::write(&file, b"two!").expect("write");
        let out = get(addr, "GET /p HTTP/1.0\r\n\r\n");
        assert!(out.ends_with(b"\r\n\r\ntwo!"));
    }
}
