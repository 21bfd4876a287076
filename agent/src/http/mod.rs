//! The agent's HTTP endpoint: `GET /healthz`, `/metrics` and `/v1/report`.
//!
//! Deliberately tiny: std `TcpListener`, a [`pool`] of [`WORKERS`] threads,
//! one request per connection (`Connection: close`), the request head capped
//! at 8 KiB and read within [`READ_DEADLINE`], the answer written within
//! [`WRITE_DEADLINE`], and the whole connection capped at
//! [`CONNECTION_DEADLINE`]. Idle clients cannot starve it: the pool sheds the
//! oldest connection still waiting for its head when a new one finds every
//! thread busy. Requests must name the agent in `Host` ([`host`]: no DNS
//! rebinding). No keep-alive, no bodies, no TLS: the agent listens on loopback
//! by default, and a scraper on the LAN sees only node facts.
//! Reports are collected on demand and cached briefly so a burst of scrapes
//! costs one collection, whichever thread serves it, on whichever listener.
//!
//! A listener has a [`Scope`]: the `--listen` one serves everything to
//! whoever can connect; the pod-network one ([`crate::pod_metrics`]) serves
//! only `/healthz` and `/metrics`, from its own [`METRICS_WORKERS`] threads,
//! and closes connections from peers outside its networks as soon as they
//! are accepted, before reading a byte.

#[cfg(test)]
mod fuzz_tests;
pub(crate) mod head;
mod host;
mod pool;
mod response;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use head::{MAX_HEAD_BYTES, MAX_HEADERS};
pub use pool::WORKERS;

use crate::cidr::Ipv4Net;
use crate::report::{Health, NodeReport};
use crate::{Error, Result, metrics};
use head::{HeadError, Request, parse_head, read_head};
use host::{Ends, Refusal};
use pool::{HeadWait, Pool};
use response::Response;

/// Time a client has to send its request head.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Time a client has to take the answer.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// Most time a connection holds a thread, from hand-off to close. Only a
/// collection (bounded by the collectors' own timeouts) can overrun it; the
/// answer is then dropped rather than written late.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// After a refusal, how long unread input is drained before closing.
const LINGER: Duration = Duration::from_millis(500);
/// How long a collected report is served before collecting again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_millis(1500);
/// Connection threads of a [`Scope::Metrics`] listener: one Prometheus (or
/// two replicas) scrapes it; the loopback listener keeps its own [`WORKERS`],
/// so pods cannot hold up `pictl status`.
pub const METRICS_WORKERS: usize = 2;

/// Produces a fresh report (the collectors, or a fixed report in tests).
pub type Source = Box<dyn FnMut() -> NodeReport + Send>;

pub struct Server {
    listener: TcpListener,
    pool: Pool,
    context: Arc<Context>,
}

/// What a listener serves, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `/healthz`, `/metrics` and `/v1/report`, to whoever can connect.
    Full,
    /// `/healthz` and `/metrics` only (anything else is 404), to peers in
    /// `peers`; a connection from any other address is closed when accepted,
    /// unread and unanswered.
    Metrics { peers: Vec<Ipv4Net> },
}

impl Scope {
    /// Whether a connection from `peer` is served at all.
    pub fn admits(&self, peer: IpAddr) -> bool {
        match (self, peer.to_canonical()) {
            (Scope::Full, _) => true,
            (Scope::Metrics { peers }, IpAddr::V4(a)) => peers.iter().any(|n| n.contains(a)),
            (Scope::Metrics { .. }, IpAddr::V6(_)) => false,
        }
    }

    fn routes(&self, path: &str) -> bool {
        match self {
            Scope::Full => matches!(path, "/healthz" | "/metrics" | "/v1/report"),
            Scope::Metrics { .. } => matches!(path, "/healthz" | "/metrics"),
        }
    }
}

/// The report source and its cache. Clones share both: every listener of
/// one agent answers from the same collection.
#[derive(Clone)]
pub struct Reports(Arc<Mutex<Cache>>);

impl Reports {
    pub fn new(source: Source, ttl: Duration) -> Self {
        Self(Arc::new(Mutex::new(Cache {
            source,
            ttl,
            cached: None,
        })))
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// What every connection thread of one listener shares.
struct Context {
    /// The address the agent was told to listen on, for the `Host` check.
    listen: IpAddr,
    scope: Scope,
    reports: Reports,
}

struct Cache {
    source: Source,
    ttl: Duration,
    cached: Option<Cached>,
}

/// One collection and its renderings, made on first use.
struct Cached {
    at: Instant,
    report: NodeReport,
    json: Option<String>,
    metrics: Option<String>,
}

impl Server {
    /// Binds `addr` and starts the connection threads, serving everything.
    pub fn bind(addr: SocketAddr, source: Source, ttl: Duration) -> Result<Self> {
        let listener =
            TcpListener::bind(addr).map_err(|source| Error::BindFailed { addr, source })?;
        Self::serve(addr, listener, Reports::new(source, ttl), Scope::Full)
    }

    /// Starts the connection threads for `listener` (bound to `listen`), to
    /// answer from `reports` as `scope` allows.
    pub fn serve(
        listen: SocketAddr,
        listener: TcpListener,
        reports: Reports,
        scope: Scope,
    ) -> Result<Self> {
        let workers = match scope {
            Scope::Full => WORKERS,
            Scope::Metrics { .. } => METRICS_WORKERS,
        };
        let context = Arc::new(Context {
            listen: listen.ip(),
            scope,
            reports,
        });
        let shared = context.clone();
        let pool = Pool::start(
            workers,
            Arc::new(move |stream, head: &HeadWait<'_>| handle(&shared, stream, head)),
        )
        .map_err(Error::StartWorkersFailed)?;
        Ok(Self {
            listener,
            pool,
            context,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The report cache, to share with another listener.
    pub fn reports(&self) -> Reports {
        self.context.reports.clone()
    }

    /// Accepts connections and hands them to the pool, forever. A peer the
    /// scope does not admit is closed here, before any thread reads from it.
    pub fn run(self) -> ! {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) if self.context.scope.admits(peer.ip()) => {
                    self.pool.dispatch(stream);
                }
                Ok((stream, _)) => drop(stream),
                // Out of descriptors or similar: back off instead of spinning.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// One connection, on a pool thread: read the head, answer, close.
fn handle(context: &Context, mut stream: TcpStream, head: &HeadWait<'_>) {
    let started = Instant::now();
    let read = read_head(&mut stream, started + READ_DEADLINE);
    head.arrived();
    let response = match read {
        Ok(bytes) => answer(context, &stream, &bytes),
        Err(HeadError::TooLarge) => Response::text(431, "request head too large\n"),
        // Timed out, shed or hung up before a full head: nobody to answer.
        Err(HeadError::Incomplete) => return,
    };
    let deadline = (started + CONNECTION_DEADLINE).min(Instant::now() + WRITE_DEADLINE);
    if write_within(&mut stream, &response.to_bytes(), deadline).is_ok() && response.status >= 400 {
        linger(
            &mut stream,
            (started + CONNECTION_DEADLINE).min(Instant::now() + LINGER),
        );
    }
}

/// The response to a complete head: parse errors, `Host` refusals, or the route.
fn answer(context: &Context, stream: &TcpStream, head: &[u8]) -> Response {
    let req = match parse_head(head) {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return Response::text(400, "bad request\n");
    };
    let ends = Ends {
        peer: peer.ip(),
        local: local.ip(),
        listen: context.listen,
    };
    match host::check(req.host, req.http10, &ends) {
        Ok(()) => route(context, &req),
        Err(Refusal::Missing) => Response::text(400, "Host header required\n"),
        Err(Refusal::Misdirected) => Response::text(421, "Host not served here\n"),
    }
}

fn route(context: &Context, req: &Request<'_>) -> Response {
    let path = req.target.split_once('?').map_or(req.target, |(p, _)| p);
    if !context.scope.routes(path) {
        return Response::text(404, "not found\n");
    }
    if !matches!(req.method, "GET" | "HEAD") {
        let mut r = Response::text(405, "method not allowed\n");
        r.allow = true;
        return r;
    }
    // Held while collecting: concurrent scrapes wait for one collection.
    let mut reports = context
        .reports
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let cached = reports.fresh();
    let mut resp = match path {
        "/healthz" => healthz(&cached.report),
        "/metrics" => {
            let body = cached
                .metrics
                .get_or_insert_with(|| metrics::render(&cached.report));
            Response::new(200, metrics::CONTENT_TYPE, body.clone().into_bytes())
        }
        _ => {
            let body = cached.json.get_or_insert_with(|| {
                serde_json::to_string(&cached.report).unwrap_or_else(|_| "{}".into())
            });
            Response::new(200, "application/json", body.clone().into_bytes())
        }
    };
    resp.head_only = req.method == "HEAD";
    resp
}

impl Cache {
    /// The cached collection, collecting again when it is older than the TTL.
    fn fresh(&mut self) -> &mut Cached {
        if self
            .cached
            .as_ref()
            .is_some_and(|c| c.at.elapsed() >= self.ttl)
        {
            self.cached = None;
        }
        let source = &mut self.source;
        self.cached.get_or_insert_with(|| Cached {
            report: source(),
            at: Instant::now(),
            json: None,
            metrics: None,
        })
    }
}

fn healthz(r: &NodeReport) -> Response {
    if r.health == Health::Failing {
        let mut body = String::from("failing\n");
        for p in &r.problems {
            body.push_str(p);
            body.push('\n');
        }
        Response::text(503, &body)
    } else {
        Response::text(200, "ok\n")
    }
}

/// Writes all of `bytes` by `deadline`: a write timeout alone bounds each
/// write call, and a client reading a byte at a time could stretch it out.
fn write_within(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

/// After refusing a request, reads (a bounded amount of) what the client still
/// sends before closing, until `deadline`: closing with unread input makes the
/// kernel send a reset, which can destroy the refusal before the client reads
/// it. Served requests are GETs without bodies, so they skip this.
fn linger(stream: &mut TcpStream, deadline: Instant) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
