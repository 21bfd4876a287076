//! A small fixed pool of connection threads, and the rule that keeps idle
//! clients from starving it.
//!
//! Threads, not an event loop: the agent is std-only and answers a handful of
//! scrapes a minute, so [`WORKERS`] threads with small stacks cost less code
//! and memory than a reactor. The danger of a fixed pool is clients that
//! connect and send nothing: each would hold a thread until its head-read
//! deadline. So the pool knows which connections are still waiting for their
//! request head, and when a new connection finds every thread busy, the accept
//! loop sheds the oldest of those (shuts down its read side: the blocked read
//! returns end-of-file at once and the thread is free). A connection whose head
//! has arrived is never shed; its time is capped by the handler's deadlines.
//! The edge: this module schedules connections; it does not read or write them.

use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Connection threads. Four answers a scrape burst on a Pi's four cores while
/// keeping the agent's memory at a few MiB.
pub const WORKERS: usize = 4;
/// Stack per connection thread: parsing a head and rendering a report need
/// little; collection (sysinfo, spawning `systemctl`) runs on this stack too.
const STACK_BYTES: usize = 256 * 1024;
/// How long the accept loop waits for a freed thread before looking again.
const RECHECK: Duration = Duration::from_millis(100);

/// What a connection thread runs for each connection it is given.
pub type Handler = dyn Fn(TcpStream, &HeadWait<'_>) + Send + Sync;

/// Handed to the handler with its connection: until [`HeadWait::arrived`] is
/// called, the connection counts as idle and may be shed.
pub struct HeadWait<'a> {
    pool: &'a Shared,
    worker: usize,
}

impl HeadWait<'_> {
    /// The request head is read (or reading it failed): the connection is no
    /// longer idle and will not be shed.
    pub fn arrived(&self) {
        self.pool.lock().reading[self.worker] = None;
    }
}

pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a connection is queued for a thread.
    work: Condvar,
    /// Signalled when a thread takes a connection or becomes free.
    freed: Condvar,
}

struct State {
    /// The connection being handed to a thread; at most one at a time, the
    /// rest wait in the kernel's backlog.
    queued: Option<TcpStream>,
    /// Threads waiting for a connection.
    free: usize,
    /// Per thread: the connection whose head it is still waiting for.
    reading: Vec<Option<Reading>>,
}

struct Reading {
    since: Instant,
    /// A handle on the same socket, to shut it down from the accept loop.
    stream: TcpStream,
    shed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked did so outside this lock; the state is whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pool {
    /// Starts `workers` threads running `handler`.
    pub fn start(workers: usize, handler: Arc<Handler>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queued: None,
                free: 0,
                reading: (0..workers).map(|_| None).collect(),
            }),
            work: Condvar::new(),
            freed: Condvar::new(),
        });
        for worker in 0..workers {
            let shared = shared.clone();
            let handler = handler.clone();
            std::thread::Builder::new()
                .name(format!("http-{worker}"))
                .stack_size(STACK_BYTES)
                .spawn(move || work(&shared, worker, &*handler))?;
        }
        Ok(Self { shared })
    }

    /// Gives `stream` to a free thread, shedding the oldest idle connection
    /// when none is free. Blocks only while every thread is busy serving
    /// requests whose heads have arrived, which their deadlines bound.
    pub fn dispatch(&self, stream: TcpStream) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        loop {
            if state.queued.is_none() && state.free > 0 {
                state.queued = Some(stream);
                shared.work.notify_one();
                return;
            }
            if state.queued.is_none() {
                shed_oldest(&mut state);
            }
            state = shared
                .freed
                .wait_timeout(state, RECHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Shuts down the read side of the longest-waiting idle connection, unless one
/// is already being shed (its thread will be free in a moment).
fn shed_oldest(state: &mut State) {
    let idle = state.reading.iter_mut().flatten();
    let mut oldest: Option<&mut Reading> = None;
    for r in idle {
        if r.shed {
            return;
        }
        if oldest.as_ref().is_none_or(|o| r.since < o.since) {
            oldest = Some(r);
        }
    }
    if let Some(r) = oldest {
        r.shed = true;
        // Read side only: a head that arrived just now can still be answered.
        let _ = r.stream.shutdown(Shutdown::Read);
    }
}

fn work(shared: &Shared, worker: usize, handler: &Handler) {
    loop {
        let stream = {
            let mut state = shared.lock();
            state.free += 1;
            shared.freed.notify_one();
            let stream = loop {
                if let Some(s) = state.queued.take() {
                    break s;
                }
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            };
            state.free -= 1;
            shared.freed.notify_one();
            state.reading[worker] = stream.try_clone().ok().map(|handle| Reading {
                since: Instant::now(),
                stream: handle,
                shed: false,
            });
            stream
        };
        let head = HeadWait {
            pool: shared,
            worker,
        };
        // A bug in one request must not shrink the pool.
        let _ = catch_unwind(AssertUnwindSafe(|| handler(stream, &head)));
        head.arrived();
    }
}
