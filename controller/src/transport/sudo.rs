//! Running a [`RemoteCommand`] as root when the SSH user is not root.
//!
//! The sudo password, when there is one, travels on stdin ahead of the
//! command's own stdin (`sudo -S`), never in argv. Because sudo may or may not
//! read that line (a cached or `NOPASSWD` rule skips the prompt), the wrapped
//! command first consumes stdin up to a marker line, so the program always
//! sees exactly its own bytes. The wrapper then prints a sentinel on stderr:
//! its absence proves sudo refused, which is how a sudo failure is told apart
//! from the command's own non-zero exit. The edge: this module only builds
//! lines and interprets the sentinel; the SSH session lives in [`super::ssh`].

use std::fmt;

use super::command::RemoteCommand;
use super::quote;
use crate::secret::Secret;

/// How the SSH user becomes root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SudoMode {
    /// Never use sudo: commands that need root fail unless the user is root.
    #[default]
    None,
    /// `sudo -n`: a `NOPASSWD` rule is expected; sudo fails instead of prompting.
    Passwordless,
    /// `sudo -S -k -p ''` with this password written to its stdin.
    Password(Secret),
}

/// Printed on stderr by the wrapper once sudo let it run.
pub const SUDO_OK: &str = "pictl-sudo-ok";
/// Line that ends the sudo-password preamble on stdin.
const STDIN_MARK: &str = "pictl-stdin";
/// `$0` of the wrapper shell, for its error messages.
const WRAPPER_NAME: &str = "pictl-sudo";

const PASSWORDLESS_WRAPPER: &str = "printf '%s\\n' pictl-sudo-ok >&2; exec \"$@\"";

/// Reads the password line if sudo left it (no prompt happened), then the
/// marker; anything else means the preamble is not what pictl sent.
const PASSWORD_WRAPPER: &str = "IFS= read -r l || exit 125
if [ \"$l\" != pictl-stdin ]; then IFS= read -r l || exit 125; [ \"$l\" = pictl-stdin ] || exit 125; fi
unset l
printf '%s\\n' pictl-sudo-ok >&2
exec \"$@\"";

/// Why a command cannot be given root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SudoSetupError {
    #[error(
        "the command needs root, the SSH user {user:?} is not root and sudo is disabled \
         (set `sudo = true` in [ssh])"
    )]
    NotConfigured { user: String },
    #[error("the sudo password contains a line break, which `sudo -S` cannot read")]
    PasswordHasLineBreak,
}

/// The line and stdin preamble actually sent for one command.
#[derive(Clone, PartialEq, Eq)]
pub struct WireCommand {
    /// The exact shell line handed to the node.
    pub line: String,
    /// Bytes sent before the command's own stdin (the sudo password and the
    /// marker). Secret: never logged, see the `Debug` impl.
    stdin_prefix: Vec<u8>,
    /// Whether the line goes through sudo (and so must carry the sentinel).
    pub via_sudo: bool,
}

impl WireCommand {
    pub fn stdin_prefix(&self) -> &[u8] {
        &self.stdin_prefix
    }
}

impl fmt::Debug for WireCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireCommand")
            .field("line", &self.line)
            .field(
                "stdin_prefix",
                &format!("<{} bytes>", self.stdin_prefix.len()),
            )
            .field("via_sudo", &self.via_sudo)
            .finish()
    }
}

impl SudoMode {
    /// What to send for `cmd` when logged in as `user`.
    pub fn wire(&self, cmd: &RemoteCommand, user: &str) -> Result<WireCommand, SudoSetupError> {
        if !cmd.needs_sudo() || user == "root" {
            return Ok(WireCommand {
                line: cmd.to_shell(),
                stdin_prefix: Vec::new(),
                via_sudo: false,
            });
        }
        let argv = cmd.argv();
        let (flags, wrapper, prefix): (&[&str], &str, Vec<u8>) = match self {
            SudoMode::None => {
                return Err(SudoSetupError::NotConfigured {
                    user: user.to_owned(),
                });
            }
            SudoMode::Passwordless => (&["-n"], PASSWORDLESS_WRAPPER, Vec::new()),
            SudoMode::Password(password) => {
                let password = password.expose();
                if password.contains(['\n', '\r']) {
                    return Err(SudoSetupError::PasswordHasLineBreak);
                }
                let mut prefix = Vec::with_capacity(password.len() + STDIN_MARK.len() + 2);
                prefix.extend_from_slice(password.as_bytes());
                prefix.push(b'\n');
                prefix.extend_from_slice(STDIN_MARK.as_bytes());
                prefix.push(b'\n');
                // -k: ignore cached credentials, so sudo's reading of the
                // password line does not depend on when it last asked.
                (&["-S", "-k", "-p", ""], PASSWORD_WRAPPER, prefix)
            }
        };
        let words = std::iter::once("sudo")
            .chain(flags.iter().copied())
            .chain(["--", "sh", "-c", wrapper, WRAPPER_NAME])
            .chain(argv.iter().map(String::as_str));
        Ok(WireCommand {
            line: quote::join(words),
            stdin_prefix: prefix,
            via_sudo: true,
        })
    }
}

/// Remove the wrapper's sentinel from the front of `stderr`. `Err` carries a
/// short, secret-free reason when the sentinel is missing (sudo refused).
pub fn take_sentinel(stderr: &mut Vec<u8>, status: i32) -> Result<(), String> {
    let sentinel = format!("{SUDO_OK}\n");
    if stderr.starts_with(sentinel.as_bytes()) {
        stderr.drain(..sentinel.len());
        return Ok(());
    }
    // sudo's own messages: "a password is required", "incorrect password
    // attempts", "is not in the sudoers file". They never echo the password.
    let text = String::from_utf8_lossy(stderr);
    let mut reason: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join("; ");
    if reason.len() > 300 {
        let mut cut = 300;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    if reason.is_empty() {
        reason = format!("sudo exited with status {status} without running the command");
    }
    Err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn password(p: &str) -> SudoMode {
        SudoMode::Password(Secret::new(p))
    }

    #[test]
    fn no_wrapping_without_sudo_or_as_root() {
        let cmd = RemoteCommand::new("id").sudo(true);
        let wire = SudoMode::Passwordless.wire(&cmd, "root").unwrap();
        assert_eq!(wire.line, "id");
        assert!(!wire.via_sudo);
        let plain = RemoteCommand::new("id");
        let wire = SudoMode::Password(Secret::new("x"))
            .wire(&plain, "lab")
            .unwrap();
        assert_eq!(wire.line, "id");
        assert!(wire.stdin_prefix().is_empty());
    }

    #[test]
    fn passwordless_uses_sudo_n_and_sends_no_stdin_preamble() {
        let cmd = RemoteCommand::new("cat")
            .arg("/etc/rancher/k3s/k3s.yaml")
            .sudo(true);
        let wire = SudoMode::Passwordless.wire(&cmd, "lab").unwrap();
        assert!(wire.line.starts_with("sudo -n -- sh -c "), "{}", wire.line);
        assert!(
            wire.line
                .ends_with(" pictl-sudo cat /etc/rancher/k3s/k3s.yaml")
        );
        assert!(wire.via_sudo);
        assert!(wire.stdin_prefix().is_empty());
    }

    #[test]
    fn password_goes_to_stdin_never_to_the_line() {
        let cmd = RemoteCommand::new("true").sudo(true);
        let wire = password("s3cr3t-pw").wire(&cmd, "lab").unwrap();
        assert!(!wire.line.contains("s3cr3t-pw"), "{}", wire.line);
        assert!(
            wire.line.starts_with("sudo -S -k -p '' -- sh -c "),
            "{}",
            wire.line
        );
        assert_eq!(wire.stdin_prefix(), b"s3cr3t-pw\npictl-stdin\n");
        assert!(!format!("{wire:?}").contains("s3cr3t-pw"));
    }

    #[test]
    fn password_with_line_break_is_refused() {
        let cmd = RemoteCommand::new("true").sudo(true);
        assert_eq!(
            password("a\nb").wire(&cmd, "lab"),
            Err(SudoSetupError::PasswordHasLineBreak)
        );
    }

    #[test]
    fn sudo_disabled_refuses_root_commands_for_non_root() {
        let cmd = RemoteCommand::new("true").sudo(true);
        assert!(matches!(
            SudoMode::None.wire(&cmd, "pi"),
            Err(SudoSetupError::NotConfigured { .. })
        ));
    }

    /// Run the password wrapper locally (without sudo) with the stdin sudo
    /// would leave behind in both cases: it must hand the program exactly its
    /// own bytes, and print the sentinel.
    fn run_password_wrapper(stdin: &[u8]) -> (i32, Vec<u8>, Vec<u8>) {
        use std::io::Write;
        let mut child = Command::new("/bin/sh")
            .args(["-c", PASSWORD_WRAPPER, WRAPPER_NAME, "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
    }

    #[test]
    fn wrapper_skips_password_line_when_sudo_did_not_read_it() {
        let (status, stdout, mut stderr) = run_password_wrapper(b"pw\npictl-stdin\ndata\nmore");
        assert_eq!(status, 0);
        assert_eq!(stdout, b"data\nmore");
        assert_eq!(take_sentinel(&mut stderr, status), Ok(()));
        assert!(stderr.is_empty());
    }

    #[test]
    fn wrapper_passes_stdin_through_when_sudo_read_the_password() {
        let (status, stdout, _) = run_password_wrapper(b"pictl-stdin\n\x00\x01binary");
        assert_eq!(status, 0);
        assert_eq!(stdout, b"\x00\x01binary");
    }

    #[test]
    fn wrapper_refuses_an_unexpected_preamble() {
        let (status, stdout, mut stderr) = run_password_wrapper(b"a\nb\nc\n");
        assert_eq!(status, 125);
        assert!(stdout.is_empty());
        assert!(take_sentinel(&mut stderr, status).is_err());
    }

    #[test]
    fn missing_sentinel_reports_sudos_message() {
        let mut stderr = b"sudo: a password is required\n".to_vec();
        assert_eq!(
            take_sentinel(&mut stderr, 1),
            Err("sudo: a password is required".to_owned())
        );
        let mut empty = Vec::new();
        assert!(
            take_sentinel(&mut empty, 1)
                .unwrap_err()
                .contains("status 1")
        );
    }
}
