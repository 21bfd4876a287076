//! pictl's backup file: what `pictl backup` writes and `pictl restore`
//! reads. One JSON header line (format, cluster, datastore, the server
//! token a restore needs, and each part's length and sha256), then the
//! parts' bytes one after the other. Beside it, `<file>.sha256` in
//! `sha256sum`'s format. A file whose checksum, header or parts do not
//! add up is refused by name, before anything on a node is touched.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifacts::sha256_hex;
use crate::facts::Datastore;
use crate::secret::Secret;
use crate::state::{self, StateError};
use crate::write::Writer;

const FORMAT: &str = "pictl-backup/1";

/// One file of the datastore, as it was on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its name: `state.db` (and `-wal`, `-shm`) for SQLite, the etcd
    /// snapshot's own name for etcd.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A cluster's datastore at one time, and what a restore needs with it.
#[derive(Debug)]
pub struct Backup {
    pub cluster: String,
    pub datastore: Datastore,
    /// The server token (`K10<CA hash>::server:<secret>`): the datastore's
    /// secrets are encrypted with it, and its CA hash names the cluster.
    pub token: Secret,
    /// The server it was taken on, and when (UTC, `20261207T190000Z`).
    pub server: String,
    pub taken: String,
    pub parts: Vec<Part>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    cluster: String,
    datastore: String,
    token: String,
    server: String,
    taken: String,
    parts: Vec<PartHeader>,
}

#[derive(Serialize, Deserialize)]
struct PartHeader {
    name: String,
    len: usize,
    sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupFileError {
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{file}: no checksum file {sum} beside it; pictl restores only what it can verify")]
    NoChecksum { file: PathBuf, sum: PathBuf },
    #[error(
        "{file}: its sha256 is {got}, not the {want} recorded in {sum}: the file changed or is damaged"
    )]
    ChecksumMismatch {
        file: PathBuf,
        sum: PathBuf,
        got: String,
        want: String,
    },
    #[error("{file} is not a pictl backup, or is truncated or damaged: {why}")]
    Damaged { file: PathBuf, why: String },
    #[error(transparent)]
    State(#[from] StateError),
}

fn datastore_word(d: Datastore) -> &'static str {
    match d {
        Datastore::Etcd => "etcd",
        Datastore::Sqlite => "sqlite",
    }
}

/// The file's bytes: the header line, then the parts.
pub fn encode(b: &Backup) -> Vec<u8> {
    let header = Header {
        format: FORMAT.into(),
        cluster: b.cluster.clone(),
        datastore: datastore_word(b.datastore).into(),
        token: b.token.expose().to_string(),
        server: b.server.clone(),
        taken: b.taken.clone(),
        parts: b
            .parts
            .iter()
            .map(|p| PartHeader {
                name: p.name.clone(),
                len: p.bytes.len(),
                sha256: sha256_hex(&p.bytes),
            })
            .collect(),
    };
    let mut out = serde_json::to_vec(&header).expect("a header serializes");
    out.push(b'\n');
    for p in &b.parts {
        out.extend_from_slice(&p.bytes);
    }
    out
}

/// Reads a backup back from its bytes; `why` it is not one otherwise.
pub fn decode(bytes: &[u8]) -> Result<Backup, String> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let h: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("its header: {e}"))?;
    if h.format != FORMAT {
        return Err(format!("format {:?}, not {FORMAT}", h.format));
    }
    let datastore = match h.datastore.as_str() {
        "etcd" => Datastore::Etcd,
        "sqlite" => Datastore::Sqlite,
        other => return Err(format!("unknown datastore {other:?}")),
    };
    let (mut at, mut parts) = (nl + 1, Vec::new());
    for p in &h.parts {
        let end = at
            .checked_add(p.len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| format!("part {} is cut short", p.name))?;
        let part = &bytes[at..end];
        if sha256_hex(part) != p.sha256 {
            return Err(format!("part {} does not match its sha256", p.name));
        }
        parts.push(Part {
            name: p.name.clone(),
            bytes: part.to_vec(),
        });
        at = end;
    }
    if at != bytes.len() {
        return Err(format!("{} bytes after its last part", bytes.len() - at));
    }
    Ok(Backup {
        cluster: h.cluster,
        datastore,
        token: Secret::new(h.token),
        server: h.server,
        taken: h.taken,
        parts,
    })
}

/// `<file>.sha256`.
fn sum_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Writes the backup (0600) and its checksum beside it into `dir`, as
/// `<cluster>-<taken>.snapshot`; the file's path.
pub fn write(dir: &Path, b: &Backup, w: &Writer) -> Result<PathBuf, BackupFileError> {
    state::ensure_dir(dir, w)?;
    let path = dir.join(format!("{}-{}.snapshot", b.cluster, b.taken));
    let bytes = encode(b);
    state::write_private(&path, &bytes, w)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let line = format!("{}  {}\n", sha256_hex(&bytes), name.unwrap_or_default());
    state::write_private(&sum_path(&path), line.as_bytes(), w)?;
    Ok(path)
}

/// Reads and verifies a backup: its checksum file, then its header and parts.
pub fn read(file: &Path) -> Result<Backup, BackupFileError> {
    let sum = sum_path(file);
    let want = match std::fs::read_to_string(&sum) {
        Ok(s) => s.split_whitespace().next().unwrap_or_default().to_string(),
        Err(_) => {
            return Err(BackupFileError::NoChecksum {
                file: file.into(),
                sum,
            });
        }
    };
    let bytes = std::fs::read(file).map_err(|e| BackupFileError::Read(file.into(), e))?;
    let got = sha256_hex(&bytes);
    if got != want {
        return Err(BackupFileError::ChecksumMismatch {
            file: file.into(),
            sum,
            got,
            want,
        });
    }
    decode(&bytes).map_err(|why| BackupFileError::Damaged {
        file: file.into(),
        why,
    })
}

/// Now, as a backup's time: `20261207T190000Z`.
pub fn now_utc() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_else(|_| "unknown-time".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup() -> Backup {
        Backup {
            cluster: "lab".into(),
            datastore: Datastore::Sqlite,
            token: Secret::new("K10abc::server:s3cret"),
            server: "node1".into(),
            taken: "20261207T190000Z".into(),
            parts: vec![
                Part {
                    name: "state.db".into(),
                    bytes: b"tables".to_vec(),
                },
                Part {
                    name: "state.db-wal".into(),
                    bytes: b"log".to_vec(),
                },
            ],
        }
    }

    #[test]
    fn a_backup_reads_back_as_written_and_its_checksum_is_sha256sums() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = write(dir.path(), &backup(), &Writer::for_apply()).expect("write");
        assert!(path.ends_with("lab-20261207T190000Z.snapshot"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let check = std::process::Command::new("sha256sum")
            .arg("-c")
            .arg(sum_path(&path))
            .current_dir(dir.path())
            .output()
            .expect("sha256sum");
        assert!(check.status.success(), "{check:?}");
        let back = read(&path).expect("read");
        assert_eq!(back.parts, backup().parts);
        assert_eq!(back.token.expose(), "K10abc::server:s3cret");
        assert_eq!(
            (back.server.as_str(), back.datastore),
            ("node1", Datastore::Sqlite)
        );
    }

    #[test]
    fn a_changed_truncated_or_foreign_file_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let w = Writer::for_apply();
        let path = write(dir.path(), &backup(), &w).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        // Changed after it was written: the checksum says so.
        std::fs::write(&path, [&bytes[..], b"x"].concat()).expect("w");
        let e = read(&path).expect_err("changed").to_string();
        assert!(e.contains("not the") && e.contains(".sha256"), "{e}");
        // Truncated with a matching checksum (copied half-way, checksummed after).
        let cut = &bytes[..bytes.len() - 2];
        std::fs::write(&path, cut).expect("w");
        let line = format!("{}  x\n", sha256_hex(cut));
        std::fs::write(sum_path(&path), line).expect("w");
        let e = read(&path).expect_err("truncated").to_string();
        assert!(e.contains("cut short"), "{e}");
        // Not a backup at all.
        std::fs::write(&path, b"hello\n").expect("w");
        std::fs::write(sum_path(&path), format!("{}  x\n", sha256_hex(b"hello\n"))).expect("w");
        let e = read(&path).expect_err("foreign").to_string();
        assert!(e.contains("is not a pictl backup"), "{e}");
        // No checksum beside it.
        std::fs::remove_file(sum_path(&path)).expect("rm");
        let e = read(&path).expect_err("unverifiable").to_string();
        assert!(e.contains("no checksum file"), "{e}");
        assert!(!e.contains("s3cret"));
    }
}
