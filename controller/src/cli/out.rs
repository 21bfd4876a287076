//! Where the CLI's text goes, and the codes it exits with: a command's
//! output on stdout, messages to the operator (problems, what was written,
//! why a command failed) on stderr, one line each. The commands print
//! through these and nothing else, so the rules live here once: a reader
//! that went away is not pictl's failure, and a failed write never panics
//! (as `println!`/`eprintln!` would).

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

/// Exit code for invalid input or a failed run.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of `pictl plan` when something would change.
pub const EXIT_CHANGES: u8 = 2;
/// Exit code when nodes were unreachable and nothing else failed (as
/// Ansible's): retry later rather than fix something.
pub const EXIT_UNREACHABLE: u8 = 4;

/// A message the operator must see, as one line on stderr. A stderr that
/// cannot be written to has nowhere to report that, so it is ignored.
pub(super) fn note(message: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// A question on stderr, the answer to be typed on the same line.
pub(super) fn ask(question: impl Display) {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question}").and_then(|()| stderr.flush());
}

/// `message` on stderr, and the exit code of a failed command.
pub(super) fn fail(message: impl Display) -> ExitCode {
    note(message);
    ExitCode::from(EXIT_FAILURE)
}

/// Writes a command's output to stdout and returns `code`. A reader that
/// went away (`pictl status --output json | head -c1`) is not pictl's
/// failure: the rest of the output is dropped quietly and `code` stands
/// (what the command found does not change because nobody read it all).
/// `println!` would panic there, since Rust ignores SIGPIPE and the
/// workspace forbids the `unsafe` it takes to restore it.
pub(super) fn print_out(text: &str, code: ExitCode) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => fail(format_args!("pictl: writing the output failed: {e}")),
    }
}
