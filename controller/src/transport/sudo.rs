//! Running a [`RemoteCommand`] as root when the SSH user is not root.
//!
//! The sudo password, when there is one, travels on stdin ahead of the
//! command's own stdin, never in argv. A small shell wrapper (run as the SSH
//! user) reads exactly that one line and pipes it alone into
//! `sudo -S -p '' -v`: sudo sees end of input after it, so a wrong password
//! is one failed attempt, never three (sudo would otherwise read the
//! command's stdin as further guesses, and a PAM lockout counts them). The
//! command then runs with `sudo -n` on the credentials just validated, with
//! the rest of stdin untouched. The wrapper prints a sentinel on stderr once
//! sudo let it run: its absence proves sudo refused, which is how a sudo
//! failure is told apart from the command's own non-zero exit; a refused
//! password has its own tag. The edge: this module only builds lines and
//! interprets their stderr; the SSH session lives in [`super::ssh`].

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
    /// `sudo -S -p '' -v` with this password as its only input, then
    /// `sudo -n` for the command.
    Password(Secret),
}

/// Printed on stderr by the wrapper once sudo let it run.
pub const SUDO_OK: &str = "pictl-sudo-ok";
/// Printed on stderr by the password wrapper when sudo refused the password.
pub const SUDO_PASSWORD_REFUSED: &str = "pictl-sudo-password-refused";
/// `$0` of the wrapper shell, for its error messages.
const WRAPPER_NAME: &str = "pictl-sudo";

const PASSWORDLESS_WRAPPER: &str = "printf '%s\\n' pictl-sudo-ok >&2; exec \"$@\"";

/// Run as the SSH user: the first stdin line is the password, fed alone to
/// `sudo -v` (`printf` is a builtin: the password is in no argv); sudo's
/// messages, in the C locale, tell a refused password from other refusals.
/// Neither sudo is `exec`ed or put in a subshell: without a TTY sudo keys
/// its cached credentials by parent process, which must be this shell for
/// both calls (with `timestamp_timeout=0` the command's `sudo -n` fails, and
/// says so).
const PASSWORD_WRAPPER: &str = r#"IFS= read -r p || exit 125
e=$(mktemp) || exit 125
if printf '%s\n' "$p" | LC_ALL=C sudo -S -p '' -v 2>"$e"; then :; else
  unset p
  if grep -q -e 'incorrect password' -e 'Sorry, try again' "$e"; then
    printf '%s\n' pictl-sudo-password-refused >&2
  else
    cat "$e" >&2
  fi
  rm -f "$e"
  exit 125
fi
rm -f "$e"
unset p
sudo -n -- sh -c 'printf "%s\n" pictl-sudo-ok >&2; exec "$@"' pictl-sudo "$@""#;

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
        let (head, wrapper, prefix): (&[&str], &str, Vec<u8>) = match self {
            SudoMode::None => {
                return Err(SudoSetupError::NotConfigured {
                    user: user.to_owned(),
                });
            }
            SudoMode::Passwordless => (&["sudo", "-n", "--"], PASSWORDLESS_WRAPPER, Vec::new()),
            SudoMode::Password(password) => {
                let password = password.expose();
                if password.contains(['\n', '\r']) {
                    return Err(SudoSetupError::PasswordHasLineBreak);
                }
                let mut prefix = Vec::with_capacity(password.len() + 1);
                prefix.extend_from_slice(password.as_bytes());
                prefix.push(b'\n');
                (&[], PASSWORD_WRAPPER, prefix)
            }
        };
        let words = head
            .iter()
            .copied()
            .chain(["sh", "-c", wrapper, WRAPPER_NAME])
            .chain(argv.iter().map(String::as_str));
        Ok(WireCommand {
            line: quote::join(words),
            stdin_prefix: prefix,
            via_sudo: true,
        })
    }
}

/// Why sudo did not run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The password was tried once and refused.
    Password,
    /// Anything else, as a short, secret-free reason (sudo's own words).
    Other(String),
}

/// Remove the wrapper's sentinel from the front of `stderr`, or say why it
/// is missing (sudo refused).
pub fn take_sentinel(stderr: &mut Vec<u8>, status: i32) -> Result<(), Refusal> {
    let sentinel = format!("{SUDO_OK}\n");
    if stderr.starts_with(sentinel.as_bytes()) {
        stderr.drain(..sentinel.len());
        return Ok(());
    }
    if stderr.starts_with(format!("{SUDO_PASSWORD_REFUSED}\n").as_bytes()) {
        return Err(Refusal::Password);
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
    Err(Refusal::Other(reason))
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
        assert!(wire.line.starts_with("sh -c "), "{}", wire.line);
        assert!(wire.line.ends_with(" pictl-sudo true"), "{}", wire.line);
        assert_eq!(wire.stdin_prefix(), b"s3cr3t-pw\n");
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

    /// Stands in for sudo as OpenSSH's default sudoers sees it: `-v` reads
    /// up to three password lines from stdin (logging each attempt), `-n`
    /// runs the command once a password was accepted.
    const FAKE_SUDO: &str = r#"#!/bin/sh
case "$1" in
-S)
  n=0
  while [ "$n" -lt 3 ]; do
    IFS= read -r pw || { echo "sudo: no password was provided" >&2; [ "$n" -gt 0 ] && echo "sudo: $n incorrect password attempt" >&2; exit 1; }
    n=$((n + 1))
    echo attempt >> "$FAKE_SUDO_DIR/attempts"
    if [ "$pw" = right ]; then touch "$FAKE_SUDO_DIR/validated"; exit 0; fi
    echo "Sorry, try again." >&2
  done
  echo "sudo: 3 incorrect password attempts" >&2
  exit 1 ;;
-n)
  [ -e "$FAKE_SUDO_DIR/validated" ] || { echo "sudo: a password is required" >&2; exit 1; }
  shift 2
  exec "$@" ;;
esac
exit 2
"#;

    /// Run `wire` locally with the fake sudo first in PATH; returns the
    /// status, stdout, stderr and the number of password attempts.
    fn run_with_fake_sudo(wire: &WireCommand, body: &[u8]) -> (i32, Vec<u8>, Vec<u8>, usize) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("sudo"), FAKE_SUDO).unwrap();
        std::fs::set_permissions(bin.join("sudo"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&wire.line)
            .env("PATH", path)
            .env("FAKE_SUDO_DIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The wrapper may stop reading early (a refusal): ignore EPIPE.
        let _ = stdin.write_all(wire.stdin_prefix());
        let _ = stdin.write_all(body);
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let attempts = std::fs::read_to_string(dir.path().join("attempts"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            out.stderr,
            attempts,
        )
    }

    #[test]
    fn wrong_password_is_one_attempt_and_a_distinct_refusal() {
        let cmd = RemoteCommand::new("cat").sudo(true);
        let wire = password("wrong").wire(&cmd, "lab").unwrap();
        let (status, stdout, mut stderr, attempts) =
            run_with_fake_sudo(&wire, b"right\nright\nbody\n");
        assert_eq!(attempts, 1, "stdin must never reach sudo as more guesses");
        assert_eq!(status, 125);
        assert!(stdout.is_empty());
        assert_eq!(take_sentinel(&mut stderr, status), Err(Refusal::Password));
    }

    #[test]
    fn right_password_runs_the_command_with_its_own_stdin() {
        let cmd = RemoteCommand::new("cat").sudo(true);
        let wire = password("right").wire(&cmd, "lab").unwrap();
        let body = b"first line\n\x00\x01binary";
        let (status, stdout, mut stderr, attempts) = run_with_fake_sudo(&wire, body);
        assert_eq!(attempts, 1);
        assert_eq!(take_sentinel(&mut stderr, status), Ok(()));
        assert_eq!(status, 0, "{}", String::from_utf8_lossy(&stderr));
        assert_eq!(stdout, body);
        assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
    }

    #[test]
    fn other_sudo_refusals_keep_sudos_words() {
        let mut stderr = b"Sorry, user lab may not run sudo on node1.\n".to_vec();
        assert_eq!(
            take_sentinel(&mut stderr, 125),
            Err(Refusal::Other(
                "Sorry, user lab may not run sudo on node1.".into()
            ))
        );
    }

    #[test]
    fn missing_sentinel_reports_sudos_message() {
        let mut stderr = b"sudo: a password is required\n".to_vec();
        assert_eq!(
            take_sentinel(&mut stderr, 1),
            Err(Refusal::Other("sudo: a password is required".to_owned()))
        );
        let mut empty = Vec::new();
        assert!(matches!(
            take_sentinel(&mut empty, 1),
            Err(Refusal::Other(reason)) if reason.contains("status 1")
        ));
    }
}
