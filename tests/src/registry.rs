//! A container registry of the tests' own, on loopback: the OCI distribution
//! API subset pictl's image-architecture preflight reads (manifests, config
//! blobs) behind Docker Hub's anonymous bearer-token dance. Real HTTP over a
//! real socket; every image is content-addressed like in a real registry.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

const TOKEN: &str = "test-pull-token";

/// Content served at `/v2/<repo>/manifests/<ref>` and `/v2/<repo>/blobs/<digest>`.
#[derive(Default)]
struct Content {
    /// (repo, tag-or-digest) → (media type, body)
    manifests: BTreeMap<(String, String), (String, Vec<u8>)>,
    /// (repo, digest) → body
    blobs: BTreeMap<(String, String), Vec<u8>>,
}

pub struct Registry {
    addr: String,
    content: Arc<Mutex<Content>>,
    token_requests: Arc<AtomicUsize>,
}

fn digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

impl Registry {
    /// Starts serving on 127.0.0.1 (a thread per connection, for the test's lifetime).
    pub fn start() -> std::io::Result<Registry> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let content: Arc<Mutex<Content>> = Arc::default();
        let token_requests = Arc::new(AtomicUsize::new(0));
        let (c, t, a) = (content.clone(), token_requests.clone(), addr.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, t, a) = (c.clone(), t.clone(), a.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &c, &t, &a);
                });
            }
        });
        Ok(Registry {
            addr,
            content,
            token_requests,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Content> {
        self.content.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A single-platform image (manifest + config blob) under `repo:tag`;
    /// returns the pinned reference `addr/repo@sha256:…`.
    pub fn push_single(&self, repo: &str, tag: &str, os: &str, arch: &str) -> String {
        let config =
            format!(r#"{{"architecture":"{arch}","os":"{os}","config":{{}}}}"#).into_bytes();
        let config_digest = digest(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
            config.len()
        )
        .into_bytes();
        let manifest_digest = digest(&manifest);
        let mut c = self.lock();
        c.blobs.insert((repo.into(), config_digest), config);
        let media = "application/vnd.oci.image.manifest.v1+json".to_string();
        c.manifests
            .insert((repo.into(), tag.into()), (media.clone(), manifest.clone()));
        c.manifests
            .insert((repo.into(), manifest_digest.clone()), (media, manifest));
        format!("{}/{repo}@{manifest_digest}", self.addr)
    }

    /// A multi-platform index (`os/arch[/variant]` entries, plus an attestation).
    pub fn push_index(&self, repo: &str, tag: &str, platforms: &[&str]) -> String {
        let mut entries: Vec<String> = platforms
            .iter()
            .map(|p| {
                let parts: Vec<&str> = p.split('/').collect();
                let variant = parts.get(2).map(|v| format!(r#","variant":"{v}""#)).unwrap_or_default();
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"os":"{}","architecture":"{}"{variant}}}}}"#,
                    digest(p.as_bytes()),
                    parts[0],
                    parts.get(1).copied().unwrap_or_default()
                )
            })
            .collect();
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}"#,
            digest(b"attestation")
        ));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        )
        .into_bytes();
        let index_digest = digest(&index);
        let media = "application/vnd.oci.image.index.v1+json".to_string();
        let mut c = self.lock();
        c.manifests
            .insert((repo.into(), tag.into()), (media.clone(), index.clone()));
        c.manifests
            .insert((repo.into(), index_digest.clone()), (media, index));
        format!("{}/{repo}@{index_digest}", self.addr)
    }

    /// Replaces what `repo:tag` serves without changing earlier digests'
    /// content addresses: a pinned reference to the old digest now gets
    /// bytes that do not hash to it (a tampering registry).
    pub fn tamper(&self, repo: &str, pinned: &str) {
        let digest = pinned
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        let mut c = self.lock();
        if let Some((media, body)) = c
            .manifests
            .get(&(repo.to_string(), digest.clone()))
            .cloned()
        {
            let mut body = body;
            body.extend_from_slice(b" ");
            c.manifests
                .insert((repo.to_string(), digest), (media, body));
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}

fn serve(
    mut stream: TcpStream,
    content: &Mutex<Content>,
    tokens: &AtomicUsize,
    addr: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if line.to_ascii_lowercase().starts_with("authorization:")
            && line.contains(&format!("Bearer {TOKEN}"))
        {
            authorized = true;
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    if path.starts_with("/token") {
        tokens.fetch_add(1, Ordering::SeqCst);
        let ok = path.contains("service=test-registry") && path.contains("scope=repository");
        let body = if ok {
            format!(r#"{{"token":"{TOKEN}"}}"#)
        } else {
            "{}".into()
        };
        return respond(
            &mut stream,
            if ok { "200 OK" } else { "400 Bad Request" },
            &[],
            body.as_bytes(),
        );
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return respond(&mut stream, "404 Not Found", &[], b"");
    };
    if !authorized {
        let repo = rest
            .split("/manifests/")
            .next()
            .unwrap_or_default()
            .split("/blobs/")
            .next()
            .unwrap_or_default();
        let challenge = format!(
            r#"Bearer realm="http://{addr}/token",service="test-registry",scope="repository:{repo}:pull""#
        );
        return respond(
            &mut stream,
            "401 Unauthorized",
            &[("WWW-Authenticate", challenge)],
            b"",
        );
    }
    let c = content.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        if let Some((media, body)) = c.manifests.get(&(repo.to_string(), reference.to_string())) {
            return respond(
                &mut stream,
                "200 OK",
                &[("Content-Type", media.clone())],
                body,
            );
        }
    } else if let Some((repo, d)) = rest.split_once("/blobs/")
        && let Some(body) = c.blobs.get(&(repo.to_string(), d.to_string()))
    {
        return respond(
            &mut stream,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            body,
        );
    }
    respond(&mut stream, "404 Not Found", &[], b"")
}
