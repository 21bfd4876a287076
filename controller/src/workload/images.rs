//! The image-architecture preflight: before a playbook is applied, every
//! container image is looked up in its registry and must offer a
//! `linux/<arch>` variant for every node that could run it. This is the
//! playson incident (an amd64-only image crash-looping on arm64 Pis) caught
//! before anything is deployed.
//!
//! Registry protocol: the OCI distribution API (`/v2/<repo>/manifests/<ref>`)
//! with the anonymous bearer-token dance Docker Hub uses. Indexes give the
//! platforms directly; a single manifest is resolved through its config
//! blob. A reference pinned by digest is verified against what the registry
//! returns. Loopback registries are spoken to over plain http (as Docker
//! does); everything else over https.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::manifests::Manifest;
use crate::arch::Arch;
use crate::artifacts::sha256_hex;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A parsed image reference (`[registry/]repository[:tag][@digest]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Host (and port) of the registry API.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) if d.starts_with("sha256:") && d.len() == 71 => (r, Some(d.to_string())),
            Some((r, d)) if d.len() == 71 && d.starts_with("sha256:") => {
                (r, Some(d.to_ascii_lowercase()))
            }
            Some(_) => return Err(format!("{image}: the digest is not a sha256 digest")),
            None => (image, None),
        };
        let (domain, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), rest.to_string()),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), Some(tag.to_string())),
            _ => (path, None),
        };
        if repository.is_empty() || repository.contains(char::is_whitespace) {
            return Err(format!("{image}: not an image reference"));
        }
        if tag.as_deref() == Some("") || repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("{image}: not an image reference"));
        }
        let (registry, repository) = if domain == "docker.io" || domain == "index.docker.io" {
            let repo = if repository.contains('/') {
                repository
            } else {
                format!("library/{repository}")
            };
            ("registry-1.docker.io".to_string(), repo)
        } else {
            (domain, repository)
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Loopback registries (Docker's default "insecure" set) speak http.
    fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => self
                .registry
                .rsplit_once(':')
                .map_or(self.registry.as_str(), |(h, _)| h),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.is_loopback() { "http" } else { "https" },
            self.registry
        )
    }
}

/// `os/architecture[/variant]` as registries describe images.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    fn of(v: &Value) -> Option<Platform> {
        Some(Platform {
            os: v["os"].as_str()?.to_string(),
            architecture: v["architecture"].as_str()?.to_string(),
            variant: v["variant"].as_str().map(String::from),
        })
    }

    /// Whether a node of `arch` runs this platform (armhf nodes run v5–v7).
    pub fn runs_on(&self, arch: Arch) -> bool {
        if self.os != "linux" {
            return false;
        }
        match arch {
            Arch::Amd64 => self.architecture == "amd64",
            Arch::Arm64 => self.architecture == "arm64",
            Arch::Armhf => {
                self.architecture == "arm"
                    && matches!(self.variant.as_deref(), None | Some("v5" | "v6" | "v7"))
            }
        }
    }
}

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
}

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
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
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

    /// GET with the anonymous bearer-token dance on a 401 (tokens reused).
    async fn get(
        &self,
        image: &ImageRef,
        url: &str,
        accept: &str,
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
        Ok(resp.bytes().await.map_err(err)?.to_vec())
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
        let mut token_url = reqwest::Url::parse(realm).map_err(|_| no_token())?;
        if let Some(service) = params.get("service") {
            token_url.query_pairs_mut().append_pair("service", service);
        }
        // Docker clients ask for pull access themselves when the challenge does not say.
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", image.repository));
        token_url.query_pairs_mut().append_pair("scope", &scope);
        let resp = client
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
        let body = resp
            .bytes()
            .await
            .map_err(|source| RegistryError::Request {
                url: realm.clone(),
                source,
            })?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| no_token())?;
        v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .map(String::from)
            .ok_or_else(no_token)
    }

    /// The platforms an image offers.
    pub async fn platforms(&self, image: &ImageRef) -> Result<BTreeSet<Platform>, RegistryError> {
        let base = format!("{}/v2/{}", image.base_url(), image.repository);
        let url = format!("{base}/manifests/{}", image.reference());
        let body = self.get(image, &url, ACCEPT).await?;
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
        let Some(config) = manifest["config"]["digest"].as_str() else {
            return Err(RegistryError::NoPlatform { url });
        };
        let blob_url = format!("{base}/blobs/{config}");
        let blob = self.get(image, &blob_url, "application/json").await?;
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

/// Where an image is used, and on which arches its pods may land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    pub image: String,
    pub used_by: String,
    /// `kubernetes.io/arch` from the pod's nodeSelector, if pinned.
    pub arch_selector: Option<String>,
}

/// Every container image of the workload objects in a playbook.
pub fn images_of(manifests: &[Manifest]) -> Vec<ImageUse> {
    let mut out = Vec::new();
    for m in manifests {
        let spec = match m.kind() {
            "Pod" => &m.object["spec"],
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                &m.object["spec"]["template"]["spec"]
            }
            "CronJob" => &m.object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        let selector = spec["nodeSelector"]["kubernetes.io/arch"]
            .as_str()
            .map(String::from);
        for list in ["initContainers", "containers"] {
            for c in spec[list].as_array().into_iter().flatten() {
                if let Some(image) = c["image"].as_str() {
                    out.push(ImageUse {
                        image: image.to_string(),
                        used_by: m.describe(),
                        arch_selector: selector.clone(),
                    });
                }
            }
        }
    }
    out
}

/// What the preflight found for one playbook.
#[derive(Debug, Default)]
pub struct Findings {
    /// Images that cannot run on some nodes: the playbook must not be applied.
    pub incompatible: Vec<String>,
    /// Images whose platforms could not be read.
    pub unknown: Vec<String>,
}

/// Checks every image against the nodes' arches (`arch → node names`).
pub async fn check(
    registry: &Registry,
    manifests: &[Manifest],
    nodes: &BTreeMap<Arch, Vec<String>>,
) -> Findings {
    let mut findings = Findings::default();
    let mut seen: BTreeMap<String, Result<BTreeSet<Platform>, String>> = BTreeMap::new();
    for u in images_of(manifests) {
        if !seen.contains_key(&u.image) {
            let result = match ImageRef::parse(&u.image) {
                Ok(r) => registry
                    .platforms(&r)
                    .await
                    .map_err(|e| crate::error_chain(&e)),
                Err(e) => Err(e),
            };
            seen.insert(u.image.clone(), result);
        }
        let Some(result) = seen.get(&u.image) else {
            continue;
        };
        let platforms = match result {
            Ok(p) => p,
            Err(e) => {
                findings
                    .unknown
                    .push(format!("{} ({}): {e}", u.image, u.used_by));
                continue;
            }
        };
        let mut lacking: Vec<String> = Vec::new();
        for (arch, names) in nodes {
            let pinned_elsewhere = u
                .arch_selector
                .as_deref()
                .is_some_and(|s| s != arch.name() && !(s == "arm" && *arch == Arch::Armhf));
            if pinned_elsewhere || platforms.iter().any(|p| p.runs_on(*arch)) {
                continue;
            }
            lacking.push(format!("{} ({arch})", names.join(", ")));
        }
        if !lacking.is_empty() {
            let offered: Vec<String> = platforms.iter().map(ToString::to_string).collect();
            findings.incompatible.push(format!(
                "{} in {} offers only {}, so it cannot run on {}; use a multi-arch image or pin \
                 nodeSelector kubernetes.io/arch",
                u.image,
                u.used_by,
                offered.join(", "),
                lacking.join("; ")
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_references_are_normalized() {
        let r = ImageRef::parse("nginx").expect("parse");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("registry-1.docker.io", "library/nginx", Some("latest"))
        );
        let d = "sha256:9380c104186fb3bcdcc0b158c26d231fef73ead15905f4f99031beefb09b3d28";
        let r = ImageRef::parse(&format!("mccutchen/go-httpbin:v2.8.0@{d}")).expect("parse");
        assert_eq!(r.repository, "mccutchen/go-httpbin");
        assert_eq!(r.tag.as_deref(), Some("v2.8.0"));
        assert_eq!(r.reference(), d);
        assert_eq!(r.base_url(), "https://registry-1.docker.io");
    }

    #[test]
    fn registries_with_ports_and_loopback_are_recognized() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:1.0").expect("parse");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        let r = ImageRef::parse("ghcr.io/org/app").expect("parse");
        assert_eq!(r.base_url(), "https://ghcr.io");
        assert!(ImageRef::parse("app@md5:abc").is_err());
    }

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
    fn loopback_is_recognized_by_address_not_by_prefix() {
        assert!(
            ImageRef::parse("[::1]:5000/a/b:1")
                .expect("parse")
                .is_loopback()
        );
        assert!(
            ImageRef::parse("localhost:5000/a/b:1")
                .expect("parse")
                .is_loopback()
        );
        assert!(
            !ImageRef::parse("127.evil.example/a/b:1")
                .expect("parse")
                .is_loopback()
        );
        assert_eq!(
            ImageRef::parse("index.docker.io/library/nginx:1")
                .expect("parse")
                .registry,
            "registry-1.docker.io"
        );
        assert!(ImageRef::parse("app:").is_err());
        assert!(ImageRef::parse("Org/App:1").is_err());
    }

    #[test]
    fn armhf_nodes_run_arm_v7_and_older_only() {
        let p = |a: &str, v: Option<&str>| Platform {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(String::from),
        };
        assert!(p("arm", Some("v7")).runs_on(Arch::Armhf));
        assert!(p("arm", Some("v6")).runs_on(Arch::Armhf));
        assert!(!p("arm64", Some("v8")).runs_on(Arch::Armhf));
        assert!(p("arm64", Some("v8")).runs_on(Arch::Arm64));
        assert!(!p("amd64", None).runs_on(Arch::Arm64));
    }
}
