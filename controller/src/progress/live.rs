//! Draws the [`Board`]: on a terminal, the phase lines are redrawn in place
//! (failures and warnings printed above them for good); otherwise plain
//! lines, one when a phase starts and one when it ends, and each failure
//! and warning as it happens.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::board::Board;
use crate::runner::{Event, Progress};

/// Redraws closer together than this are skipped (the next event or the
/// end of the run draws the latest state).
const REDRAW_EVERY: Duration = Duration::from_millis(80);

struct State {
    board: Board,
    out: Box<dyn Write + Send>,
    /// Lines of the live block on screen now.
    drawn: usize,
    last_draw: Option<Instant>,
}

/// The compact progress of `pictl apply` (the default without `-v`).
pub struct LiveProgress {
    state: Mutex<State>,
    started: Instant,
    terminal: bool,
}

impl std::fmt::Debug for LiveProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProgress")
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

impl LiveProgress {
    /// On stderr, redrawn in place when both stdout and stderr are terminals.
    pub fn stderr() -> Self {
        use std::io::IsTerminal;
        let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Self::new(terminal, Box::new(std::io::stderr()))
    }

    pub fn new(terminal: bool, out: Box<dyn Write + Send>) -> Self {
        Self {
            state: Mutex::new(State {
                board: Board::default(),
                out,
                drawn: 0,
                last_draw: None,
            }),
            started: Instant::now(),
            terminal,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }

    /// Terminal: cursor up over the old block, clear below, the new lines
    /// to keep (if any), then the block again.
    fn redraw(&self, s: &mut State, keep: Option<&str>, force: bool) {
        let now = Instant::now();
        let recent = s.last_draw.is_some_and(|t| now - t < REDRAW_EVERY);
        if recent && !force && keep.is_none() {
            return;
        }
        let lines = s.board.lines(self.started.elapsed());
        let mut text = String::new();
        if s.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", s.drawn));
        }
        text.push_str("\r\x1b[J");
        if let Some(k) = keep {
            text.push_str(k);
            text.push('\n');
        }
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        s.drawn = lines.len();
        s.last_draw = Some(now);
        let _ = s.out.write_all(text.as_bytes());
        let _ = s.out.flush();
    }

    fn plain(s: &mut State, line: &str) {
        let _ = writeln!(s.out, "{line}");
    }
}

impl Progress for LiveProgress {
    fn event(&self, e: &Event<'_>) {
        tracing::debug!(
            node = e.subject,
            step = e.topic_word(),
            status = e.stage_word(),
            detail = e.detail,
            "progress"
        );
        self.with(|s| {
            let listed = s.board.event(e);
            if self.terminal {
                self.redraw(s, listed.as_deref(), false);
            } else if let Some(l) = listed {
                Self::plain(s, &l);
            }
        });
    }

    fn phase(&self, name: &'static str, nodes: usize) {
        let now = self.started.elapsed();
        self.with(|s| {
            if !self.terminal {
                s.board.end(now);
                if let Some(l) = s.board.last_line(now) {
                    Self::plain(s, &l);
                }
            }
            s.board.phase(name, nodes, now);
            if self.terminal {
                self.redraw(s, None, true);
            } else if let Some(l) = s.board.last_line(now) {
                Self::plain(s, &l);
            }
        });
    }

    /// The run is over: the final state of every phase.
    fn finish(&self) {
        let now = self.started.elapsed();
        self.with(|s| {
            let was_running = s.board.running();
            s.board.end(now);
            if self.terminal {
                self.redraw(s, None, true);
            } else if was_running && let Some(l) = s.board.last_line(now) {
                Self::plain(s, &l);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Status;
    use crate::runner::{Stage, Topic};
    use crate::step::StepId;
    use std::sync::Arc;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("sink").clone()).expect("utf8")
        }
    }

    fn run(p: &LiveProgress) {
        p.phase("connect", 2);
        p.phase("agents", 2);
        for n in ["node1", "node2"] {
            p.event(&Event {
                subject: n,
                topic: Topic::Step(StepId::K3sConfig),
                stage: Stage::Finished(Status::Changed),
                detail: "",
            });
        }
        p.event(&Event {
            subject: "node2",
            topic: Topic::Step(StepId::K3sService),
            stage: Stage::Finished(Status::Failed),
            detail: "did not start",
        });
        p.finish();
    }

    #[test]
    fn plain_output_is_a_line_per_phase_start_and_end_and_each_failure() {
        let sink = Sink::default();
        let p = LiveProgress::new(false, Box::new(sink.clone()));
        run(&p);
        let text = sink.text();
        assert!(!text.contains('\x1b'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].starts_with("connect         2 nodes   0.0 s ..."),
            "{text}"
        );
        assert!(
            lines[1].starts_with("connect         2 nodes   done"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("agents          2 nodes   0.0 s ..."),
            "{text}"
        );
        assert_eq!(lines[3], "[node2] k3s-service: FAILED did not start");
        assert!(
            lines[4].starts_with("agents          2 nodes   done"),
            "{text}"
        );
        assert!(lines[4].ends_with("changed 2, failed 1"), "{text}");
    }

    #[test]
    fn a_terminal_gets_the_block_redrawn_in_place_with_failures_kept_above() {
        let sink = Sink::default();
        let p = LiveProgress::new(true, Box::new(sink.clone()));
        run(&p);
        let text = sink.text();
        // The last frame: back over the two phase lines, the failure kept
        // before it, then both phases done.
        let last = text.rsplit("\r\x1b[J").next().expect("a frame");
        let lines: Vec<&str> = last.lines().collect();
        assert_eq!(lines.len(), 2, "{last:?}");
        assert!(
            lines[0].starts_with("connect         2 nodes   done"),
            "{last:?}"
        );
        assert!(lines[1].ends_with("changed 2, failed 1"), "{last:?}");
        assert!(
            text.contains("\x1b[2A"),
            "moves up over the block: {text:?}"
        );
        assert_eq!(
            text.matches("[node2] k3s-service: FAILED did not start\n")
                .count(),
            1
        );
        let failure_at = text.find("FAILED").expect("failure");
        let last_frame_at = text.rfind("\r\x1b[J").expect("frame");
        assert!(failure_at < last_frame_at, "{text:?}");
    }
}
