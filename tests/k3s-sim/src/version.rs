//! The K3s version this binary reports. One build serves several "releases": the
//! mirror script appends a trailer naming the version to a copy of the binary, and
//! the binary reads its own trailer at startup, so upgrade tests see binaries that
//! really differ and each reports its own version.

use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

/// What an untrailered build reports (the version the playson cluster runs).
pub const DEFAULT_VERSION: &str = "v1.32.5+k3s1";
/// The trailer marker; mirror.sh appends `MARKER + version + "\n"`.
pub const MARKER: &[u8] = b"\n#K3S-SIM-VERSION=";

static VERSION: OnceLock<String> = OnceLock::new();

pub fn version() -> &'static str {
    VERSION.get_or_init(|| read_trailer().unwrap_or_else(|| DEFAULT_VERSION.to_string()))
}

/// The architecture mirror.sh stamped on this copy, if any.
pub const ARCH_MARKER: &[u8] = b"\n#K3S-SIM-ARCH=";

fn tail() -> Option<Vec<u8>> {
    let mut f = std::fs::File::open("/proc/self/exe").ok()?;
    let len = f.metadata().ok()?.len();
    let tail = len.min(256);
    f.seek(SeekFrom::Start(len - tail)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// A copy stamped for another architecture refuses to run, as a foreign ELF
/// would (`exec format error`), so a wrong-arch download is caught in the lab.
pub fn check_arch() -> Result<(), String> {
    let Some(buf) = tail() else { return Ok(()) };
    let Some(pos) = buf
        .windows(ARCH_MARKER.len())
        .rposition(|w| w == ARCH_MARKER)
    else {
        return Ok(());
    };
    let rest = String::from_utf8_lossy(&buf[pos + ARCH_MARKER.len()..]).to_string();
    let stamped = rest.lines().next().unwrap_or("").trim().to_string();
    let native = crate::nodes::arch();
    if stamped.is_empty() || stamped == native {
        Ok(())
    } else {
        Err(format!(
            "cannot execute binary file: Exec format error (k3s binary for {stamped}, machine is {native})"
        ))
    }
}

fn read_trailer() -> Option<String> {
    let buf = tail()?;
    let pos = buf.windows(MARKER.len()).rposition(|w| w == MARKER)?;
    let rest = std::str::from_utf8(&buf[pos + MARKER.len()..]).ok()?;
    let v = rest.trim_end_matches('\n').trim();
    if v.starts_with('v') && v.contains("+k3s") && !v.contains(char::is_whitespace) {
        Some(v.to_string())
    } else {
        None
    }
}

/// A stable short "commit" per version, like the hash K3s prints in parentheses.
pub fn commit() -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(version().as_bytes());
    hex::encode(&d[..4])
}

/// The Kubernetes part of the version (`v1.32.5` of `v1.32.5+k3s1`).
pub fn kube_version() -> &'static str {
    version().split('+').next().unwrap_or("v1.32.5")
}

pub fn go_version() -> &'static str {
    if kube_version().starts_with("v1.33") {
        "go1.24.2"
    } else {
        "go1.23.8"
    }
}

pub fn print_version() {
    println!("k3s version {} ({})", version(), commit());
    println!("go version {}", go_version());
}
