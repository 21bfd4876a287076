//! [`RemoteCommand`]: what to run on a node, as data.
//!
//! Callers describe a program and its arguments; this type turns them into
//! the one shell line SSH can carry, quoting every word by construction. The
//! edge: privilege escalation is not decided here (the transport knows whether
//! the user is root and how sudo authenticates, see [`super::sudo`]).

use std::fmt;
use std::time::Duration;

use super::quote;

/// `$0` of scripts run with [`RemoteCommand::script`], so their error
/// messages say who ran them.
const SCRIPT_NAME: &str = "pictl";

/// Grace between `timeout`'s TERM and KILL on the node.
pub const KILL_AFTER: Duration = Duration::from_secs(5);

/// Exit statuses of coreutils `timeout` when it had to stop the command
/// (TERM worked: 124; KILL was needed: 128 + 9).
pub const TIMEOUT_STATUSES: [i32; 2] = [124, 137];

/// A program with arguments, environment, optional stdin, sudo flag and
/// timeout. Build it with [`RemoteCommand::new`] or [`RemoteCommand::script`].
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    program: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    sudo: bool,
    timeout: Option<Duration>,
    env: Vec<(String, String)>,
}

/// Why a command cannot be sent as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    #[error("the program name is empty")]
    EmptyProgram,
    #[error("a word contains a NUL byte, which no argv can carry")]
    NulByte,
    #[error("environment variable name {0:?} is not a valid shell name")]
    BadEnvName(String),
}

impl RemoteCommand {
    /// Run `program` (looked up in the node's `PATH`) with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            sudo: false,
            timeout: None,
            env: Vec::new(),
        }
    }

    /// Run a POSIX `sh` script: `sh -c <source> pictl [args...]`. Arguments
    /// added later with [`arg`](Self::arg) become `$1`, `$2`, ... so values
    /// never need to be spliced into the source.
    pub fn script(source: impl Into<String>) -> Self {
        Self::new("sh").arg("-c").arg(source).arg(SCRIPT_NAME)
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Bytes fed to the program's stdin (then EOF). The only safe channel for
    /// secrets: argv is visible to every user of the node through `ps`.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Run as root (through sudo when the SSH user is not root).
    pub fn sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }

    /// Give up after this long. The node enforces it with coreutils
    /// `timeout` (TERM, then KILL [`KILL_AFTER`] later), because sshd does not
    /// deliver SSH signal requests for every login (root sessions refuse them);
    /// the transport keeps a local deadline as a backstop for a stalled link.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Set an environment variable for the program (through `env`, so it
    /// also crosses sudo). Values are visible in `ps`: not for secrets.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn arguments(&self) -> &[String] {
        &self.args
    }

    pub fn stdin_bytes(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    pub fn needs_sudo(&self) -> bool {
        self.sudo
    }

    pub fn timeout_after(&self) -> Option<Duration> {
        self.timeout
    }

    /// The exact shell line sent to the node when no sudo wrapping applies
    /// (the SSH user is root, or [`sudo`](Self::sudo) is false).
    pub fn to_shell(&self) -> String {
        quote::join(self.argv().iter().map(String::as_str))
    }

    /// Owned argv: `[timeout -k 5 SECS] [env NAME=value...] program args...`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.args.len() + self.env.len() + 6);
        if let Some(after) = self.timeout {
            argv.push("timeout".to_owned());
            argv.push("-k".to_owned());
            argv.push(format!("{}", KILL_AFTER.as_secs()));
            argv.push(format!("{}.{:03}", after.as_secs(), after.subsec_millis()));
        }
        if !self.env.is_empty() {
            argv.push("env".to_owned());
            argv.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// Reject what quoting cannot express faithfully.
    pub fn validate(&self) -> Result<(), InvalidCommand> {
        if self.program.is_empty() {
            return Err(InvalidCommand::EmptyProgram);
        }
        for (name, _) in &self.env {
            let mut chars = name.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(InvalidCommand::BadEnvName(name.clone()));
            }
        }
        let words = std::iter::once(&self.program)
            .chain(&self.args)
            .chain(self.env.iter().flat_map(|(k, v)| [k, v]));
        for word in words {
            if word.contains('\0') {
                return Err(InvalidCommand::NulByte);
            }
        }
        Ok(())
    }
}

/// stdin is left out on purpose: it may carry a secret or a 60 MB binary.
impl fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCommand")
            .field("program", &self.program)
            .field("args", &self.args)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|s| format!("<{} bytes>", s.len())),
            )
            .field("sudo", &self.sudo)
            .field("timeout", &self.timeout)
            .field("env", &self.env)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_arguments_become_positional_parameters() {
        let cmd = RemoteCommand::script("echo \"$1\"").arg("a b");
        assert_eq!(cmd.to_shell(), "sh -c 'echo \"$1\"' pictl 'a b'");
    }

    #[test]
    fn env_goes_through_env_so_it_crosses_sudo() {
        let cmd = RemoteCommand::new("k3s")
            .env("K3S_DEBUG", "1 2")
            .arg("--version");
        assert_eq!(cmd.to_shell(), "env 'K3S_DEBUG=1 2' k3s --version");
    }

    #[test]
    fn timeout_is_enforced_by_the_node() {
        let cmd = RemoteCommand::new("sleep")
            .arg("9")
            .timeout(Duration::from_millis(1500));
        assert_eq!(cmd.to_shell(), "timeout -k 5 1.500 sleep 9");
    }

    #[test]
    fn debug_never_shows_stdin() {
        let cmd = RemoteCommand::new("cat").stdin(b"hunter2".to_vec());
        let dbg = format!("{cmd:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<7 bytes>"), "{dbg}");
    }

    #[test]
    fn validate_rejects_what_quoting_cannot_carry() {
        assert_eq!(
            RemoteCommand::new("").validate(),
            Err(InvalidCommand::EmptyProgram)
        );
        assert_eq!(
            RemoteCommand::new("echo").arg("a\0b").validate(),
            Err(InvalidCommand::NulByte)
        );
        assert!(matches!(
            RemoteCommand::new("true").env("A=B", "c").validate(),
            Err(InvalidCommand::BadEnvName(_))
        ));
        assert!(matches!(
            RemoteCommand::new("true").env("", "c").validate(),
            Err(InvalidCommand::BadEnvName(_))
        ));
        assert_eq!(
            RemoteCommand::new("true").env("_A1", "x").validate(),
            Ok(())
        );
    }
}
