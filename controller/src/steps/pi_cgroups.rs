//! Raspberry Pi preflight: K3s needs the memory cgroup, which Raspberry Pi
//! OS leaves off unless `cmdline.txt` asks for it. Edit the file only when
//! the flags are missing, reboot only then, and re-check after the reboot.

use crate::artifacts::ArtifactStore;
use crate::step::{Applied, Change, Check, NodeCx, Step, StepError};
use crate::transport::{BoxFuture, RemoteCommand, Transport};

const FLAGS: [&str; 2] = ["cgroup_memory=1", "cgroup_enable=memory"];

pub struct PiCgroups;

/// The one-line command line with the cgroup flags added (if missing).
pub fn with_cgroup_flags(cmdline: &str) -> String {
    let line = cmdline.lines().next().unwrap_or_default().trim();
    let mut words: Vec<&str> = line.split_whitespace().collect();
    for f in FLAGS {
        if !words.contains(&f) {
            words.push(f);
        }
    }
    format!("{}\n", words.join(" "))
}

impl Step for PiCgroups {
    fn name(&self) -> &'static str {
        "pi-cgroups"
    }

    fn check(&self, cx: &NodeCx<'_>) -> Check {
        let Some((path, current)) = &cx.facts.boot_cmdline else {
            return Check::Skip("not a Raspberry Pi (no cmdline.txt)".into());
        };
        let wanted = with_cgroup_flags(current);
        if current.trim() != wanted.trim() {
            let missing: Vec<&str> = FLAGS
                .iter()
                .copied()
                .filter(|f| !current.split_whitespace().any(|w| w == *f))
                .collect();
            return Check::Changes(vec![
                Change::new(
                    path.clone(),
                    format!("without {}", missing.join(" ")),
                    format!("with {}", FLAGS.join(" ")),
                ),
                Change::new("reboot", "memory cgroup off", "reboot to enable it"),
            ]);
        }
        if !cx.facts.memory_cgroup {
            return Check::Blocked(format!(
                "{path} has {} but the memory cgroup controller is still not enabled after boot",
                FLAGS.join(" ")
            ));
        }
        Check::Changes(Vec::new())
    }

    fn apply<'a>(
        &'a self,
        cx: &'a NodeCx<'a>,
        t: &'a dyn Transport,
        _store: &'a ArtifactStore,
        _changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Applied, StepError>> {
        Box::pin(async move {
            let Some((path, current)) = &cx.facts.boot_cmdline else {
                return Ok(Applied::Done);
            };
            t.put_file(
                with_cgroup_flags(current).as_bytes(),
                path,
                0o755,
                cx.node.ssh.sudo,
            )
            .await?;
            // The connection drops as the node goes down: that is expected.
            let reboot = RemoteCommand::new("systemctl")
                .arg("reboot")
                .sudo(cx.node.ssh.sudo);
            let _ = t.exec(&reboot).await;
            Ok(Applied::Rebooting)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_added_once_and_kept_on_one_line() {
        let pi = "console=serial0,115200 console=tty1 root=PARTUUID=abc rootfstype=ext4 fsck.repair=yes rootwait\n";
        let once = with_cgroup_flags(pi);
        assert!(once.ends_with("rootwait cgroup_memory=1 cgroup_enable=memory\n"));
        assert_eq!(with_cgroup_flags(&once), once, "idempotent");
        assert_eq!(once.lines().count(), 1);
    }
}
