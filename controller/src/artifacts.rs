//! K3s release artifacts, fetched once per arch on the controller.
//!
//! Binaries come from `<mirror>/<version>/` and are verified against the
//! release's own `sha256sum-<arch>.txt` before anything uses them. Nodes
//! never need internet access.
//!
//! The cache is keyed by where an artifact came from (the mirror) as well as
//! version and arch, and trusts nothing on its own: the checksum file is
//! fetched from the mirror on every run (it is small), and a cached binary
//! is used only when it hashes to what that checksum file says. A binary
//! cached from one mirror (a lab's plain-http one, say) can never stand in
//! for another mirror's release of the same version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::arch::Arch;
use crate::download::{self, DownloadError};

/// A checksum file is a few lines; anything larger is not one.
const CHECKSUM_LIMIT: u64 = 1 << 20;
/// K3s binaries are ~70 MB; allow growth, refuse the absurd.
const BINARY_LIMIT: u64 = 512 << 20;
/// The airgap image archives are a few hundred MB at most.
const IMAGES_LIMIT: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("{file} from {url} does not list {asset}")]
    NotInChecksums {
        url: String,
        file: String,
        asset: String,
    },
    #[error(
        "{asset} for {version} does not match the release checksum (expected sha256 {expected}, got {actual}); refusing to use it"
    )]
    ChecksumMismatch {
        asset: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("artifact cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One verified binary.
pub struct Artifact {
    pub arch: Arch,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("arch", &self.arch)
            .field("sha256", &self.sha256)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Downloads and caches one K3s version's artifacts.
#[derive(Debug)]
pub struct ArtifactStore {
    mirror: String,
    version: String,
    cache_dir: PathBuf,
    persist: bool,
    client: reqwest::Client,
    sums: Mutex<HashMap<Arch, String>>,
    bins: Mutex<HashMap<(Arch, Kind), Arc<Artifact>>>,
}

/// Which release asset of an arch: the binary or K3s's image archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Binary,
    AirgapImages,
}

impl Kind {
    fn asset(self, arch: Arch) -> &'static str {
        match self {
            Kind::Binary => arch.k3s_asset(),
            Kind::AirgapImages => arch.airgap_asset(),
        }
    }

    fn limit(self) -> u64 {
        match self {
            Kind::Binary => BINARY_LIMIT,
            Kind::AirgapImages => IMAGES_LIMIT,
        }
    }
}

/// `$PICTL_CACHE_DIR`, else `$XDG_CACHE_HOME/pictl`, else `~/.cache/pictl`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PICTL_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache"))
                .unwrap_or_else(|| "/var/cache".into())
        });
    base.join("pictl")
}

pub use crate::transport::upload::sha256_hex;

/// The cache directory name for a mirror: readable, and unique per URL
/// (`github.com-1a2b3c4d5e6f7a8b`). The hash covers the whole URL, scheme
/// included, so `http://` and `https://` of one host never share a cache.
pub fn mirror_key(mirror: &str) -> String {
    let mirror = mirror.trim_end_matches('/');
    let host: String = mirror
        .split_once("://")
        .map_or(mirror, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{host}-{}", &sha256_hex(mirror.as_bytes())[..16])
}

impl ArtifactStore {
    /// `persist`: keep what is downloaded in the cache (`plan` passes
    /// false: it must leave nothing behind, not even a checksum file).
    pub fn new(mirror: &str, version: &str, cache_root: &Path, persist: bool) -> Self {
        Self {
            persist,
            mirror: mirror.trim_end_matches('/').to_string(),
            version: version.to_string(),
            cache_dir: cache_root
                .join("k3s")
                .join(mirror_key(mirror))
                .join(version),
            client: download::client(Duration::from_secs(15), Duration::from_secs(60)),
            sums: Mutex::new(HashMap::new()),
            bins: Mutex::new(HashMap::new()),
        }
    }

    fn url(&self, asset: &str) -> String {
        format!(
            "{}/{}/{}",
            self.mirror,
            self.version.replace('+', "%2B"),
            asset
        )
    }

    async fn fetch(&self, asset: &str, limit: u64) -> Result<Vec<u8>, ArtifactError> {
        let url = self.url(asset);
        tracing::info!(%url, "downloading");
        Ok(download::get_limited(&self.client, &url, limit).await?)
    }

    /// Where this store caches (one directory per mirror and version).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn write_cache(&self, name: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
        if !self.persist {
            return Ok(());
        }
        let err = |source| ArtifactError::Cache {
            path: self.cache_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(err)?;
        let tmp = self
            .cache_dir
            .join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, self.cache_dir.join(name)).map_err(err)
    }

    /// The release's sha256 for this arch's binary.
    pub async fn expected_sha256(&self, arch: Arch) -> Result<String, ArtifactError> {
        self.expected(arch, Kind::Binary).await
    }

    /// The release's sha256 for this arch's `kind` of asset, from its
    /// checksum file (fetched once per run and arch).
    pub async fn expected(&self, arch: Arch, kind: Kind) -> Result<String, ArtifactError> {
        let mut sums = self.sums.lock().await;
        let file = arch.checksum_asset();
        let text = match sums.entry(arch) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                // Never from the cache: a cached checksum file would vouch for a
                // cached binary with nothing from the mirror to confirm either.
                let text = self.fetch(file, CHECKSUM_LIMIT).await?;
                e.insert(String::from_utf8_lossy(&text).into_owned())
            }
        };
        let asset = kind.asset(arch);
        let sha = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?, it.next()?.trim_start_matches('*')))
            })
            .find(|(_, name)| *name == asset)
            .map(|(sha, _)| sha.to_ascii_lowercase())
            .ok_or_else(|| ArtifactError::NotInChecksums {
                url: self.url(file),
                file: file.to_string(),
                asset: asset.to_string(),
            })?;
        Ok(sha)
    }

    /// The verified binary for `arch`, downloaded at most once.
    pub async fn binary(&self, arch: Arch) -> Result<Arc<Artifact>, ArtifactError> {
        self.asset(arch, Kind::Binary).await
    }

    /// The verified `kind` of asset for `arch`, downloaded at most once.
    pub async fn asset(&self, arch: Arch, kind: Kind) -> Result<Arc<Artifact>, ArtifactError> {
        let expected = self.expected(arch, kind).await?;
        let mut bins = self.bins.lock().await;
        if let Some(a) = bins.get(&(arch, kind)) {
            return Ok(a.clone());
        }
        let asset = kind.asset(arch);
        let cached = std::fs::read(self.cache_dir.join(asset))
            .ok()
            .filter(|b| tokio::task::block_in_place(|| sha256_hex(b)) == expected);
        let bytes = match cached {
            Some(b) => b,
            None => {
                let b = self.fetch(asset, kind.limit()).await?;
                let actual = tokio::task::block_in_place(|| sha256_hex(&b));
                if actual != expected {
                    return Err(ArtifactError::ChecksumMismatch {
                        asset: asset.to_string(),
                        version: self.version.clone(),
                        expected,
                        actual,
                    });
                }
                self.write_cache(asset, &b)?;
                b
            }
        };
        let a = Arc::new(Artifact {
            arch,
            sha256: expected,
            bytes,
        });
        bins.insert((arch, kind), a.clone());
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::tests::{ok, serve};

    const VERSION: &str = "v1.32.5+k3s1";

    fn sums_for(bin: &[u8]) -> Vec<u8> {
        format!(
            "{}  k3s\n{}  k3s-airgap-images-amd64.tar\n",
            sha256_hex(bin),
            "0".repeat(64)
        )
        .into_bytes()
    }

    #[test]
    fn mirrors_get_distinct_readable_cache_keys() {
        let gh = mirror_key("https://github.com/k3s-io/k3s/releases/download");
        assert!(gh.starts_with("github.com-"), "{gh}");
        assert_eq!(
            gh,
            mirror_key("https://github.com/k3s-io/k3s/releases/download/")
        );
        assert_ne!(
            gh,
            mirror_key("http://github.com/k3s-io/k3s/releases/download")
        );
        assert_ne!(
            gh,
            mirror_key("https://github.com/other/k3s/releases/download")
        );
        let odd = mirror_key("http://10.0.0.1:8080/../x");
        assert!(odd.starts_with("10.0.0.1_8080-"), "{odd}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_binary_cached_from_one_mirror_is_never_used_for_another() {
        // Regression (hardening issue): after the lab demo, the simulator sat
        // in the cache as k3s v1.32.5+k3s1 and a later run with the default
        // mirror would have installed it on real nodes.
        let cache = tempfile::tempdir().expect("tmp");
        let lab_bin = b"the lab's simulator".to_vec();
        let lab = serve(vec![ok(&sums_for(&lab_bin)), ok(&lab_bin)]).await;
        let from_lab = ArtifactStore::new(&lab, VERSION, cache.path(), true);
        assert_eq!(
            from_lab.binary(Arch::Amd64).await.expect("lab").bytes,
            lab_bin
        );

        let real_bin = b"the real k3s".to_vec();
        let real = serve(vec![ok(&sums_for(&real_bin)), ok(&real_bin)]).await;
        let from_real = ArtifactStore::new(&real, VERSION, cache.path(), true);
        assert_ne!(from_lab.cache_dir(), from_real.cache_dir());
        let got = from_real.binary(Arch::Amd64).await.expect("real");
        assert_eq!(
            got.bytes, real_bin,
            "the other mirror's cached binary was used"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_cached_binary_is_reused_only_when_the_mirrors_checksum_confirms_it() {
        let cache = tempfile::tempdir().expect("tmp");
        let bin = b"k3s bytes".to_vec();
        // Second run: the mirror answers the checksum file only, no binary.
        let mirror = serve(vec![ok(&sums_for(&bin)), ok(&bin), ok(&sums_for(&bin))]).await;
        ArtifactStore::new(&mirror, VERSION, cache.path(), true)
            .binary(Arch::Amd64)
            .await
            .expect("first");
        let again = ArtifactStore::new(&mirror, VERSION, cache.path(), true)
            .binary(Arch::Amd64)
            .await
            .expect("from cache");
        assert_eq!(again.bytes, bin);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_poisoned_cache_with_its_own_checksum_file_is_not_trusted() {
        let cache = tempfile::tempdir().expect("tmp");
        let bin = b"genuine".to_vec();
        let mirror = serve(vec![ok(&sums_for(&bin)), ok(&bin)]).await;
        let store = ArtifactStore::new(&mirror, VERSION, cache.path(), true);
        // Someone left a binary and a checksum file vouching for it.
        let evil = b"evil".to_vec();
        std::fs::create_dir_all(store.cache_dir()).expect("mkdir");
        std::fs::write(store.cache_dir().join("k3s"), &evil).expect("write");
        std::fs::write(
            store.cache_dir().join("sha256sum-amd64.txt"),
            sums_for(&evil),
        )
        .expect("write");
        let got = store.binary(Arch::Amd64).await.expect("binary");
        assert_eq!(got.bytes, bin);
        assert_eq!(got.sha256, sha256_hex(&bin));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_download_that_does_not_match_the_checksum_is_refused_and_not_cached() {
        let cache = tempfile::tempdir().expect("tmp");
        let mirror = serve(vec![ok(&sums_for(b"expected")), ok(b"tampered")]).await;
        let store = ArtifactStore::new(&mirror, VERSION, cache.path(), true);
        let err = store.binary(Arch::Amd64).await.expect_err("mismatch");
        assert!(
            matches!(err, ArtifactError::ChecksumMismatch { .. }),
            "{err}"
        );
        assert!(!store.cache_dir().join("k3s").exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn airgap_images_are_verified_against_the_same_checksum_file() {
        let cache = tempfile::tempdir().expect("tmp");
        let images = b"k3s's images".to_vec();
        let sums = format!(
            "{}  k3s-arm64\n{}  k3s-airgap-images-arm64.tar.zst\n",
            "1".repeat(64),
            sha256_hex(&images)
        );
        let mirror = serve(vec![ok(sums.as_bytes()), ok(&images)]).await;
        let store = ArtifactStore::new(&mirror, VERSION, cache.path(), true);
        let got = store.asset(Arch::Arm64, Kind::AirgapImages).await;
        assert_eq!(got.expect("images").bytes, images);
        let tampered = serve(vec![ok(sums.as_bytes()), ok(b"other images")]).await;
        let other = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::new(&tampered, VERSION, other.path(), true);
        let err = store.asset(Arch::Arm64, Kind::AirgapImages).await;
        assert!(matches!(err, Err(ArtifactError::ChecksumMismatch { .. })));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn plan_leaves_nothing_in_the_cache() {
        let cache = tempfile::tempdir().expect("tmp");
        let bin = b"k3s".to_vec();
        let mirror = serve(vec![ok(&sums_for(&bin)), ok(&bin)]).await;
        let store = ArtifactStore::new(&mirror, VERSION, cache.path(), false);
        store.binary(Arch::Amd64).await.expect("binary");
        assert!(!cache.path().join("k3s").exists());
    }
}
