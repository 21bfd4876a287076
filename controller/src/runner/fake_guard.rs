//! The fake node's answers to an upgrade's guard (see
//! `phases::upgrade_guard`): the previous release kept, a snapshot taken
//! (etcd's only from a running server, as K3s), and the rollback.

use super::{FakeTransport, NodeState, ok};
use crate::facts::paths;
use crate::runner::phases::RENEW;
use crate::runner::phases::upgrade_guard::{ROLL_BACK, TAKE};
use crate::transport::{Output, RemoteCommand};

fn fail(why: &str) -> Output {
    Output {
        status: 1,
        stderr: why.as_bytes().to_vec(),
        ..Output::default()
    }
}

impl FakeTransport {
    pub(super) fn guard(
        &self,
        cmd: &RemoteCommand,
        script: &str,
        s: &mut NodeState,
    ) -> Option<Output> {
        let args = cmd.arguments();
        if script == TAKE {
            let bin = s.files.get(paths::K3S_BIN)?.clone();
            s.previous = Some((bin, s.k3s_version.clone()));
            if args[3] == "etcd" && (s.snapshot_fails || !s.active.contains("k3s.service")) {
                return Some(fail("failed to check etcd status for snapshot"));
            }
            let path = format!(
                "{}/server/db/snapshots/{}-{}-1733600000",
                args[4], args[5], self.name
            );
            s.files
                .insert(path.clone(), format!("{} snapshot", args[3]).into_bytes());
            return Some(ok(format!("{path}\n")));
        }
        if script == RENEW {
            s.renew_certs();
            return Some(ok(s.cert_records(self.server)));
        }
        if script != ROLL_BACK {
            return None;
        }
        let Some((bin, version)) = s.previous.clone() else {
            return Some(fail(
                "nothing kept in /var/lib/pictl/previous to roll back to",
            ));
        };
        s.files.insert(paths::K3S_BIN.into(), bin);
        s.k3s_version = version;
        s.running = Some(
            s.k3s_version
                .clone()
                .unwrap_or_else(|| "v1.32.5+k3s1".into()),
        );
        s.active.insert("k3s.service".into());
        Some(ok(String::new()))
    }
}

impl NodeState {
    /// K3s's leaf certificates signed now, ending in `days` days.
    pub fn sign_certs(&mut self, days: i64) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["k3s".to_string()]).expect("params");
        // An hour short of whole days: whole days left are `days - 1` whatever
        // the second the facts are read in.
        let end = crate::runner::connect::now_epoch() + days * 86_400 - 3600;
        p.not_after = time::OffsetDateTime::from_unix_timestamp(end).expect("time");
        let pem = p.self_signed(&key).expect("cert").pem();
        let body = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        self.certs = Some((days, body));
    }

    /// What a K3s start does to them: signed for 365 days again when
    /// inside the renewal window (unless this K3s keeps them).
    pub(super) fn renew_certs(&mut self) {
        let due = self
            .certs
            .as_ref()
            .is_some_and(|(d, _)| *d <= crate::facts::certs::RENEW_DAYS);
        if due && !self.keeps_certs {
            self.sign_certs(365);
        }
    }

    /// The facts script's `cert` records: a server's client certificate
    /// and any node's kubelet one, under K3s's default data dir.
    pub(super) fn cert_records(&self, server: bool) -> String {
        let Some((_, body)) = &self.certs else {
            return String::new();
        };
        let dd = "/var/lib/rancher/k3s";
        let mut files = vec![format!("{dd}/agent/client-kubelet.crt")];
        if server {
            files.push(format!("{dd}/server/tls/client-admin.crt"));
        }
        files
            .iter()
            .map(|f| crate::facts::record("cert", &format!("{f} {body}")))
            .collect()
    }
}
