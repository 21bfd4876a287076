//! Image references (`[registry/]repository[:tag][@digest]`), parsed by
//! the distribution project's grammar rather than by splitting strings:
//! the registry part must be a host name, an IPv4 address or a bracketed
//! IPv6 address with an optional port, and the URL pictl builds from it
//! must name exactly that host. So no `user@host`, `host:port@other`,
//! `#`, `?` or `\` trick can send a lookup somewhere else.

use std::net::{IpAddr, Ipv6Addr};

use reqwest::Url;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Host (and port) of the registry API.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>`.
    pub digest: Option<String>,
    /// `http(s)://<registry>/`, checked to name the registry's host.
    base: Url,
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("{image}: {why}");
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => {
                let d = digest(d).ok_or_else(|| bad("the digest is not a sha256 digest"))?;
                (r, Some(d))
            }
            None => (image, None),
        };
        let (domain, path) = match rest.split_once('/') {
            Some((first, path)) if first.contains(['.', ':', '[']) || first == "localhost" => {
                (Some(first), path)
            }
            _ => (None, rest),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (path, None),
        };
        if !repository.split('/').all(path_component) {
            return Err(bad("not an image reference (repository)"));
        }
        if tag.is_some_and(|t| !valid_tag(t)) {
            return Err(bad("not an image reference (tag)"));
        }
        let (registry, repository) = match domain {
            None | Some("docker.io" | "index.docker.io") => {
                let repo = if repository.contains('/') {
                    repository.to_string()
                } else {
                    format!("library/{repository}")
                };
                ("registry-1.docker.io".to_string(), repo)
            }
            Some(d) if valid_domain(d) => (d.to_string(), repository.to_string()),
            Some(_) => return Err(bad("not an image reference (registry host)")),
        };
        let base = base_url(&registry).ok_or_else(|| bad("the registry is not a plain host"))?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(String::from),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
            base,
        })
    }

    /// What to ask the registry for: the digest when pinned.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Loopback registries (Docker's default "insecure" set) speak http.
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.base)
    }

    /// `http(s)://<registry>/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `<base>v2/<repository>/<what>`.
    pub fn api_url(&self, what: &str) -> String {
        format!("{}v2/{}/{what}", self.base, self.repository)
    }
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The registry's base URL, if the URL parser reads `registry` as exactly
/// a host and port (nothing in it is userinfo, a path, a query or a fragment).
fn base_url(registry: &str) -> Option<Url> {
    let mut url = Url::parse(&format!("https://{registry}/")).ok()?;
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str()?),
        None => url.host_str()?.to_string(),
    };
    // `:443` is dropped by the parser as the default port.
    let same = authority.eq_ignore_ascii_case(registry.trim_end_matches(":443"));
    if !plain || !same {
        return None;
    }
    if is_loopback(&url) {
        url.set_scheme("http").ok()?;
    }
    Some(url)
}

/// `sha256:<64 hex>`, lowercased (the form registries compute).
pub(crate) fn digest(d: &str) -> Option<String> {
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// `host[:port]`: DNS labels, an IPv4 address, or `[IPv6]`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(v6) = d.strip_prefix('[') {
        let Some((addr, rest)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        match rest {
            "" => return true,
            r => ("", r.strip_prefix(':').unwrap_or("x")),
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (d, "0"),
        }
    };
    let port_ok = !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok();
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && (d.starts_with('[') || host.split('.').all(label))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let sep = b[i..].iter().take_while(|x| !alnum(**x)).count();
        let s = &c[i..i + sep];
        if !(s == "." || s == "_" || s == "__" || s.bytes().all(|x| x == b'-')) {
            return false;
        }
        i += sep;
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    t.len() <= 128
        && t.bytes().next().is_some_and(word)
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:9380c104186fb3bcdcc0b158c26d231fef73ead15905f4f99031beefb09b3d28";

    #[test]
    fn docker_hub_references_are_normalized() {
        let r = ImageRef::parse("nginx").expect("parse");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("registry-1.docker.io", "library/nginx", Some("latest"))
        );
        let r = ImageRef::parse(&format!("mccutchen/go-httpbin:v2.8.0@{D}")).expect("parse");
        assert_eq!(r.repository, "mccutchen/go-httpbin");
        assert_eq!(r.tag.as_deref(), Some("v2.8.0"));
        assert_eq!(r.reference(), D);
        assert_eq!(r.base_url().as_str(), "https://registry-1.docker.io/");
        assert_eq!(
            ImageRef::parse("index.docker.io/library/nginx:1")
                .expect("parse")
                .registry,
            "registry-1.docker.io"
        );
    }

    #[test]
    fn registries_with_ports_and_loopback_are_recognized() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:1.0").expect("parse");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
        assert_eq!(r.base_url().as_str(), "http://127.0.0.1:5000/");
        assert_eq!(
            r.api_url("manifests/1.0"),
            "http://127.0.0.1:5000/v2/team/app/manifests/1.0"
        );
        let r = ImageRef::parse("ghcr.io/org/app").expect("parse");
        assert_eq!(r.base_url().as_str(), "https://ghcr.io/");
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
    }

    #[test]
    fn digests_are_lowercased_where_parsed_and_must_be_sha256_hex() {
        let upper = format!("app@{}", D.to_ascii_uppercase().replace("SHA256", "sha256"));
        assert_eq!(
            ImageRef::parse(&upper).expect("parse").digest.as_deref(),
            Some(D)
        );
        assert!(ImageRef::parse("app@md5:abc").is_err());
        assert!(ImageRef::parse(&format!("app@sha256:{}", "z".repeat(64))).is_err());
        assert!(ImageRef::parse("app@sha256:abc").is_err());
    }

    #[test]
    fn userinfo_and_host_tricks_never_reach_another_host() {
        for image in [
            "good.example:443@evil.example/app",
            "user@evil.example/app:1",
            "user:pw@evil.example/app:1",
            "good.example#@evil.example/app",
            "good.example\\evil.example/app",
            "good.example?x=evil.example/app",
            "good.example:5000:6000/app",
            "good.example:99999/app",
            "good.example:/app",
            "[::1]x/app",
            "[evil.example]/app",
            "-good.example/app",
            "good.example/../evil/app",
            "good.example/app%2f..",
            "app:",
            "Org/App:1",
        ] {
            assert!(ImageRef::parse(image).is_err(), "{image} was accepted");
        }
        for (image, host) in [
            ("good.example:443/app", "good.example"),
            ("good.example:5000/a/b:1", "good.example"),
            ("[::1]:5000/a", "[::1]"),
            ("10.0.0.1/a__b/c-d.e:v1_2", "10.0.0.1"),
        ] {
            let r = ImageRef::parse(image).expect(image);
            assert_eq!(r.base_url().host_str(), Some(host), "{image}");
            assert!(r.base_url().username().is_empty());
        }
    }
}
