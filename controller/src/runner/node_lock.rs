//! The node lock: `apply` and `reset` hold `/run/pictl.lock` on every node
//! they change (an OS file lock, `flock`, as k0sctl locks its hosts), so two
//! controllers never converge one cluster at once. The lock is held by a
//! process on the node whose stdin is pictl's SSH channel: it ends, and the
//! lock with it, when that connection does (the run finishing, Ctrl-C, a
//! crash). It cannot outlive its session; a session that lingers (a laptop
//! asleep mid-run) ends at sshd's keep-alive timeout, or at once with
//! `sudo kill PID`, the process the lock file names. `/run` empties at
//! boot, so a reboot releases it too; pictl takes it again after one.

use std::sync::OnceLock;
use std::time::Duration;

use crate::transport::{Holding, Output, RemoteCommand, Transport, TransportError};
use crate::write::Writer;

/// Where the lock lives on a node (tmpfs: a reboot leaves no lock).
pub const PATH: &str = "/run/pictl.lock";

/// `$1` the holder's description, `$2` the lock file, then the command to
/// run under the lock (its stdin is not the channel's, which stays open). Opened for append so waiting never truncates the
/// holder's words; once the command succeeded, a line [`READY`] after its
/// output (which may not end with a newline), and `exec cat`
/// keeps fd 9 (the lock) until stdin, the SSH channel, ends.
const SCRIPT: &str = r#"exec 9>>"$2" || { echo pictl-lock-unopened >&2; exit 70; }
if ! flock -n 9; then echo pictl-lock-held; cat "$2"; exit 75; fi
printf '%s, pid %s on the node\n' "$1" "$$" >"$2"
shift 2
"$@" </dev/null || exit
printf '\n%s\n' pictl-locked
exec cat >/dev/null"#;

/// The line the script prints once the node is locked and the command ran.
pub const READY: &str = "pictl-locked";
const HELD: &str = "pictl-lock-held\n";

/// Why a node could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Another run holds it: its own words (who, what, since when, pid).
    #[error("another pictl run holds {PATH}: {holder}")]
    Held { holder: String },
    #[error("cannot open {PATH}: {stderr}")]
    Unopened { stderr: String },
    #[error("taking {PATH} failed (exit {status}): {stderr}")]
    Failed { status: i32, stderr: String },
}

/// `inner` run under the node lock, which is then held for as long as the
/// connection lives: one round trip for both (the facts script rides it).
pub fn around(inner: &RemoteCommand, holder: &str) -> RemoteCommand {
    around_at(inner, holder, PATH)
}

/// [`around`] with the lock at `path` (tests on a shared host).
pub fn around_at(inner: &RemoteCommand, holder: &str, path: &str) -> RemoteCommand {
    // No node-side timeout around the lock: it would end the holder.
    // `inner`'s own (in its argv) bounds it.
    RemoteCommand::script(SCRIPT)
        .arg(holder)
        .arg(path)
        .args(inner.argv())
        .sudo(inner.needs_sudo())
}

/// Runs `inner` under the node lock, kept while `t`'s connection lives:
/// `inner`'s output (a failed `inner` leaves the lock untaken), or who
/// holds the lock.
pub async fn run_locked(
    t: &dyn Transport,
    inner: &RemoteCommand,
    _w: &Writer,
) -> Result<Output, LockError> {
    // The wrapped command's own bound, and the sudo and the lock around it.
    let within = inner.timeout_after().unwrap_or(Duration::from_secs(60)) + Duration::from_secs(15);
    match t.hold(&around(inner, holder()), READY, within).await? {
        Holding::Running(out) => Ok(out),
        Holding::Exited(out) if out.status == 75 && out.stdout.starts_with(HELD.as_bytes()) => {
            Err(LockError::Held {
                holder: Some(one_line(&String::from_utf8_lossy(
                    &out.stdout[HELD.len()..],
                )))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "it did not say who".into()),
            })
        }
        Holding::Exited(out) if out.stderr_text().contains("pictl-lock-unopened") => {
            Err(LockError::Unopened {
                stderr: one_line(&out.stderr_text().replace("pictl-lock-unopened", "")),
            })
        }
        Holding::Exited(out) => Ok(out),
    }
}

/// Takes the node lock alone (for `reset`, whose facts were read before).
pub async fn take(t: &dyn Transport, sudo: bool, w: &Writer) -> Result<(), LockError> {
    let out = run_locked(t, &RemoteCommand::new("true").sudo(sudo), w).await?;
    match out.success() {
        true => Ok(()),
        false => Err(LockError::Failed {
            status: out.status,
            stderr: one_line(&out.stderr_text()),
        }),
    }
}

/// This run, as another run's refusal names it: who, from where, which
/// process, since when (UTC).
pub fn holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "someone".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "an unnamed host".into());
        let since = k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second);
        one_line(&format!(
            "{user}@{host} (pictl pid {}, since {})",
            std::process::id(),
            since.map_or_else(|_| "now".into(), |t| t.to_string())
        ))
    })
}

/// Printable and short: the holder's words come from a node.
fn one_line(s: &str) -> String {
    s.trim()
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_from_a_node_is_one_short_printable_line() {
        let s = one_line("alice@mac (pictl pid 7)\u{1b}[2J, pid 9 on the node\nsecond line");
        assert_eq!(s, "alice@mac (pictl pid 7)[2J, pid 9 on the node");
        assert_eq!(one_line(""), "");
        assert!(one_line(&"x".repeat(500)).len() == 200);
    }

    #[test]
    fn this_runs_holder_names_its_pid() {
        assert!(holder().contains(&format!("pictl pid {}", std::process::id())));
    }
}
