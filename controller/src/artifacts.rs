//! K3s release artifacts, fetched once per arch on the controller.
//!
//! Binaries come from `<mirror>/<version>/` and are verified against the
//! release's own `sha256sum-<arch>.txt` before anything uses them; the cache
//! is re-verified on every use, so a corrupted file is refused rather than
//! uploaded. Nodes never need internet access.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::arch::Arch;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("downloading {url} failed")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading {url} failed: HTTP {status}")]
    HttpStatus { url: String, status: u16 },
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
    bins: Mutex<HashMap<Arch, Arc<Artifact>>>,
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

impl ArtifactStore {
    /// `persist`: keep what is downloaded in the cache (`plan` passes
    /// false: it must leave nothing behind, not even a checksum file).
    pub fn new(mirror: &str, version: &str, cache_root: &Path, persist: bool) -> Self {
        Self {
            persist,
            mirror: mirror.trim_end_matches('/').to_string(),
            version: version.to_string(),
            cache_dir: cache_root.join("k3s").join(version),
            client: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(15))
                // No progress for this long on a read means a dead mirror.
                .read_timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
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

    async fn fetch(&self, asset: &str) -> Result<Vec<u8>, ArtifactError> {
        let url = self.url(asset);
        tracing::info!(%url, "downloading");
        let resp =
            self.client
                .get(&url)
                .send()
                .await
                .map_err(|source| ArtifactError::Download {
                    url: url.clone(),
                    source,
                })?;
        if !resp.status().is_success() {
            return Err(ArtifactError::HttpStatus {
                url,
                status: resp.status().as_u16(),
            });
        }
        let body = resp
            .bytes()
            .await
            .map_err(|source| ArtifactError::Download { url, source })?;
        Ok(body.to_vec())
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
        let mut sums = self.sums.lock().await;
        if let Some(s) = sums.get(&arch) {
            return Ok(s.clone());
        }
        let file = arch.checksum_asset();
        let text = match std::fs::read(self.cache_dir.join(file)) {
            Ok(b) => b,
            Err(_) => {
                let b = self.fetch(file).await?;
                self.write_cache(file, &b)?;
                b
            }
        };
        let text = String::from_utf8_lossy(&text);
        let asset = arch.k3s_asset();
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
        sums.insert(arch, sha.clone());
        Ok(sha)
    }

    /// The verified binary for `arch`, downloaded at most once.
    pub async fn binary(&self, arch: Arch) -> Result<Arc<Artifact>, ArtifactError> {
        let expected = self.expected_sha256(arch).await?;
        let mut bins = self.bins.lock().await;
        if let Some(a) = bins.get(&arch) {
            return Ok(a.clone());
        }
        let asset = arch.k3s_asset();
        let cached = std::fs::read(self.cache_dir.join(asset))
            .ok()
            .filter(|b| tokio::task::block_in_place(|| sha256_hex(b)) == expected);
        let bytes = match cached {
            Some(b) => b,
            None => {
                let b = self.fetch(asset).await?;
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
        bins.insert(arch, a.clone());
        Ok(a)
    }
}
