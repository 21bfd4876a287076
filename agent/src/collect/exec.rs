//! Running the node's own tools (`systemctl`, `timedatectl`, `vcgencmd`) with a
//! deadline, behind a trait so tests can answer for them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a program and returns its standard output.
pub trait Exec: Send + Sync {
    fn stdout(&self, program: &str, args: &[&str]) -> Result<String, ExecError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{program} is not installed")]
    NotInstalled { program: String },
    #[error("running {program}")]
    SpawnFailed {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} exited with {status}")]
    ExitedWithFailure {
        program: String,
        status: std::process::ExitStatus,
    },
    #[error("{program} did not finish within {timeout:?}")]
    TimedOut { program: String, timeout: Duration },
}

/// Real processes, killed after `timeout` (a stuck D-Bus must not stall the agent).
#[derive(Debug, Clone)]
pub struct SystemExec {
    pub timeout: Duration,
}

impl Default for SystemExec {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
        }
    }
}

impl Exec for SystemExec {
    fn stdout(&self, program: &str, args: &[&str]) -> Result<String, ExecError> {
        let mut child = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ExecError::NotInstalled {
                    program: program.to_owned(),
                },
                _ => ExecError::SpawnFailed {
                    program: program.to_owned(),
                    source,
                },
            })?;
        let deadline = Instant::now() + self.timeout;
        // The outputs read here are a few lines, far below a pipe buffer, so
        // waiting before reading cannot deadlock.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ExecError::TimedOut {
                        program: program.to_owned(),
                        timeout: self.timeout,
                    });
                }
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ExecError::SpawnFailed {
                        program: program.to_owned(),
                        source,
                    });
                }
            }
        };
        let mut out = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_string(&mut out)
                .map_err(|source| ExecError::SpawnFailed {
                    program: program.to_owned(),
                    source,
                })?;
        }
        if !status.success() {
            return Err(ExecError::ExitedWithFailure {
                program: program.to_owned(),
                status,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod fake {
    use std::collections::HashMap;

    use super::*;

    /// Answers known command lines; anything else is "not installed".
    #[derive(Debug, Default)]
    pub struct FakeExec {
        pub answers: HashMap<String, Result<String, ()>>,
    }

    impl FakeExec {
        pub fn answer(mut self, line: &str, stdout: &str) -> Self {
            self.answers.insert(line.to_owned(), Ok(stdout.to_owned()));
            self
        }
        pub fn fail(mut self, line: &str) -> Self {
            self.answers.insert(line.to_owned(), Err(()));
            self
        }
    }

    impl Exec for FakeExec {
        fn stdout(&self, program: &str, args: &[&str]) -> Result<String, ExecError> {
            let line = std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>();
            match self.answers.get(&line.join(" ")) {
                Some(Ok(out)) => Ok(out.clone()),
                Some(Err(())) => Err(ExecError::TimedOut {
                    program: program.to_owned(),
                    timeout: Duration::ZERO,
                }),
                None => Err(ExecError::NotInstalled {
                    program: program.to_owned(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_not_installed() {
        let e = SystemExec::default()
            .stdout("/nonexistent/pictl-no-such-tool", &[])
            .expect_err("no such program");
        assert!(matches!(e, ExecError::NotInstalled { .. }), "{e:?}");
    }

    #[test]
    fn stdout_is_returned_and_failure_is_reported() {
        let exec = SystemExec::default();
        assert_eq!(
            exec.stdout("sh", &["-c", "echo hi"]).expect("sh runs"),
            "hi\n"
        );
        let e = exec.stdout("sh", &["-c", "exit 3"]).expect_err("exit 3");
        assert!(matches!(e, ExecError::ExitedWithFailure { .. }), "{e:?}");
    }

    #[test]
    fn slow_program_is_killed_at_the_deadline() {
        let exec = SystemExec {
            timeout: Duration::from_millis(100),
        };
        let started = Instant::now();
        let e = exec.stdout("sleep", &["5"]).expect_err("times out");
        assert!(matches!(e, ExecError::TimedOut { .. }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
