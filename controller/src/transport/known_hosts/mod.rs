//! The known_hosts file: which host keys pictl trusts.
//!
//! Implements the part of OpenSSH's format pictl needs, keeping line numbers
//! so a changed key can be reported as `file:line`: host patterns (see
//! [`pattern`]), `@revoked` lines, comments; `@cert-authority` lines are
//! skipped (pictl does not accept host certificates). Learning a key
//! (`accept-new`) appends one line under an exclusive file lock. The edge:
//! the policy decision is made by the SSH handler in [`super::ssh`].

mod pattern;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use russh::keys::{Algorithm, PublicKey};

/// Host-key checking policy: the inventory's setting, taken as it is.
pub use crate::inventory::HostKeyPolicy;

/// What the file says about one offered key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// No line names this host.
    Unknown,
    /// Lines name this host but none carries the offered key; `line` is the
    /// first of them (1-based).
    Changed {
        line: usize,
    },
    /// The key is listed under `@revoked`.
    Revoked {
        line: usize,
    },
}

#[derive(Clone, Debug)]
struct Entry {
    line: usize,
    revoked: bool,
    patterns: String,
    /// `None` when the key field does not parse (or is an algorithm this
    /// build does not know): such a line still counts as "this host has a
    /// key", so it can only make a host look changed, never known.
    key: Option<PublicKey>,
}

/// A parsed known_hosts file.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

/// The name a host is recorded under: lower-case, `[host]:port` off port 22.
pub fn lookup_name(address: &str, port: u16) -> String {
    let host = address.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Read `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> io::Result<Self> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| parse_line(i + 1, line))
            .collect();
        Self { entries }
    }

    /// OpenSSH's decision for `key` offered by the host recorded as `name`.
    pub fn check(&self, name: &str, key: &PublicKey) -> Verdict {
        let mut first_other = None;
        let mut known = false;
        for entry in self
            .entries
            .iter()
            .filter(|e| pattern::matches(&e.patterns, name))
        {
            let same = entry
                .key
                .as_ref()
                .is_some_and(|k| k.key_data() == key.key_data());
            if entry.revoked {
                if same {
                    return Verdict::Revoked { line: entry.line };
                }
            } else if same {
                known = true;
            } else {
                first_other.get_or_insert(entry.line);
            }
        }
        match (known, first_other) {
            (true, _) => Verdict::Known,
            (false, Some(line)) => Verdict::Changed { line },
            (false, None) => Verdict::Unknown,
        }
    }

    /// Key algorithms recorded for `name`, so the client can ask the server
    /// for a key it can verify (like OpenSSH orders `HostKeyAlgorithms`).
    pub fn algorithms_for(&self, name: &str) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = Vec::new();
        for entry in &self.entries {
            if entry.revoked || !pattern::matches(&entry.patterns, name) {
                continue;
            }
            if let Some(key) = &entry.key {
                let alg = key.algorithm();
                if !algs.contains(&alg) {
                    algs.push(alg);
                }
            }
        }
        algs
    }
}

fn parse_line(number: usize, line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if first.starts_with('@') {
        match first {
            "@revoked" => revoked = true,
            // Host certificates are not accepted, so their CA lines are moot.
            _ => return None,
        }
        first = fields.next()?;
    }
    let key_type = fields.next()?;
    let key_b64 = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}")).ok();
    Some(Entry {
        line: number,
        revoked,
        patterns: first.to_owned(),
        key,
    })
}

/// Record `key` for `name` in `path` unless the file (re-read under an
/// exclusive lock, so parallel connections do not duplicate or race) already
/// decides about it. Returns the verdict found under the lock: `Unknown`
/// means the key was appended.
pub fn learn(path: &Path, name: &str, key: &PublicKey) -> io::Result<Verdict> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    file.lock()?;
    let result = learn_locked(&mut file, name, key);
    // Unlocked on close too; explicit so a failure above releases it now.
    let _ = file.unlock();
    result
}

fn learn_locked(file: &mut File, name: &str, key: &PublicKey) -> io::Result<Verdict> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    let verdict = KnownHosts::parse(&text).check(name, key);
    if verdict != Verdict::Unknown {
        return Ok(verdict);
    }
    let key_line = key
        .to_openssh()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // to_openssh() includes the key's comment, which a server key does not
    // have; keep just "type base64".
    let mut parts = key_line.split_whitespace();
    let (Some(alg), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "empty key encoding",
        ));
    };
    let mut line = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        line.push('\n');
    }
    line.push_str(&format!("{name} {alg} {b64}\n"));
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    Ok(Verdict::Unknown)
}

/// Where a verdict came from, for error messages.
pub fn display_path(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINg1ZbUyRs55r1fGq7TE3IP9YGMnE2lkQwoj39dWM94Z";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmFC5/qhmD6bWBrx3+EPj4bxlsbNHTD1aGKIqiSooNc";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn lookup_name_brackets_non_default_ports() {
        assert_eq!(lookup_name("Node1", 22), "node1");
        assert_eq!(lookup_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }

    #[test]
    fn recorded_key_is_known_other_key_is_changed_with_line() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n\n10.77.0.12 {KEY_B}\n10.77.0.11,node1 {KEY_A} root@node1\n"
        ));
        assert_eq!(kh.check("10.77.0.11", &key(KEY_A)), Verdict::Known);
        assert_eq!(kh.check("node1", &key(KEY_A)), Verdict::Known);
        assert_eq!(
            kh.check("10.77.0.11", &key(KEY_B)),
            Verdict::Changed { line: 4 }
        );
        assert_eq!(kh.check("10.77.0.13", &key(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn any_matching_line_with_the_key_makes_it_known() {
        let kh = KnownHosts::parse(&format!("h {KEY_B}\nh {KEY_A}\n"));
        assert_eq!(kh.check("h", &key(KEY_A)), Verdict::Known);
    }

    #[test]
    fn revoked_key_is_refused_even_if_also_listed() {
        let kh = KnownHosts::parse(&format!("h {KEY_A}\n@revoked * {KEY_A}\n"));
        assert_eq!(kh.check("h", &key(KEY_A)), Verdict::Revoked { line: 2 });
    }

    #[test]
    fn garbage_key_for_host_counts_as_changed_not_known() {
        let kh = KnownHosts::parse("h ssh-ed25519 AAAAnotakey\n");
        assert_eq!(kh.check("h", &key(KEY_A)), Verdict::Changed { line: 1 });
    }

    #[test]
    fn cert_authority_lines_are_ignored() {
        let kh = KnownHosts::parse(&format!("@cert-authority * {KEY_B}\n"));
        assert_eq!(kh.check("h", &key(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn learn_appends_once_and_keeps_existing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("other {KEY_B}")).unwrap();
        assert_eq!(
            learn(&path, "[h]:2222", &key(KEY_A)).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            learn(&path, "[h]:2222", &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            learn(&path, "[h]:2222", &key(KEY_B)).unwrap(),
            Verdict::Changed { line: 2 }
        );
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("other {KEY_B}\n[h]:2222 {KEY_A}\n"));
    }

    #[test]
    fn hashed_names_written_by_ssh_keygen_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, format!("node1 {KEY_A}\n[10.0.0.5]:2222 {KEY_B}\n")).unwrap();
        let status = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&path)
            .output();
        let Ok(out) = status else {
            eprintln!("SKIPPED: ssh-keygen not available");
            return;
        };
        assert!(out.status.success(), "{out:?}");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("|1|"), "{text}");
        let kh = KnownHosts::parse(&text);
        assert_eq!(kh.check("node1", &key(KEY_A)), Verdict::Known);
        assert_eq!(kh.check("node1", &key(KEY_B)), Verdict::Changed { line: 1 });
        assert_eq!(kh.check("[10.0.0.5]:2222", &key(KEY_B)), Verdict::Known);
        assert_eq!(kh.check("node2", &key(KEY_A)), Verdict::Unknown);
    }
}
