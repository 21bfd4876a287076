//! The known_hosts files: which host keys and host-certificate authorities
//! pictl trusts.
//!
//! Implements the part of OpenSSH's format pictl needs, keeping file and
//! line so a changed key can be reported as `file:line`: host patterns (see
//! [`pattern`]), `@revoked` lines (a key, or a CA, never accepted),
//! `@cert-authority` lines (a CA whose host certificates are accepted for
//! the hosts the line names, see [`KnownHosts::check_certificate`]),
//! comments. Like OpenSSH, several files are read (the user's, then the
//! system's `/etc/ssh/ssh_known_hosts`) and a key found in any of them
//! counts; learning a key (`accept-new`) appends one line to the user's file
//! only, under an exclusive file lock. The edge: the policy decision is made
//! by the SSH handler in [`super::ssh`].

mod pattern;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};

/// Host-key checking policy: the inventory's setting, taken as it is.
pub use crate::inventory::HostKeyPolicy;

/// Where OpenSSH keeps the machine-wide known hosts.
pub const SYSTEM_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

/// What the files say about one offered key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// No line names this host.
    Unknown,
    /// Lines name this host but none carries the offered key; `line` is the
    /// first of them (1-based) in `path`.
    Changed {
        path: PathBuf,
        line: usize,
    },
    /// The key is listed under `@revoked`.
    Revoked {
        path: PathBuf,
        line: usize,
    },
}

/// What the files say about one offered host certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertVerdict {
    /// Signed by a CA trusted for this host, and valid for it now.
    Trusted,
    /// The certificate's key or its CA is listed under `@revoked`.
    Revoked {
        path: PathBuf,
        line: usize,
        fingerprint: String,
    },
    /// Not trusted as a certificate (why, for the log); OpenSSH then checks
    /// the key inside it as a plain key, and so does pictl.
    Untrusted(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Clone, Debug)]
struct Entry {
    /// Index into [`KnownHosts::files`].
    file: usize,
    line: usize,
    marker: Marker,
    patterns: String,
    /// `None` when the key field does not parse (or is an algorithm this
    /// build does not know): such a line still counts as "this host has a
    /// key", so it can only make a host look changed, never known.
    key: Option<PublicKey>,
}

/// Parsed known_hosts files, in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    files: Vec<PathBuf>,
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
        let mut known = Self::default();
        known.add_file(path)?;
        Ok(known)
    }

    /// Add the lines of `path` after those already read; a missing file
    /// adds nothing.
    pub fn add_file(&mut self, path: &Path) -> io::Result<()> {
        match fs::read_to_string(path) {
            Ok(text) => {
                self.add_text(path, &text);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One file's text, without a path (tests, and the re-read under lock).
    pub fn parse(text: &str) -> Self {
        let mut known = Self::default();
        known.add_text(Path::new(""), text);
        known
    }

    fn add_text(&mut self, path: &Path, text: &str) {
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        self.entries.extend(
            text.lines()
                .enumerate()
                .filter_map(|(i, line)| parse_line(file, i + 1, line)),
        );
    }

    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| pattern::matches(&e.patterns, name))
    }

    fn path_of(&self, entry: &Entry) -> PathBuf {
        self.files[entry.file].clone()
    }

    /// OpenSSH's decision for `key` offered by the host recorded as `name`.
    pub fn check(&self, name: &str, key: &PublicKey) -> Verdict {
        if let Some(entry) = self.revoked_entry(name, key) {
            return Verdict::Revoked {
                path: self.path_of(entry),
                line: entry.line,
            };
        }
        let mut first_other = None;
        for entry in self.matching(name).filter(|e| e.marker == Marker::None) {
            if same_key(entry, key) {
                return Verdict::Known;
            }
            first_other.get_or_insert(entry);
        }
        match first_other {
            Some(entry) => Verdict::Changed {
                path: self.path_of(entry),
                line: entry.line,
            },
            None => Verdict::Unknown,
        }
    }

    fn revoked_entry<'a>(&'a self, name: &'a str, key: &PublicKey) -> Option<&'a Entry> {
        self.matching(name)
            .find(|e| e.marker == Marker::Revoked && same_key(e, key))
    }

    /// Whether any `@cert-authority` line names this host (only then does
    /// pictl ask the server for a certificate).
    pub fn has_authority_for(&self, name: &str) -> bool {
        self.matching(name)
            .any(|e| e.marker == Marker::CertAuthority && e.key.is_some())
    }

    /// OpenSSH's decision for a host certificate offered by the host
    /// recorded as `name` and reached as `principal` (the address, without
    /// port), at `now` (Unix seconds).
    pub fn check_certificate(
        &self,
        name: &str,
        principal: &str,
        cert: &Certificate,
        now: u64,
    ) -> CertVerdict {
        let inner = PublicKey::new(cert.public_key().clone(), "");
        let ca = PublicKey::new(cert.signature_key().clone(), "");
        for key in [&inner, &ca] {
            if let Some(entry) = self.revoked_entry(name, key) {
                return CertVerdict::Revoked {
                    path: self.path_of(entry),
                    line: entry.line,
                    fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                };
            }
        }
        let trusted = self
            .matching(name)
            .any(|e| e.marker == Marker::CertAuthority && same_key(e, &ca));
        let ca_fingerprint = ca.fingerprint(HashAlg::Sha256);
        let reason = if !trusted {
            format!("no @cert-authority line for {name} lists its CA {ca_fingerprint}")
        } else if cert.cert_type() != CertType::Host {
            "it is a user certificate, not a host certificate".to_owned()
        } else if cert.validate_at(now, [&ca_fingerprint]).is_err() {
            "its signature is invalid or it is outside its validity period".to_owned()
        } else if !cert.valid_principals().is_empty()
            && !cert
                .valid_principals()
                .iter()
                .any(|p| p.eq_ignore_ascii_case(principal))
        {
            format!("it is not valid for {principal}")
        } else if !cert.critical_options().is_empty() {
            "it carries critical options, which no host certificate defines".to_owned()
        } else {
            return CertVerdict::Trusted;
        };
        CertVerdict::Untrusted(reason)
    }

    /// Key algorithms recorded for `name`, so the client can ask the server
    /// for a key it can verify (like OpenSSH orders `HostKeyAlgorithms`).
    pub fn algorithms_for(&self, name: &str) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = Vec::new();
        for entry in self.matching(name).filter(|e| e.marker == Marker::None) {
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

fn same_key(entry: &Entry, key: &PublicKey) -> bool {
    entry
        .key
        .as_ref()
        .is_some_and(|k| k.key_data() == key.key_data())
}

fn parse_line(file: usize, number: usize, line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut marker = Marker::None;
    if first.starts_with('@') {
        marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            // An unknown marker: OpenSSH skips the line.
            _ => return None,
        };
        first = fields.next()?;
    }
    let key_type = fields.next()?;
    let key_b64 = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}")).ok();
    Some(Entry {
        file,
        line: number,
        marker,
        patterns: first.to_owned(),
        key,
    })
}

/// Record `key` for `name` in `path` unless the file (re-read under an
/// exclusive lock, so parallel connections do not duplicate or race) already
/// decides about it. Returns the verdict found under the lock: `Unknown`
/// means the key was appended. A missing parent directory (`~/.ssh`) is
/// created 0700, as OpenSSH would.
pub fn learn(path: &Path, name: &str, key: &PublicKey) -> io::Result<Verdict> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    file.lock()?;
    let result = learn_locked(&mut file, path, name, key);
    // Unlocked on close too; explicit so a failure above releases it now.
    let _ = file.unlock();
    result
}

fn learn_locked(file: &mut File, path: &Path, name: &str, key: &PublicKey) -> io::Result<Verdict> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    let mut known = KnownHosts::default();
    known.add_text(path, &text);
    let verdict = known.check(name, key);
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
    let written = if pattern::uses_hashing(&text) {
        pattern::hash_name(name)
    } else {
        name.to_string()
    };
    line.push_str(&format!("{written} {alg} {b64}\n"));
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

    fn changed(line: usize) -> Verdict {
        Verdict::Changed {
            path: PathBuf::new(),
            line,
        }
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
        assert_eq!(kh.check("10.77.0.11", &key(KEY_B)), changed(4));
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
        assert_eq!(
            kh.check("h", &key(KEY_A)),
            Verdict::Revoked {
                path: PathBuf::new(),
                line: 2
            }
        );
    }

    #[test]
    fn garbage_key_for_host_counts_as_changed_not_known() {
        let kh = KnownHosts::parse("h ssh-ed25519 AAAAnotakey\n");
        assert_eq!(kh.check("h", &key(KEY_A)), changed(1));
    }

    #[test]
    fn cert_authority_lines_are_not_plain_keys() {
        let kh = KnownHosts::parse(&format!("@cert-authority *.lan {KEY_B}\n"));
        assert_eq!(kh.check("h.lan", &key(KEY_A)), Verdict::Unknown);
        assert_eq!(kh.check("h.lan", &key(KEY_B)), Verdict::Unknown);
        assert!(kh.algorithms_for("h.lan").is_empty());
        assert!(kh.has_authority_for("h.lan"));
        assert!(!kh.has_authority_for("h.example"));
    }

    #[test]
    fn a_key_in_the_system_file_counts_and_locations_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("known_hosts");
        let system = dir.path().join("ssh_known_hosts");
        fs::write(&user, format!("other {KEY_A}\n")).unwrap();
        fs::write(&system, format!("# fleet\nnode1 {KEY_A}\nnode2 {KEY_B}\n")).unwrap();
        let mut kh = KnownHosts::load(&user).unwrap();
        kh.add_file(&system).unwrap();
        kh.add_file(&dir.path().join("missing")).unwrap();
        assert_eq!(kh.check("node1", &key(KEY_A)), Verdict::Known);
        assert_eq!(
            kh.check("node2", &key(KEY_A)),
            Verdict::Changed {
                path: system.clone(),
                line: 3
            }
        );
        assert_eq!(
            kh.check("other", &key(KEY_B)),
            Verdict::Changed {
                path: user.clone(),
                line: 1
            }
        );
    }

    #[test]
    fn learn_creates_a_missing_parent_0700_and_leaves_an_existing_one_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ssh_dir = dir.path().join("home/.ssh");
        learn(&ssh_dir.join("known_hosts"), "h", &key(KEY_A)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ssh_dir), 0o700);
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        learn(&shared.join("known_hosts"), "h", &key(KEY_A)).unwrap();
        assert_eq!(mode(&shared), 0o755);
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
            Verdict::Changed {
                path: path.clone(),
                line: 2
            }
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
        // A missing ssh-keygen is a failure, never a skip (openssh-client is
        // installed by tests/lab/install-deps.sh).
        let out = status.expect("ssh-keygen (openssh-client)");
        assert!(out.status.success(), "{out:?}");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("|1|"), "{text}");
        let kh = KnownHosts::parse(&text);
        assert_eq!(kh.check("node1", &key(KEY_A)), Verdict::Known);
        assert_eq!(kh.check("node1", &key(KEY_B)), changed(1));
        assert_eq!(kh.check("[10.0.0.5]:2222", &key(KEY_B)), Verdict::Known);
        assert_eq!(kh.check("node2", &key(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn a_key_learned_into_a_hashed_file_is_hashed_and_openssh_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, format!("node1 {KEY_A}\n")).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen (openssh-client)");
        assert!(out.status.success(), "{out:?}");
        let name = "[10.0.0.7]:2222";
        assert_eq!(learn(&path, name, &key(KEY_B)).unwrap(), Verdict::Unknown);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("10.0.0.7"),
            "the name is written in clear: {text}"
        );
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("|1|"), "{text}");
        assert_eq!(learn(&path, name, &key(KEY_B)).unwrap(), Verdict::Known);
        // OpenSSH's own lookup finds the hashed entry (-F hashes the name).
        let found = std::process::Command::new("ssh-keygen")
            .arg("-F")
            .arg(name)
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen -F");
        let found = String::from_utf8_lossy(&found.stdout);
        assert!(
            found.contains(KEY_B.split_whitespace().nth(1).unwrap()),
            "{found}"
        );
        // A plain file stays plain.
        let plain = dir.path().join("plain");
        fs::write(&plain, format!("node1 {KEY_A}\n")).unwrap();
        learn(&plain, name, &key(KEY_B)).unwrap();
        assert!(fs::read_to_string(&plain).unwrap().contains(name));
    }
}
