//! Image archives in `<data-dir>/agent/images/`, imported as K3s's agent
//! does once containerd is up (pkg/agent/containerd/containerd.go
//! `PreloadImages` → watcher.go `importAndWatchImages`): every file of the
//! directory (and its subdirectories) whose name ends in one of wharfie's
//! `tarfile.SupportedExtensions` (`.tar .tar.lz4 .tar.bz2 .tbz .tar.gz .tgz
//! .tar.zst .tzst`) or `.txt` is imported before the kubelet starts; other
//! files are ignored. An archive is opened by its extension
//! (`tarfile.GetOpener`) and its images named from its `manifest.json`
//! (`docker save`) or `index.json` (OCI); `.txt` is a list of references to
//! pull. A file that cannot be imported is logged ("Failed to process image
//! event: failed to import …") and skipped, never fatal. The watcher goes on
//! after start: a new file is imported without a restart, a known one again
//! only when its size changed and its mtime moved forward
//! (`processImageEvent`); the seen-file cache lives in memory (a
//! `.cache.json` in the directory, which K3s uses to persist it, is not
//! simulated), so a restart imports every file again.
//!
//! The simulator has no containerd: what was imported is kept in
//! `<data-dir>/agent/containerd/k3s-sim-images.json` (the image store
//! outlives K3s, as containerd's does), and while K3s runs
//! `/run/k3s/containerd/k3s-sim-store` names that file, where `crictl
//! images` finds it as the real one finds containerd's socket. `.tar.lz4`,
//! `.tar.bz2` and `.tar.gz` are accepted names but the simulator cannot
//! decompress them: it logs that as an import failure (a known gap; K3s
//! would import them). A `.txt` list can only be satisfied by images already
//! imported: the lab has no registry to pull from.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// wharfie pkg/tarfile `SupportedExtensions`, and the watcher's `.txt`.
const SUPPORTED: [&str; 9] = [
    ".tar", ".tar.lz4", ".tar.bz2", ".tbz", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".txt",
];
/// Where a running K3s's image store is named (beside containerd's socket).
pub const POINTER: &str = "/run/k3s/containerd/k3s-sim-store";
/// The watcher's event delay (`AddAfter(event.Name, 2*time.Second)`).
const POLL: Duration = Duration::from_secs(2);
/// Entries of an archive read into memory (manifests, configs); layers are
/// only read through.
const SMALL: u64 = 1 << 20;

/// One image in the store, as `crictl images` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub id: String,
    pub size: u64,
    /// The file it was imported from.
    pub from: String,
}

/// The watcher's state: the image dir, the store, and what it has seen.
pub struct Importer {
    dir: PathBuf,
    store: PathBuf,
    seen: HashMap<PathBuf, (u64, SystemTime)>,
    failed: HashMap<PathBuf, (u64, SystemTime)>,
}

/// `isFileSupported`: a plain (case-sensitive) suffix match.
pub fn is_supported(name: &str) -> bool {
    SUPPORTED.iter().any(|e| name.ends_with(e))
}

fn has_suffix_i(name: &str, exts: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    exts.iter().any(|e| lower.ends_with(e))
}

impl Importer {
    pub fn new(dir: PathBuf, store: PathBuf) -> Self {
        Self {
            dir,
            store,
            seen: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// One pass over the directory: what `importAndWatchImages` does at
    /// start, and what the watcher's events lead to afterwards.
    pub fn scan(&mut self) {
        let mut files = Vec::new();
        list(&self.dir, &mut files);
        for path in files {
            self.process(&path);
        }
    }

    fn process(&mut self, path: &Path) {
        let name = path.to_string_lossy().into_owned();
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if !is_supported(&name) {
            return;
        }
        let now = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let due = match self.seen.get(path) {
            None => self.failed.get(path) != Some(&now),
            Some(&(size, mtime)) => size != now.0 && now.1 > mtime,
        };
        if !due {
            return;
        }
        let start = std::time::Instant::now();
        match self.preload(path, &name) {
            Ok(()) => {
                crate::info!("Imported images from {name} in {:?}", start.elapsed());
                self.seen.insert(path.to_path_buf(), now);
                self.failed.remove(path);
            }
            Err(e) => {
                crate::error!("Failed to process image event: failed to import {name}: {e:#}");
                self.failed.insert(path.to_path_buf(), now);
            }
        }
    }

    /// `preloadFile`: a pull list or an archive, into the store.
    fn preload(&self, path: &Path, name: &str) -> Result<()> {
        let mut store = load(&self.store);
        let images = if has_suffix_i(name, &[".txt"]) {
            crate::info!("Pulling images from {name}");
            pull_list(path, &store).with_context(|| format!("failed to pull images from {name}"))?
        } else {
            let reader = open(path)?;
            crate::info!("Importing images from {name}");
            read_archive(reader, name)
                .with_context(|| format!("failed to import images from {name}"))?
        };
        for image in images {
            crate::info!("Imported {}", image.name);
            store.insert(image.name.clone(), image);
        }
        save(&self.store, &store)
    }
}

/// Every file under `dir`, by name (Go's `os.ReadDir` order), recursively.
fn list(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            list(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `tarfile.GetOpener`, for what the simulator can decompress.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let name = path.to_string_lossy();
    let file = std::fs::File::open(path)?;
    let file = std::io::BufReader::new(file);
    if has_suffix_i(&name, &[".tar"]) {
        Ok(Box::new(file))
    } else if has_suffix_i(&name, &["tar.zst", ".tzst"]) {
        let zr = ruzstd::decoding::StreamingDecoder::new(file).map_err(|e| anyhow!("zstd: {e}"))?;
        Ok(Box::new(zr))
    } else if has_suffix_i(&name, &[".tar.lz4", ".tar.bz2", ".tbz", ".tar.gz", ".tgz"]) {
        bail!("k3s-sim cannot decompress {name} (K3s would): not simulated")
    } else {
        bail!(
            "unhandled file type; supported extensions: {}",
            SUPPORTED[..8].join(" ")
        )
    }
}

/// The images a `docker save` or OCI archive holds.
pub fn read_archive(reader: impl Read, name: &str) -> Result<Vec<Image>> {
    let entries = read_tar(reader)?;
    let from = Path::new(name)
        .file_name()
        .map_or(name.to_string(), |f| f.to_string_lossy().into_owned());
    if let Some(manifest) = entries.get("manifest.json") {
        return docker_images(manifest, &entries, &from);
    }
    if let Some(index) = entries.get("index.json") {
        return oci_images(index, &entries, &from);
    }
    bail!("no manifest.json or index.json: not an image archive")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_images(
    manifest: &Small,
    entries: &BTreeMap<String, Small>,
    from: &str,
) -> Result<Vec<Image>> {
    let list: Vec<DockerEntry> =
        serde_json::from_slice(&manifest.bytes).context("manifest.json")?;
    let mut out = Vec::new();
    for e in list {
        if !entries.contains_key(&e.config) {
            bail!("content {} not found in the archive", e.config);
        }
        let mut size = entries[&e.config].size;
        for l in &e.layers {
            size += entries
                .get(l)
                .ok_or_else(|| anyhow!("layer {l} not found in the archive"))?
                .size;
        }
        let id = e
            .config
            .trim_start_matches("blobs/sha256/")
            .trim_end_matches(".json")
            .to_string();
        for tag in e.repo_tags {
            out.push(Image {
                name: normalize(&tag),
                id: id.clone(),
                size,
                from: from.to_string(),
            });
        }
    }
    Ok(out)
}

fn oci_images(index: &Small, entries: &BTreeMap<String, Small>, from: &str) -> Result<Vec<Image>> {
    let index: serde_json::Value = serde_json::from_slice(&index.bytes).context("index.json")?;
    let mut out = Vec::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        let digest = m["digest"].as_str().unwrap_or_default();
        let blob = format!("blobs/{}", digest.replacen(':', "/", 1));
        let size = entries
            .get(&blob)
            .ok_or_else(|| anyhow!("content {digest} not found in the archive"))?
            .size;
        let a = &m["annotations"];
        let name = a["io.containerd.image.name"]
            .as_str()
            .or_else(|| a["org.opencontainers.image.ref.name"].as_str());
        if let Some(name) = name {
            out.push(Image {
                name: normalize(name),
                id: digest.trim_start_matches("sha256:").to_string(),
                size,
                from: from.to_string(),
            });
        }
    }
    Ok(out)
}

/// `docker.ParseNormalizedNamed`: `pause:3.6` is `docker.io/library/pause:3.6`.
fn normalize(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_domain, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    }
}

/// `prePullImages`: a reference already in the store is "already pulled";
/// anything else would be pulled, and the lab has no registry.
fn pull_list(path: &Path, store: &BTreeMap<String, Image>) -> Result<Vec<Image>> {
    let text = std::fs::read_to_string(path)?;
    let mut errs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if store.contains_key(&normalize(line)) {
            crate::info!("Image {line} has already been pulled");
        } else {
            crate::info!("Pulling image {line}");
            errs.push(format!("pulling {line}: no registry is reachable"));
        }
    }
    if errs.is_empty() {
        Ok(Vec::new())
    } else {
        Err(anyhow!(errs.join("; ")))
    }
}

/// A tar entry: its size, and its bytes when small.
pub struct Small {
    size: u64,
    bytes: Vec<u8>,
}

/// The entries of a ustar stream; a short or malformed stream is an error.
fn read_tar(mut r: impl Read) -> Result<BTreeMap<String, Small>> {
    let mut out = BTreeMap::new();
    let mut header = [0u8; 512];
    loop {
        r.read_exact(&mut header)
            .context("unexpected end of the archive")?;
        if header.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let sum: u64 = (header.iter().enumerate())
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if octal(&header[148..156]) != Some(sum) {
            bail!("not a tar archive (header checksum mismatch)");
        }
        let size = octal(&header[124..136]).ok_or_else(|| anyhow!("bad tar entry size"))?;
        let cut = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        let (prefix, name) = (cut(&header[345..500]), cut(&header[..100]));
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let padded = size.div_ceil(512) * 512;
        let mut bytes = Vec::new();
        if size <= SMALL {
            (&mut r).take(padded).read_to_end(&mut bytes)?;
            if (bytes.len() as u64) < padded {
                bail!("unexpected end of the archive in {name}");
            }
            bytes.truncate(size as usize);
        } else if std::io::copy(&mut (&mut r).take(padded), &mut std::io::sink())? < padded {
            bail!("unexpected end of the archive in {name}");
        }
        let regular = matches!(header[156], 0 | b'0');
        if regular {
            out.insert(
                name.trim_start_matches("./").to_string(),
                Small { size, bytes },
            );
        }
    }
}

fn octal(b: &[u8]) -> Option<u64> {
    let s = String::from_utf8_lossy(b);
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(s, 8).ok()
}

fn load(store: &Path) -> BTreeMap<String, Image> {
    std::fs::read(store)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(store: &Path, images: &BTreeMap<String, Image>) -> Result<()> {
    if let Some(dir) = store.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = store.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(images)?)?;
    std::fs::rename(&tmp, store)?;
    Ok(())
}

/// What `crictl images` prints for the store `POINTER` names.
pub fn crictl_images() -> Result<String> {
    let store = std::fs::read_to_string(POINTER).map_err(|_| {
        anyhow!("validate service connection: no containerd socket at /run/k3s/containerd/containerd.sock")
    })?;
    let images = load(Path::new(store.trim()));
    let mut out = format!(
        "{:<60} {:<20} {:<15} {}\n",
        "IMAGE", "TAG", "IMAGE ID", "SIZE"
    );
    for i in images.values() {
        let (repo, tag) = i.name.rsplit_once(':').unwrap_or((&i.name, "<none>"));
        let id: String = i.id.chars().take(13).collect();
        out.push_str(&format!("{repo:<60} {tag:<20} {id:<15} {}B\n", i.size));
    }
    Ok(out)
}

/// Imports what is in the image dir (blocking, as K3s's start does) and
/// keeps watching it for the life of the process.
pub fn start(data_dir: &Path) {
    let store = data_dir.join("agent/containerd/k3s-sim-images.json");
    if let Some(dir) = Path::new(POINTER).parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let _ = std::fs::write(POINTER, store.to_string_lossy().as_bytes());
    }
    let mut importer = Importer::new(data_dir.join("agent/images"), store);
    importer.scan();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL).await;
            importer = tokio::task::spawn_blocking(move || {
                importer.scan();
                importer
            })
            .await
            .unwrap_or_else(|_| std::process::exit(1));
        }
    });
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
