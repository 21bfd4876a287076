//! A command kept running for as long as its connection lives: its stdin
//! stays open (the sudo password, if any, is sent first), so it ends when
//! the connection does, whether pictl finishes, is interrupted or dies.
//! What pictl builds on it (the node lock) decides what the command does;
//! this module only starts it and waits for the line it says it is ready.

use russh::ChannelMsg;
use russh::{ChannelReadHalf, ChannelWriteHalf, client};

use super::Output;
use super::sudo::SUDO_OK;

/// What a held command did first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// It printed the ready mark and runs on: what it printed before it.
    Running(Output),
    /// It exited before printing the ready mark.
    Exited(Output),
}

/// A held command's channel, kept open with its connection.
pub(super) struct Held {
    pub(super) _reader: ChannelReadHalf,
    pub(super) _writer: ChannelWriteHalf<client::Msg>,
}

/// What the channel said before the ready mark or its end.
pub(super) struct UpTo {
    /// Whether the ready mark came.
    pub(super) ready: bool,
    /// stdout before the ready mark (all of it when it did not come).
    pub(super) out: Output,
    pub(super) status: Option<i32>,
}

/// Where the mark `\nREADY\n` starts in `stdout`: the command prints it
/// after its output, which then comes back byte for byte whatever it ends
/// with (the facts end with a NUL, not a newline).
fn find_mark(stdout: &[u8], ready: &str) -> Option<usize> {
    let mark = format!("\n{ready}\n");
    stdout
        .windows(mark.len())
        .position(|w| w == mark.as_bytes())
}

/// Reads until the mark `\nREADY\n` has come on stdout (and, through
/// sudo, the wrapper's sentinel, which may arrive after it) or the channel
/// closes.
pub(super) async fn up_to(reader: &mut ChannelReadHalf, via_sudo: bool, ready: &str) -> UpTo {
    let mut out = Output::default();
    let mut status = None;
    let sentinel = format!("{SUDO_OK}\n");
    while let Some(msg) = reader.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => {
                status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
        let started = !via_sudo || out.stderr.starts_with(sentinel.as_bytes());
        if status.is_none()
            && started
            && let Some(at) = find_mark(&out.stdout, ready)
        {
            out.stdout.truncate(at);
            return UpTo {
                ready: true,
                out,
                status,
            };
        }
    }
    UpTo {
        ready: false,
        out,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::find_mark;

    #[test]
    fn the_ready_mark_is_a_line_of_its_own_after_the_output() {
        assert_eq!(find_mark(b"\nok\n", "ok"), Some(0));
        assert_eq!(find_mark(b"a=1\0b=2\0\nok\n", "ok"), Some(8));
        assert_eq!(find_mark(b"a=1\n\nok\n", "ok"), Some(4));
        assert_eq!(find_mark(b"a=1\nok", "ok"), None, "not ended yet");
        assert_eq!(find_mark(b"a=ok\nnot-ok\n", "ok"), None);
        assert_eq!(find_mark(b"ok\n", "ok"), None, "no newline before it");
    }
}
