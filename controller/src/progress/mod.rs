//! The compact live view of a run: one line per phase with counts, and
//! failures and warnings listed as they happen, so a 50-node run fits on a
//! screen. [`board`] is the pure part (what the lines say, given events and
//! times); [`live`] draws it on a terminal, redrawn in place, or as plain
//! lines when output goes to a file or a pipe. The full per-node, per-step
//! log stays [`crate::runner::StderrProgress`] (`-v`).

pub mod board;
pub mod live;

pub use board::Board;
pub use live::LiveProgress;
