//! Progress while a run works: one line per node and step on stderr, so an
//! operator watching a slow Pi sees where it is. Also mirrored to tracing.

/// How a run reports progress while it works.
pub trait Progress: Send + Sync {
    fn event(&self, node: &str, step: &str, status: &str, detail: &str);
}

/// `[node] step: status (detail)` lines on stderr.
#[derive(Debug)]
pub struct StderrProgress;

impl Progress for StderrProgress {
    fn event(&self, node: &str, step: &str, status: &str, detail: &str) {
        tracing::debug!(node, step, status, detail, "progress");
        if detail.is_empty() {
            eprintln!("[{node}] {step}: {status}");
        } else {
            eprintln!("[{node}] {step}: {status} {detail}");
        }
    }
}

/// Only warnings (`plan` prints its findings once, at the end).
#[derive(Debug)]
pub struct WarningsOnly;

impl Progress for WarningsOnly {
    fn event(&self, node: &str, step: &str, status: &str, detail: &str) {
        if status == "warning" {
            StderrProgress.event(node, step, status, detail);
        }
    }
}
