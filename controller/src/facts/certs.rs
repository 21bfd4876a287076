//! When a node's K3s leaf certificates end. K3s signs its leaf
//! certificates for a year and renews one only when K3s starts within its
//! renewal window ([`RENEW_DAYS`]): a Pi nobody restarts loses its client
//! and serving certificates on their first birthday (k3s-io/k3s#10865).
//!
//! The facts script reads, under the data dir, the certificates that stand
//! for each renewal: a server's admin client and API serving certificates
//! (pkg/daemons/control/deps/deps.go: every server leaf, etcd's included,
//! is renewed at the same start) and any node's kubelet client and serving
//! certificates (pkg/server/handlers/handlers.go: signed at every agent
//! start). Only the first PEM block of each file leaves the node (the leaf;
//! public, as any TLS peer sees it), never a key. Four files of about a
//! dozen lines, read with shell builtins: about 0.7 ms a run on an x86 core
//! (dash), a few ms on a Pi.

use base64::Engine;
use serde::Serialize;

/// pkg/daemons/config/types.go `CertificateRenewDays`: 120 since the May
/// 2025 releases (v1.32.5+k3s1, v1.33.1+k3s1; k3s-io/k3s#12232), 90
/// before. A start renews a leaf whose days left are at most this
/// (dynamiclistener cert/cert.go `IsCertExpired`).
pub const RENEW_DAYS: i64 = 120;

/// The files read, relative to the data dir.
pub const FILES: [&str; 4] = [
    "server/tls/client-admin.crt",
    "server/tls/serving-kube-apiserver.crt",
    "agent/client-kubelet.crt",
    "agent/serving-kubelet.crt",
];

/// The script fragment: one `cert=PATH BASE64` record per file in
/// [`FILES`] under `$dd` that is readable, the base64 of its first PEM
/// block; it needs `e` (the record printer). Builtins only.
macro_rules! cert_records {
    () => {
        r#"for f in server/tls/client-admin.crt server/tls/serving-kube-apiserver.crt agent/client-kubelet.crt agent/serving-kubelet.crt; do
  f=$dd/$f
  [ -r "$f" ] || continue
  _b=""; _in=""
  while IFS= read -r _l || [ -n "$_l" ]; do
    case $_l in
    *'-BEGIN CERTIFICATE-'*) _in=1 ;;
    *'-END CERTIFICATE-'*) break ;;
    *) [ -z "$_in" ] || _b=$_b$_l ;;
    esac
  done <"$f"
  e cert "$f $_b"
done
"#
    };
}
pub(crate) use cert_records;

/// One leaf certificate's end, as the node has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertEnd {
    /// The file on the node.
    pub file: String,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

impl CertEnd {
    /// A `cert` record's value (`PATH BASE64`); `None` when it is not a
    /// certificate (a node's bytes are not trusted: anything else is dropped).
    pub fn parse(value: &str) -> Option<CertEnd> {
        let (file, b64) = value.split_once(' ')?;
        let b64: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        Some(CertEnd {
            file: file.to_string(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Whole days left at `now` (unix seconds), rounded down; negative once
    /// it ended.
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }

    /// Whether a K3s start at `now` renews it (within [`RENEW_DAYS`]).
    pub fn in_window(&self, now: i64) -> bool {
        self.not_after - now <= RENEW_DAYS * 86_400
    }

    /// `client-admin.crt ends 2027-01-10 (34 days left)`.
    pub fn describe(&self, now: i64) -> String {
        let name = self.file.rsplit('/').next().unwrap_or(&self.file);
        let date = time::OffsetDateTime::from_unix_timestamp(self.not_after)
            .map(|t| t.date().to_string())
            .unwrap_or_else(|_| self.not_after.to_string());
        let days = self.days_left(now);
        if days < 0 {
            format!("{name} ended {date} ({} days ago)", -days)
        } else {
            format!("{name} ends {date} ({days} days left)")
        }
    }
}

/// The `cert` records of a script's output (NUL-ended `key=value`).
pub fn parse_records(out: &str) -> Vec<CertEnd> {
    out.split('\0')
        .filter_map(|r| r.trim_start_matches('\n').strip_prefix("cert="))
        .filter_map(CertEnd::parse)
        .collect()
}

/// The leaf that ends first.
pub fn first_end(certs: &[CertEnd]) -> Option<&CertEnd> {
    certs.iter().min_by_key(|c| c.not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn record(path: &str, days: i64) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["node1".to_string()]).expect("params");
        p.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + days * 86_400).expect("t");
        let pem = p.self_signed(&key).expect("cert").pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        format!("{path} {body}")
    }

    #[test]
    fn a_record_gives_the_leaf_end_and_anything_else_is_dropped() {
        let c = CertEnd::parse(&record("/d/agent/client-kubelet.crt", 30)).expect("cert");
        assert_eq!(c.file, "/d/agent/client-kubelet.crt");
        assert_eq!(c.not_after, NOW + 30 * 86_400);
        assert_eq!(c.days_left(NOW), 30);
        assert!(c.in_window(NOW));
        assert!(c.describe(NOW).starts_with("client-kubelet.crt ends 2027-"));
        for bad in ["/d/x.crt", "/d/x.crt !!!", "/d/x.crt QUJD", ""] {
            assert_eq!(CertEnd::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_window_is_k3s_120_days_inclusive() {
        let at = |days: i64, secs: i64| CertEnd {
            file: "f".into(),
            not_after: NOW + days * 86_400 + secs,
        };
        assert!(at(120, 0).in_window(NOW));
        assert!(!at(120, 1).in_window(NOW));
        assert!(at(-3, 0).in_window(NOW));
        assert_eq!(at(0, -1).days_left(NOW), -1);
        assert!(at(-3, 0).describe(NOW).contains("3 days ago"));
        let certs = [at(300, 0), at(20, 0), at(90, 0)];
        assert_eq!(first_end(&certs), Some(&certs[1]));
    }

    #[test]
    fn the_script_reads_every_listed_file() {
        for f in FILES {
            assert!(cert_records!().contains(f), "{f}");
        }
    }
}
