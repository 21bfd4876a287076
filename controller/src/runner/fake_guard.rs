//! The fake node's answers to an upgrade's guard (see
//! `phases::upgrade_guard`): the previous release kept, a snapshot taken
//! (etcd's only from a running server, as K3s), and the rollback.

use super::{FakeTransport, NodeState, ok};
use crate::facts::paths;
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
