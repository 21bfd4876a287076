//! What a server's facts add: its datastore and the key its API port serves.

/// The key pin of the first certificate in a base64 PEM (Go's JSON
/// encoding of a Secret's `tls.crt`); `None` when it is not one.
pub(super) fn serving_pin(b64: &str) -> Option<String> {
    use base64::Engine;
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let pem = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let leaf = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    pictl_agent::publish::pin::SpkiPin::of_certificate(&leaf).map(|p| p.to_string())
}

/// K3s's datastore on a server (pkg/cluster/managed.go `assignManagedDriver`:
/// an initialized etcd, `db/etcd/member/wal`, wins over `db/state.db`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datastore {
    /// kine over SQLite: a single server; K3s cannot add servers to it.
    Sqlite,
    /// Embedded etcd (`cluster-init`, or joined with `server:`).
    Etcd,
}

impl Datastore {
    /// The script's word for it (`etcd`, `sqlite`; else none on disk).
    pub(super) fn parse(word: &str) -> Option<Datastore> {
        match word {
            "etcd" => Some(Datastore::Etcd),
            "sqlite" => Some(Datastore::Sqlite),
            _ => None,
        }
    }
}
