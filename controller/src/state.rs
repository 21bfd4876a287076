//! The controller's per-cluster state directory: the generated cluster
//! secret, the apply lock and the fetched kubeconfig. Every file holding a
//! secret is created 0600 and never logged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::inventory::{Inventory, SecretSource};
use crate::secret::Secret;
use crate::write::Writer;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use the state directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {1} variable {0} is not set")]
    TokenEnvMissing(String, &'static str),
    #[error("{0} is readable by other users; chmod 600 it")]
    SecretFileOpen(PathBuf),
    #[error("{0} is empty")]
    SecretFileEmpty(PathBuf),
    #[error("a {0} cannot be generated")]
    NotGenerated(&'static str),
    #[error(
        "another pictl apply holds the lock for cluster {cluster} ({path}{holder}); wait for it to finish"
    )]
    Locked {
        cluster: String,
        path: PathBuf,
        holder: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the directory 0700 when it does not exist (an existing one,
/// perhaps shared, keeps its mode).
pub fn ensure_dir(dir: &Path, _w: &Writer) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Writes a file atomically with mode 0600: a fresh temp file (O_EXCL,
/// random name) in the same directory, fsynced, renamed over the target.
/// A symlinked target (a kubeconfig kept in dotfiles) is written through.
pub fn write_private(path: &Path, bytes: &[u8], _w: &Writer) -> Result<(), StateError> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".pictl-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(tmp.path()))?;
    tmp.persist(&path).map_err(|e| StateError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(())
}

/// The cluster secret as configured: from the environment, a 0600 file,
/// or the one generated earlier into the state directory (`None`: none
/// generated yet). Reads only.
pub fn configured_secret(inv: &Inventory) -> Result<Option<Secret>, StateError> {
    configured(inv, &inv.cluster.token, "token", "cluster token")
}

/// The agents' secret from `[cluster] agent_token`'s env or file; `None`
/// when it is to be generated (or was recorded: see [`recorded`]).
pub fn configured_agent_secret(inv: &Inventory) -> Result<Option<Secret>, StateError> {
    match &inv.cluster.agent_token {
        SecretSource::Generated => Ok(None),
        source => configured(inv, source, "agent-token", "agent token"),
    }
}

fn configured(
    inv: &Inventory,
    source: &SecretSource,
    name: &str,
    what: &'static str,
) -> Result<Option<Secret>, StateError> {
    match source {
        SecretSource::Generated => recorded(inv, name),
        given => read_source(given, what).map(Some),
    }
}

/// A secret from its variable or its 0600 file (a generated one is the
/// state directory's: see [`recorded`]).
pub fn read_source(source: &SecretSource, what: &'static str) -> Result<Secret, StateError> {
    match source {
        SecretSource::Env(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()))
            .ok_or_else(|| StateError::TokenEnvMissing(var.clone(), what)),
        SecretSource::File(path) => read_secret_file(path),
        SecretSource::Generated => Err(StateError::NotGenerated(what)),
    }
}

/// The state directory's `name` (0600), if it is there. Reads only.
pub fn recorded(inv: &Inventory, name: &str) -> Result<Option<Secret>, StateError> {
    let path = inv.cluster.state_dir.join(name);
    if path.exists() {
        read_secret_file(&path).map(Some)
    } else {
        Ok(None)
    }
}

/// Records `secret` in the state directory's `name` (0600), as the
/// generated and adopted secrets are kept.
pub fn record_secret(
    inv: &Inventory,
    name: &str,
    secret: &Secret,
    w: &Writer,
) -> Result<(), StateError> {
    ensure_dir(&inv.cluster.state_dir, w)?;
    let path = inv.cluster.state_dir.join(name);
    write_private(&path, format!("{}\n", secret.expose()).as_bytes(), w)
}

/// The secret in the state directory's `name`, made there (0600) when absent.
pub fn generated(inv: &Inventory, name: &str, w: &Writer) -> Result<Secret, StateError> {
    if let Some(s) = recorded(inv, name)? {
        return Ok(s);
    }
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let secret = Secret::new(hex::encode(bytes));
    record_secret(inv, name, &secret, w)?;
    Ok(secret)
}

pub fn read_secret_file(path: &Path) -> Result<Secret, StateError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(StateError::SecretFileOpen(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(StateError::SecretFileEmpty(path.to_path_buf()));
    }
    Ok(Secret::new(text))
}

/// Held for the duration of an apply; released when dropped (or when the
/// process dies: it is an OS file lock, so a crash never leaves it stale).
#[derive(Debug)]
pub struct ApplyLock {
    _file: File,
}

pub fn lock_cluster(inv: &Inventory, w: &Writer) -> Result<ApplyLock, StateError> {
    ensure_dir(&inv.cluster.state_dir, w)?;
    let path = inv.cluster.state_dir.join("apply.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io(&path))?;
            writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
            Ok(ApplyLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .map(|p| format!(", pid {p}"))
                .unwrap_or_default();
            Err(StateError::Locked {
                cluster: inv.cluster.name.clone(),
                path,
                holder,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StateError::Io { path, source: e }),
    }
}

pub fn kubeconfig_path(inv: &Inventory) -> PathBuf {
    inv.cluster.state_dir.join("kubeconfig")
}
