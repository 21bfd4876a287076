//! The registry client of the image preflight: the OCI distribution API
//! (`/v2/<repo>/manifests/<ref>`) with the anonymous bearer-token dance
//! Docker Hub uses. Indexes give the platforms directly; a single manifest
//! is resolved through its config blob. A reference pinned by digest is
//! verified against what the registry returns. Loopback registries are
//! spoken to over plain http (as Docker does); everything else over https.
//!
//! Registries are not trusted: bodies are read with size caps, and a token
//! `realm` is followed only when it is https or on the registry's own host.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::images::Platform;
use super::reference::{ImageRef, digest};
use crate::artifacts::sha256_hex;
use crate::download::{DownloadError, read_limited};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("asking {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the registry's token service did not grant anonymous pull access")]
    Token { url: String },
    #[error("{url} asks for authentication pictl does not speak (no Bearer challenge)")]
    Challenge { url: String },
    #[error("{url} returned content whose sha256 is {actual}, not the pinned {expected}")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url} returned a manifest that names no platform")]
    NoPlatform { url: String },
    #[error("{url}: refusing the token realm {realm} (neither https nor the registry's own host)")]
    Realm { url: String, realm: String },
    #[error(transparent)]
    Body(#[from] DownloadError),
}

/// The largest manifest or index read (containerd's limit too).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// The largest image config blob read.
pub const CONFIG_LIMIT: u64 = 4 << 20;
/// The largest token response read.
pub const TOKEN_LIMIT: u64 = 1 << 20;

/// Reads image platforms from registries.
#[derive(Debug)]
pub struct Registry {
    client: reqwest::Client,
    /// For loopback registries: never through a proxy.
    direct: reqwest::Client,
    /// Bearer tokens per (registry, repository), reused for blobs.
    tokens: tokio::sync::Mutex<BTreeMap<(String, String), String>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::with(|b| b)
    }
}

impl Registry {
    /// Clients `tune`d (an extra trusted CA, a resolver entry) before the
    /// deadlines and the redirect rule are set, so those always hold.
    pub fn with(tune: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder) -> Self {
        let builder = || {
            tune(reqwest::Client::builder())
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                // Blobs redirect to a CDN: followed, but never from https to http.
                .redirect(crate::download::redirect_policy())
        };
        Self {
            client: builder().build().unwrap_or_default(),
            direct: builder().no_proxy().build().unwrap_or_default(),
            tokens: Default::default(),
        }
    }
}

/// `Bearer realm="…",service="…",scope="…"` → its parameters (quoted
/// values may hold commas; the scheme is case-insensitive).
pub fn parse_challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    params.contains_key("realm").then_some(params)
}

impl Registry {
    fn client_for(&self, image: &ImageRef) -> &reqwest::Client {
        if image.is_loopback() {
            &self.direct
        } else {
            &self.client
        }
    }

    /// GET (at most `limit` bytes) with the anonymous bearer-token dance
    /// on a 401 (tokens reused).
    async fn get(
        &self,
        image: &ImageRef,
        url: &str,
        accept: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let client = self.client_for(image);
        let key = (image.registry.clone(), image.repository.clone());
        let cached = self.tokens.lock().await.get(&key).cloned();
        let req = |token: Option<&str>| {
            let mut r = client.get(url).header(reqwest::header::ACCEPT, accept);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r
        };
        let err = |source| RegistryError::Request {
            url: url.to_string(),
            source,
        };
        let mut resp = req(cached.as_deref()).send().await.map_err(err)?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge)
                .ok_or_else(|| RegistryError::Challenge {
                    url: url.to_string(),
                })?;
            let token = self.token(client, image, url, &challenge).await?;
            self.tokens.lock().await.insert(key, token.clone());
            resp = req(Some(&token)).send().await.map_err(err)?;
        }
        if !resp.status().is_success() {
            return Err(RegistryError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        Ok(read_limited(&mut resp, url, limit).await?)
    }

    async fn token(
        &self,
        client: &reqwest::Client,
        image: &ImageRef,
        url: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<String, RegistryError> {
        let no_token = || RegistryError::Token {
            url: url.to_string(),
        };
        let realm = params.get("realm").ok_or_else(no_token)?;
        let mut token_url = Url::parse(realm).map_err(|_| no_token())?;
        if !realm_allowed(&token_url, image) {
            return Err(RegistryError::Realm {
                url: url.to_string(),
                realm: realm.clone(),
            });
        }
        if let Some(service) = params.get("service") {
            token_url.query_pairs_mut().append_pair("service", service);
        }
        // Docker clients ask for pull access themselves when the challenge does not say.
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", image.repository));
        token_url.query_pairs_mut().append_pair("scope", &scope);
        let mut resp =
            client
                .get(token_url)
                .send()
                .await
                .map_err(|source| RegistryError::Request {
                    url: realm.clone(),
                    source,
                })?;
        if !resp.status().is_success() {
            return Err(no_token());
        }
        let body = read_limited(&mut resp, realm, TOKEN_LIMIT).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| no_token())?;
        v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .map(String::from)
            .ok_or_else(no_token)
    }

    /// The platforms an image offers.
    pub async fn platforms(&self, image: &ImageRef) -> Result<BTreeSet<Platform>, RegistryError> {
        let url = image.api_url(&format!("manifests/{}", image.reference()));
        let body = self.get(image, &url, ACCEPT, MANIFEST_LIMIT).await?;
        if let Some(expected) = &image.digest {
            let actual = format!("sha256:{}", sha256_hex(&body));
            if &actual != expected {
                return Err(RegistryError::DigestMismatch {
                    url,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let manifest: Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(list) = manifest["manifests"].as_array() {
            // Attestations and other non-images carry platform unknown/unknown.
            let found: BTreeSet<Platform> = list
                .iter()
                .filter_map(|m| Platform::of(&m["platform"]))
                .filter(|p| p.os != "unknown")
                .collect();
            return if found.is_empty() {
                Err(RegistryError::NoPlatform { url })
            } else {
                Ok(found)
            };
        }
        // A digest as the registry may name it: nothing else goes into the URL.
        let Some(config) =
            (manifest["config"]["digest"].as_str()).filter(|d| digest(d).as_deref() == Some(*d))
        else {
            return Err(RegistryError::NoPlatform { url });
        };
        let blob_url = image.api_url(&format!("blobs/{config}"));
        let blob = self
            .get(image, &blob_url, "application/json", CONFIG_LIMIT)
            .await?;
        let actual = format!("sha256:{}", sha256_hex(&blob));
        if actual != config {
            return Err(RegistryError::DigestMismatch {
                url: blob_url,
                expected: config.to_string(),
                actual,
            });
        }
        let cfg: Value = serde_json::from_slice(&blob).unwrap_or_default();
        Platform::of(&cfg)
            .map(|p| BTreeSet::from([p]))
            .ok_or(RegistryError::NoPlatform { url: blob_url })
    }
}

/// A token realm pictl follows: no credentials in it, and https or the
/// registry's own host (a loopback registry's own http token service).
fn realm_allowed(realm: &Url, image: &ImageRef) -> bool {
    let own_host = realm.host_str() == image.base_url().host_str();
    realm.username().is_empty()
        && realm.password().is_none()
        && (realm.scheme() == "https" || (realm.scheme() == "http" && own_host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::tests::serve;

    #[test]
    fn challenges_keep_commas_inside_quotes_and_ignore_scheme_case() {
        let p = parse_challenge(r#"bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#)
            .expect("challenge");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
        assert!(
            parse_challenge("Bearer service=x").is_none(),
            "a realm is required"
        );
    }

    #[test]
    fn token_realms_are_followed_only_over_https_or_to_the_registry_itself() {
        let remote = ImageRef::parse("ghcr.io/a/b:1").expect("parse");
        let url = |u: &str| Url::parse(u).expect("url");
        assert!(realm_allowed(&url("https://auth.example/token"), &remote));
        assert!(!realm_allowed(&url("http://auth.example/token"), &remote));
        assert!(!realm_allowed(
            &url("https://u:p@auth.example/token"),
            &remote
        ));
        assert!(!realm_allowed(&url("file:///etc/passwd"), &remote));
        let local = ImageRef::parse("127.0.0.1:5000/a/b:1").expect("parse");
        assert!(realm_allowed(&url("http://127.0.0.1:5000/token"), &local));
        assert!(!realm_allowed(&url("http://127.0.0.2:5000/token"), &local));
    }

    #[tokio::test]
    async fn a_challenge_naming_another_plain_http_host_is_refused() {
        let challenge =
            "401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://192.0.2.1/token\"";
        let base = serve(vec![http(challenge, 0)]).await;
        let err = lookup_error(&base).await;
        assert!(matches!(err, RegistryError::Realm { .. }), "{err}");
    }

    /// What looking up an image on the registry at `base` fails with.
    async fn lookup_error(base: &str) -> RegistryError {
        let host = base.trim_start_matches("http://");
        let image = ImageRef::parse(&format!("{host}/a/b:1")).expect("parse");
        Registry::default()
            .platforms(&image)
            .await
            .expect_err("the lookup succeeded")
    }

    fn http(head: &str, content_length: u64) -> Vec<u8> {
        format!("HTTP/1.1 {head}\r\nContent-Length: {content_length}\r\n\r\n").into_bytes()
    }

    #[tokio::test]
    async fn oversized_manifests_and_tokens_are_not_read() {
        let base = serve(vec![http("200 OK", MANIFEST_LIMIT + 1)]).await;
        let err = lookup_error(&base).await;
        assert!(
            matches!(err, RegistryError::Body(DownloadError::TooLarge { .. })),
            "{err}"
        );

        // A token service on the registry's own host, answering too much.
        let realm = serve(vec![http("200 OK", TOKEN_LIMIT + 1)]).await;
        let challenge =
            format!("401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}/token\"");
        let base = serve(vec![http(&challenge, 0)]).await;
        let err = lookup_error(&base).await;
        assert!(
            matches!(err, RegistryError::Body(DownloadError::TooLarge { .. })),
            "{err}"
        );
    }
}
