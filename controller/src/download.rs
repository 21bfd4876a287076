//! HTTP downloads the controller trusts nothing about: one client policy
//! (https is never downgraded by a redirect, every read has a deadline) and
//! bodies read with a size cap, so a hostile or broken server can neither
//! swap the scheme under us nor fill the controller's memory.

use std::time::Duration;

use reqwest::redirect::{Attempt, Policy};

/// Redirects followed before giving up (reqwest's default is 10 too).
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading {url} failed: HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("{url} is larger than the {limit} bytes allowed for it; refusing to read more")]
    TooLarge { url: String, limit: u64 },
}

/// The redirect rule: an https request may only be redirected to https.
/// `first` is the URL the request started at, `hops` the redirects so far.
fn redirect_allowed(
    first: Option<&reqwest::Url>,
    next: &reqwest::Url,
    hops: usize,
) -> Result<(), String> {
    if first.is_some_and(|u| u.scheme() == "https") && next.scheme() != "https" {
        Err(format!("refusing a redirect from https to {next}"))
    } else if hops > MAX_REDIRECTS {
        Err("too many redirects".into())
    } else {
        Ok(())
    }
}

/// The redirect policy every client of pictl's uses (https stays https).
pub fn redirect_policy() -> Policy {
    Policy::custom(|attempt: Attempt<'_>| {
        match redirect_allowed(
            attempt.previous().first(),
            attempt.url(),
            attempt.previous().len(),
        ) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(why),
        }
    })
}

/// A client for downloads: connect and per-read deadlines, https kept https.
pub fn client(connect: Duration, read: Duration) -> reqwest::Client {
    client_with(connect, read, |b| b)
}

/// [`client`], with the builder `tune`d (an extra trusted CA, a resolver
/// entry) before it is built; the redirect rule is set after, so it holds.
pub fn client_with(
    connect: Duration,
    read: Duration,
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    tune(reqwest::Client::builder())
        .connect_timeout(connect)
        // No progress for this long on a read means a dead server.
        .read_timeout(read)
        .redirect(redirect_policy())
        .build()
        .unwrap_or_default()
}

/// GETs `url` and reads at most `limit` bytes of its body.
pub async fn get_limited(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, DownloadError> {
    let request = |source| DownloadError::Request {
        url: url.to_string(),
        source,
    };
    let mut resp = client.get(url).send().await.map_err(request)?;
    if !resp.status().is_success() {
        return Err(DownloadError::HttpStatus {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    read_limited(&mut resp, url, limit).await
}

/// Reads a response body, refusing it as soon as it passes `limit` bytes
/// (whatever its `Content-Length` claims).
pub async fn read_limited(
    resp: &mut reqwest::Response,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, DownloadError> {
    let too_large = || DownloadError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|source| DownloadError::Request {
            url: url.to_string(),
            source,
        })?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
#[path = "https_only_tests.rs"]
mod https_only_tests;

#[cfg(test)]
pub(crate) mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback HTTP server answering every request with the next of
    /// `responses` (raw HTTP/1.1); returns its base URL.
    pub(crate) async fn serve(responses: Vec<Vec<u8>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            for response in responses {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            }
        });
        format!("http://{addr}")
    }

    pub(crate) fn ok(body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn quick() -> reqwest::Client {
        client(Duration::from_secs(5), Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_returned_whole() {
        let base = serve(vec![ok(b"hello")]).await;
        let body = get_limited(&quick(), &format!("{base}/x"), 5)
            .await
            .expect("get");
        assert_eq!(body, b"hello");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let base = serve(vec![ok(&[b'a'; 100])]).await;
        let err = get_limited(&quick(), &format!("{base}/x"), 99)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, DownloadError::TooLarge { limit: 99, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_chunked_body_is_cut_off_at_the_limit_whatever_it_claims() {
        // No Content-Length: the cap must hold while streaming.
        let mut resp =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for _ in 0..8 {
            resp.extend_from_slice(b"400\r\n");
            resp.extend_from_slice(&[b'z'; 0x400]);
            resp.extend_from_slice(b"\r\n");
        }
        resp.extend_from_slice(b"0\r\n\r\n");
        let base = serve(vec![resp]).await;
        let err = get_limited(&quick(), &format!("{base}/x"), 4096)
            .await
            .expect_err("too large");
        assert!(matches!(err, DownloadError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_error_status_names_the_url_and_status() {
        let base = serve(vec![
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ])
        .await;
        let err = get_limited(&quick(), &format!("{base}/missing"), 10)
            .await
            .expect_err("404");
        assert_eq!(
            err.to_string(),
            format!("downloading {base}/missing failed: HTTP 404")
        );
    }

    #[tokio::test]
    async fn an_http_redirect_from_http_is_followed() {
        let target = serve(vec![ok(b"moved")]).await;
        let hop =
            format!("HTTP/1.1 302 Found\r\nLocation: {target}/y\r\nContent-Length: 0\r\n\r\n");
        let base = serve(vec![hop.into_bytes()]).await;
        let body = get_limited(&quick(), &format!("{base}/x"), 100)
            .await
            .expect("followed");
        assert_eq!(body, b"moved");
    }

    #[test]
    fn the_redirect_rule_refuses_https_to_http_and_keeps_https() {
        let url = |s: &str| s.parse::<reqwest::Url>().expect("url");
        let https = url("https://mirror.example/a");
        let http = url("http://mirror.example/b");
        let err = redirect_allowed(Some(&https), &http, 1).expect_err("downgrade");
        assert_eq!(
            err,
            "refusing a redirect from https to http://mirror.example/b"
        );
        // Even after an https hop, the start decides: https stays https.
        assert!(redirect_allowed(Some(&https), &url("https://objects.example/c"), 1).is_ok());
        assert!(redirect_allowed(Some(&http), &https, 1).is_ok());
        assert!(redirect_allowed(Some(&http), &http, 1).is_ok());
        assert!(redirect_allowed(Some(&http), &http, MAX_REDIRECTS + 1).is_err());
    }
}
