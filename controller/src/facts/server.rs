//! What a server's facts add: its datastore, the key its API port serves,
//! and whether its data dir is on an SD card.

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

/// Whether `dev` is an SD card (the kernel's MMC block driver names them
/// `mmcblkN`, partitions `mmcblkNpM`; a Pi's eMMC too).
pub fn on_sd_card(dev: &str) -> bool {
    dev.strip_prefix("/dev/mmcblk")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sd_cards_are_mmcblk_devices_and_nothing_else() {
        for dev in ["/dev/mmcblk0p2", "/dev/mmcblk1", "/dev/mmcblk0"] {
            assert!(super::on_sd_card(dev), "{dev}");
        }
        for dev in [
            "/dev/sda2",
            "/dev/nvme0n1p2",
            "overlay",
            "/dev/mmcblkboot0",
            "",
        ] {
            assert!(!super::on_sd_card(dev), "{dev}");
        }
    }
}
