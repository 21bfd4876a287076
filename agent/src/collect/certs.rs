//! The earliest end of the node's K3s leaf certificates. K3s signs them for
//! a year and renews them only when it starts within its renewal window
//! ([`RENEW_DAYS`]), so a node nobody restarts loses its client and serving
//! certificates on their first birthday. Reads every `*.crt` in K3s's
//! certificate directories under the default data dir (a server's
//! `server/tls/` and `server/tls/etcd/`, any node's `agent/`), the first
//! certificate of each file (the leaf; the CA bundle follows it), skipping
//! the CAs (`*-ca.crt`, `*-ca.nochain.crt`: ten years, renewed by nobody on
//! a restart). No date crate: the few DER fields needed are walked here.
//!
//! Those directories are root's: the agent's unprivileged daemon reads
//! instead the note [`SNAPSHOT`] that `pictl-agent certificates --write`
//! leaves, which K3s's unit runs after every start (pictl's drop-in
//! `ExecStartPost=`), so the note follows every renewal, whoever restarted
//! K3s. Run as root (`pictl-agent report` over SSH), the files are read.

use rustls_ring::pki_types::CertificateDer;
use rustls_ring::pki_types::pem::PemObject;

use super::{Sources, parse_failed};
use crate::Result;
use crate::report::CertificateExpiry;

/// K3s's `CertificateRenewDays` (pkg/daemons/config/types.go): 120 since
/// the May 2025 releases (v1.32.5+k3s1, v1.33.1+k3s1), 90 before. A start
/// renews a certificate whose days left are at most this.
pub const RENEW_DAYS: i64 = 120;

/// K3s's directories of leaf certificates, under its default data dir.
pub const DIRS: [&str; 3] = [
    "/var/lib/rancher/k3s/server/tls",
    "/var/lib/rancher/k3s/server/tls/etcd",
    "/var/lib/rancher/k3s/agent",
];

/// Where `pictl-agent certificates --write` leaves its note by default.
pub const SNAPSHOT: &str = "/run/pictl-agent/k3s-certificates.json";

/// The leaf that ends first, with its days left at `now`: from the
/// certificate files when they are readable, else from the note at
/// [`SNAPSHOT`]; `None` when there is neither (K3s not installed yet).
pub fn collect(src: &Sources, now: u64) -> Result<Option<CertificateExpiry>> {
    if let Some(found) = scan(src, now)? {
        return Ok(Some(found));
    }
    let Some((path, text)) = src.read_optional(SNAPSHOT)? else {
        return Ok(None);
    };
    let mut note: CertificateExpiry =
        serde_json::from_str(&text).map_err(|_| parse_failed(&path, "a certificate note"))?;
    note.days_left = days_left(note.not_after, now);
    Ok(Some(note))
}

/// Writes the note of [`collect`]'s answer to `path` (0644, replaced
/// atomically; its directory made 0755): only a file name and a date.
pub fn write_note(src: &Sources, now: u64, path: &std::path::Path) -> Result<()> {
    let failed = |source| crate::Error::WriteFailed {
        path: path.to_path_buf(),
        source,
    };
    let found = scan(src, now)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let Some(found) = found else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
            _ => Ok(()),
        };
    };
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(&found).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(failed)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

/// The leaf that ends first in the certificate directories; `None` when
/// there is none, or when some directory or certificate is not readable
/// (the daemon's user: a partial answer could miss the first to end).
fn scan(src: &Sources, now: u64) -> Result<Option<CertificateExpiry>> {
    let mut earliest: Option<CertificateExpiry> = None;
    for dir in DIRS {
        let entries = match std::fs::read_dir(src.path(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return Ok(None),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".crt") && !n.contains("-ca."))
            .collect();
        names.sort();
        for name in names {
            let rel = format!("{dir}/{name}");
            let (path, text) = match src.read(&rel) {
                Ok(found) => found,
                Err(crate::Error::ReadFailed { source, .. })
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let der = CertificateDer::from_pem_slice(text.as_bytes())
                .map_err(|_| parse_failed(&path, "a PEM certificate"))?;
            let not_after =
                not_after(&der).ok_or_else(|| parse_failed(&path, "an X.509 notAfter"))?;
            if earliest.as_ref().is_none_or(|e| not_after < e.not_after) {
                earliest = Some(CertificateExpiry {
                    file: rel,
                    not_after,
                    days_left: days_left(not_after, now),
                });
            }
        }
    }
    Ok(earliest)
}

/// Whole days from `now` to `not_after`, rounded down (negative once expired).
pub fn days_left(not_after: i64, now: u64) -> i64 {
    (not_after - now as i64).div_euclid(86_400)
}

/// Whether K3s would renew a certificate ending at `not_after` if it started
/// at `now` (dynamiclistener's `IsCertExpired`: days left `<=` the window).
pub fn in_renewal_window(not_after: i64, now: u64) -> bool {
    not_after - now as i64 <= RENEW_DAYS * 86_400
}

/// One DER element: (tag, contents, what follows).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = d.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The certificate's notAfter, unix seconds: Certificate → tbsCertificate →
/// (version) serial, signature, issuer, validity → notAfter.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let (tag, _, after_version) = tlv(tbs)?;
    // Without an explicit version (v1) the serial comes first.
    let mut rest = if tag == 0xa0 { after_version } else { tbs };
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, after) = tlv(validity)?;
    let (tag, time, _) = tlv(after)?;
    parse_time(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 has CAs write them.
fn parse_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let days = days_from_civil(year, n(0)?, n(2)?);
    Some(days * 86_400 + n(4)? * 3600 + n(6)? * 60 + n(8)?)
}

/// Howard Hinnant's `days_from_civil`: (y, m, d) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
