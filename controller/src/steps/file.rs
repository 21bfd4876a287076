//! A managed file's mode and owner, shared by the steps that install files.
//!
//! Content and metadata are checked apart: when the content is right but the
//! mode or owner is not, the repair is a `chown` + `chmod` in place, not a
//! re-upload, and it is not a change of what K3s reads, so it restarts
//! nothing. When the content is wrong, the upload sets mode and owner anyway
//! (a root-owned temp file renamed over the target), so no fix is planned.

use serde::Serialize;

use crate::facts::{Facts, FileMeta};
use crate::step::{Change, StepError};
use crate::transport::{RemoteCommand, Transport};

/// `/usr/local/bin/k3s` and the health agent binary.
pub const BINARY: FileMeta = FileMeta::root(0o755);
/// `config.yaml`: it holds the token.
pub const SECRET: FileMeta = FileMeta::root(0o600);
/// systemd units.
pub const UNIT: FileMeta = FileMeta::root(0o644);

/// Set `path`'s owner and mode to `want` (its content is already right).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetaFix {
    pub path: &'static str,
    pub found: FileMeta,
    pub want: FileMeta,
}

/// `$1` uid:gid, `$2` octal mode, `$3` path. chown first: it may clear
/// setuid bits, which chmod then sets as wanted.
const SCRIPT: &str = r#"set -eu
chown -- "$1" "$3"
chmod -- "$2" "$3"
"#;

impl MetaFix {
    /// The fix `path` needs, if it exists with other metadata than `want`.
    /// Unknown metadata (not reported) is nothing to judge.
    pub fn check(facts: &Facts, path: &'static str, want: FileMeta) -> Option<MetaFix> {
        let found = facts.file_meta(path)?;
        (found != want).then_some(MetaFix { path, found, want })
    }

    /// `path: mode 0644 → 0600`, `path: owner 1000:1000 → 0:0`.
    pub fn changes(&self) -> Vec<Change> {
        let (f, w) = (self.found, self.want);
        let mut out = Vec::new();
        if f.mode != w.mode {
            out.push(Change::new(
                self.path,
                format!("mode {:04o}", f.mode),
                format!("{:04o}", w.mode),
            ));
        }
        if (f.uid, f.gid) != (w.uid, w.gid) {
            out.push(Change::new(
                self.path,
                format!("owner {}:{}", f.uid, f.gid),
                format!("{}:{}", w.uid, w.gid),
            ));
        }
        out
    }

    pub fn command(&self, sudo: bool) -> RemoteCommand {
        RemoteCommand::script(SCRIPT)
            .args([
                format!("{}:{}", self.want.uid, self.want.gid),
                format!("{:04o}", self.want.mode),
                self.path.to_string(),
            ])
            .sudo(sudo)
    }

    pub async fn apply(&self, t: &dyn Transport, sudo: bool) -> Result<(), StepError> {
        let out = t.exec(&self.command(sudo)).await?;
        StepError::check_output(&format!("chown/chmod {}", self.path), out)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::paths;

    #[test]
    fn a_fix_says_what_differs_and_runs_quoted_chown_then_chmod() {
        let fix = MetaFix {
            path: paths::CONFIG,
            found: FileMeta {
                mode: 0o644,
                uid: 1000,
                gid: 1000,
            },
            want: SECRET,
        };
        let shown: Vec<String> = fix.changes().iter().map(Change::to_string).collect();
        assert_eq!(
            shown,
            [
                "/etc/rancher/k3s/config.yaml: mode 0644 → 0600",
                "/etc/rancher/k3s/config.yaml: owner 1000:1000 → 0:0",
            ]
        );
        let cmd = fix.command(true);
        assert!(cmd.needs_sudo());
        assert!(
            cmd.to_shell()
                .ends_with(" pictl 0:0 0600 /etc/rancher/k3s/config.yaml"),
            "{}",
            cmd.to_shell()
        );
    }

    /// The script itself, locally: the mode is set as planned.
    #[test]
    fn the_fix_script_sets_the_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("it's a file");
        std::fs::write(&file, "x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let md = std::fs::metadata(&file).expect("stat");
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", SCRIPT, "pictl"])
            .arg(format!("{}:{}", md.uid(), md.gid()))
            .arg("0600")
            .arg(&file)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{out:?}");
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
    }
}
