//! K3s release channels (`stable`, `latest`, `v1.32`): resolved to an exact
//! release the way K3s's installer does, by asking the channel server where
//! the channel redirects to. Used only when the inventory follows a channel
//! instead of pinning `k3s_version`.

use std::time::Duration;

/// K3s's public channel server, defined with the inventory that defaults to it.
pub use crate::inventory::DEFAULT_CHANNEL_URL;
use crate::inventory::rules;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("asking {url} for the K3s channel failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status} instead of redirecting to a release")]
    NoRedirect { url: String, status: u16 },
    #[error("{url} redirected to {location}, which does not name a K3s release (vX.Y.Z+k3sN)")]
    NotARelease { url: String, location: String },
}

/// The release `channel` currently points to.
pub async fn resolve(channel_url: &str, channel: &str) -> Result<String, ChannelError> {
    let url = format!("{}/{channel}", channel_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|source| ChannelError::Request {
            url: url.clone(),
            source,
        })?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|source| ChannelError::Request {
            url: url.clone(),
            source,
        })?;
    if !resp.status().is_redirection() {
        return Err(ChannelError::NoRedirect {
            url,
            status: resp.status().as_u16(),
        });
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let version = location
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .replace("%2B", "+")
        .replace("%2b", "+");
    if rules::is_k3s_version(&version) {
        Ok(version)
    } else {
        Err(ChannelError::NotARelease { url, location })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-shot HTTP server on loopback answering with `response`.
    async fn serve_once(response: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(response.as_bytes()).await;
            }
        });
        format!("http://{addr}/v1-release/channels")
    }

    #[tokio::test]
    async fn a_channel_resolves_to_the_release_it_redirects_to() {
        let url = serve_once(
            "HTTP/1.1 302 Found\r\nLocation: https://github.com/k3s-io/k3s/releases/tag/v1.32.5%2Bk3s1\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(
            resolve(&url, "stable").await.expect("resolve"),
            "v1.32.5+k3s1"
        );
    }

    #[tokio::test]
    async fn a_redirect_to_something_else_is_refused() {
        let url = serve_once("HTTP/1.1 302 Found\r\nLocation: https://example.invalid/login\r\nContent-Length: 0\r\n\r\n").await;
        let err = resolve(&url, "stable").await.expect_err("not a release");
        assert!(
            err.to_string().contains("does not name a K3s release"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_redirect_is_an_error_naming_the_status() {
        let url = serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
        let err = resolve(&url, "nope").await.expect_err("404");
        assert!(err.to_string().contains("HTTP 404"), "{err}");
    }
}
