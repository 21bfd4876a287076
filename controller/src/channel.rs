//! K3s release channels (`stable`, `latest`, `v1.32`): resolved to an exact
//! release the way K3s's installer does, by asking the channel server where
//! the channel redirects to. Used only when the inventory follows a channel
//! instead of pinning `k3s_version`. [`Release`] orders releases, so a
//! channel answer older than what a node runs can be refused.

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

/// A K3s release as numbers, `vX.Y.Z[-rcR]+k3sN`, ordered the way semver
/// orders its core and pre-release (`v1.33.1-rc1` < `v1.33.1-rc2` <
/// `v1.33.1`), with K3s's `k3sN` build number breaking ties (semver itself
/// ignores build metadata, but K3s ships `+k3s2` as a newer rebuild of the
/// same Kubernetes release). So `v1.33.1-rc1+k3s2` (a candidate for the
/// rebuild) sorts after `v1.33.1-rc1+k3s1` yet before `v1.33.1+k3s1`, as
/// every pre-release precedes its release: the order k0s uses for its own
/// `+k0s.N` builds (k0sproject/version, `testdata/version-ordering.txt`).
/// Fields are compared in declaration order, which is what makes the derived
/// `Ord` that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Pre,
    k3s: u64,
}

/// Where a version stands among the pre-releases of its `X.Y.Z`: every
/// release candidate (`Rc(n)`, by `n`) before the release itself (`Final`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pre {
    Rc(u64),
    Final,
}

impl Release {
    /// `None` for anything else (`v1.32.5` without its `+k3sN`, a pre-release
    /// other than `-rcN`, junk a node printed): such a version cannot be
    /// ordered, so it is never compared.
    pub fn parse(v: &str) -> Option<Self> {
        let (semver, build) = v.strip_prefix('v')?.split_once('+')?;
        let num = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        let (core, pre) = match semver.split_once('-') {
            Some((core, pre)) => (core, Pre::Rc(num(pre.strip_prefix("rc")?)?)),
            None => (semver, Pre::Final),
        };
        let mut parts = core.split('.');
        let release = Release {
            major: num(parts.next()?)?,
            minor: num(parts.next()?)?,
            patch: num(parts.next()?)?,
            pre,
            k3s: num(build.strip_prefix("k3s")?)?,
        };
        parts.next().is_none().then_some(release)
    }
}

/// The minor releases an upgrade from `running` to `target` would skip
/// (`v1.30.x` → `v1.32.y` skips `v1.31`), or `None` when it skips none or
/// either version cannot be ordered. Kubernetes upgrades one minor at a time.
pub fn skipped_minor(running: &str, target: &str) -> Option<String> {
    let (r, t) = (Release::parse(running)?, Release::parse(target)?);
    (r.major == t.major && t.minor > r.minor + 1).then(|| {
        let skipped: Vec<String> = (r.minor + 1..t.minor)
            .map(|m| format!("v{}.{m}", r.major))
            .collect();
        skipped.join(", ")
    })
}

/// Whether moving from `running` to `target` goes back to an older release
/// (`false` when either cannot be ordered).
pub fn is_downgrade(running: &str, target: &str) -> bool {
    matches!(
        (Release::parse(running), Release::parse(target)),
        (Some(r), Some(t)) if t < r
    )
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
mod minor_tests {
    use super::skipped_minor;

    #[test]
    fn an_upgrade_that_skips_a_minor_names_it() {
        assert_eq!(
            skipped_minor("v1.30.4+k3s1", "v1.32.5+k3s1").as_deref(),
            Some("v1.31")
        );
        assert_eq!(
            skipped_minor("v1.29.1+k3s1", "v1.32.5+k3s1").as_deref(),
            Some("v1.30, v1.31")
        );
        assert_eq!(skipped_minor("v1.31.9+k3s1", "v1.32.5+k3s1"), None);
        assert_eq!(skipped_minor("v1.32.5+k3s1", "v1.30.1+k3s1"), None);
        assert_eq!(skipped_minor("junk", "v1.32.5+k3s1"), None);
        // A release candidate is of its minor like the release.
        assert_eq!(
            skipped_minor("v1.31.9+k3s1", "v1.33.0-rc1+k3s1").as_deref(),
            Some("v1.32")
        );
        assert_eq!(skipped_minor("v1.32.5-rc2+k3s1", "v1.33.0-rc1+k3s1"), None);
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

    #[test]
    fn releases_are_ordered_by_each_number_not_as_text() {
        let ordered = [
            "v1.9.9+k3s9",
            "v1.28.15+k3s1",
            "v1.32.5+k3s1",
            "v1.32.5+k3s2",
            "v1.32.5+k3s10",
            "v1.32.10-rc1+k3s1",
            "v1.32.10-rc1+k3s2",
            "v1.32.10-rc2+k3s1",
            "v1.32.10-rc10+k3s1",
            "v1.32.10+k3s1",
            "v1.32.10+k3s2",
            "v1.32.11-rc1+k3s1",
            "v1.33.0+k3s1",
            "v2.0.0+k3s1",
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (Release::parse(pair[0]), Release::parse(pair[1]));
            assert!(a.is_some() && a < b, "{} < {}", pair[0], pair[1]);
            assert!(is_downgrade(pair[1], pair[0]), "{} → {}", pair[1], pair[0]);
            assert!(!is_downgrade(pair[0], pair[1]), "{} → {}", pair[0], pair[1]);
        }
        assert!(!is_downgrade("v1.32.5+k3s1", "v1.32.5+k3s1"));
        assert!(!is_downgrade("v1.32.5-rc1+k3s1", "v1.32.5-rc1+k3s1"));
    }

    #[test]
    fn a_release_candidate_precedes_its_release_and_follows_the_one_before() {
        // Semver's pre-release rule, not text order: "-rc1" would sort after
        // "+k3s1" as bytes, and rc10 before rc2.
        assert!(is_downgrade("v1.33.1+k3s1", "v1.33.1-rc1+k3s1"));
        assert!(!is_downgrade("v1.33.1-rc1+k3s1", "v1.33.1+k3s1"));
        assert!(is_downgrade("v1.33.1-rc10+k3s1", "v1.33.1-rc2+k3s1"));
        // The candidate of a later patch is newer than any earlier release.
        assert!(!is_downgrade("v1.33.0+k3s5", "v1.33.1-rc1+k3s1"));
        assert!(is_downgrade("v1.33.1-rc1+k3s1", "v1.33.0+k3s5"));
        // The pre-release decides before the build number: any candidate of
        // v1.33.1 precedes every v1.33.1 release, as semver orders them.
        assert!(is_downgrade("v1.33.1+k3s1", "v1.33.1-rc1+k3s2"));
        assert!(!is_downgrade("v1.33.1-rc1+k3s2", "v1.33.1+k3s1"));
        assert!(is_downgrade("v1.33.1+k3s2", "v1.33.1-rc1+k3s2"));
        // Among candidates of one release, the build number breaks the tie.
        assert!(is_downgrade("v1.33.1-rc1+k3s2", "v1.33.1-rc1+k3s1"));
    }

    #[test]
    fn versions_that_cannot_be_ordered_are_never_called_downgrades() {
        for junk in [
            "v1.32.5",
            "1.32.5+k3s1",
            "v1.32.5-rc+k3s1",
            "v1.32.5-rc1",
            "v1.32.5-beta1+k3s1",
            "v1.32.5-RC1+k3s1",
            "v1.32.5-+k3s1",
            "v1.32.5-rc1-rc2+k3s1",
            "v1.32.5-rc-1+k3s1",
            "v1.32+k3s1",
            "v1.32.5.1+k3s1",
            "v1.32.5+rke2r1",
            "v1.32.+k3s1",
            "v1.32.5+k3s",
            "v1.32.-5+k3s1",
            "v99999999999999999999.0.0+k3s1",
            "",
        ] {
            assert_eq!(Release::parse(junk), None, "{junk}");
            assert!(!is_downgrade(junk, "v1.0.0+k3s1"), "{junk}");
            assert!(!is_downgrade("v9.0.0+k3s1", junk), "{junk}");
        }
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
