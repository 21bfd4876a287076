//! Ctrl-C and SIGTERM: the process exits (130 and 143, as a shell reports a
//! command killed by the signal), but never halfway through writing a file
//! another tool locks. A write that takes kubectl's `FILE.lock` holds a
//! [`Hold`]; the handler waits (a bounded time) until none is held, so the
//! write finishes and its lock is removed before the process goes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static HELD: AtomicUsize = AtomicUsize::new(0);

/// How long an interrupt waits for a write in progress; a merge of a
/// kubeconfig takes milliseconds, so this only matters on a hung disk.
pub const WRITE_GRACE: Duration = Duration::from_secs(5);

/// A write in progress that an interrupt waits for; released when dropped.
#[derive(Debug)]
pub struct Hold(());

impl Hold {
    pub fn take() -> Hold {
        HELD.fetch_add(1, Ordering::SeqCst);
        Hold(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits until no [`Hold`] is held, at most `grace`; true when none is.
pub fn wait_for_writes(grace: Duration) -> bool {
    let until = Instant::now() + grace;
    while HELD.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// From now on SIGINT and SIGTERM end the process once no write is held.
/// Commands with their own handling (`status --watch`) do not call this.
pub fn exit_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        };
        let done = tokio::task::spawn_blocking(|| wait_for_writes(WRITE_GRACE))
            .await
            .unwrap_or(false);
        if !done {
            eprintln!("pictl: interrupted while a file was still being written");
        } else {
            eprintln!("pictl: interrupted");
        }
        std::process::exit(code);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_ends_when_the_last_hold_is_dropped_and_not_before() {
        let hold = Hold::take();
        assert!(
            !wait_for_writes(Duration::from_millis(50)),
            "a write is held"
        );
        let waiter = std::thread::spawn(|| wait_for_writes(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "waited while the write was held");
        drop(hold);
        assert!(waiter.join().expect("join"), "returned once released");
    }
}
