//! A hardened HTTP/1.1 server for an axum [`Router`], for use where the relay faces the
//! open internet (local mode, VMs).
//!
//! Compared with plain `axum::serve`, [`serve`] guarantees that:
//!
//! * a client that opens a connection and never completes a request head is disconnected
//!   after [`ServerLimits::header_timeout`] (slowloris);
//! * a request body that is still arriving [`ServerLimits::body_timeout`] after its head is
//!   cut off, and the handler's body read fails with [`BodyTimeout`] so it can answer 408;
//! * a keep-alive connection that sits without a request for [`ServerLimits::idle_timeout`]
//!   is closed;
//! * at most [`ServerLimits::max_connections`] connections are held. A new connection that
//!   arrives at the cap displaces the connection that has been idle longest (no request in
//!   the application). If every held connection has a request in the application, accepting
//!   pauses until one finishes, and newcomers wait in the kernel's listen backlog;
//! * `accept` errors (including running out of file descriptors) never stop the server;
//! * on shutdown, the listener is closed at once, idle connections are closed, and requests
//!   already in the application get a bounded time to finish.
//!
//! The application is never cancelled by eviction: a connection is only chosen for eviction
//! while no request of it is in the application, and that choice is made atomically with
//! respect to the connection starting its next request (a request that loses that race is
//! answered `503` with `Connection: close` and never reaches the application).
//!
//! Cost on the request path: a few atomic operations on per-connection state and one clock
//! read per request. The only global lock (the connection registry) is taken once when a
//! connection opens and once when it closes, and for eviction scans when the cap is reached.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use relay_http_api::BodyTimeout;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::Service;

/// Limits on what one client can hold. Defaults: header 10 s, body 30 s, idle 60 s, 4096
/// connections.
///
/// A timeout too large to represent as a point in time (for example `Duration::MAX`) means
/// "no limit".
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time to receive a complete request head (request line + headers).
    ///
    /// On a new connection it is measured from the moment the connection is accepted, so a
    /// client that connects and sends nothing, or sends part of a head and stops, is
    /// disconnected when it runs out. On a keep-alive connection the wait *before* the next
    /// request's first byte is governed by [`idle_timeout`](Self::idle_timeout) instead, and
    /// this timeout starts when that first byte arrives. (This differs from hyper's own
    /// `header_read_timeout`, which starts as soon as the previous response is done and so
    /// would also cap the keep-alive idle period.)
    pub header_timeout: Duration,
    /// Time to receive a request body, from the end of its head to its last byte. A body
    /// that is still arriving after this is cut off: the handler's body read fails with
    /// [`BodyTimeout`], so the application can answer 408 (see [`relay_http_api::is_body_timeout`]).
    pub body_timeout: Duration,
    /// How long a keep-alive connection may sit with no request before it is closed,
    /// measured from the end of the previous response.
    pub idle_timeout: Duration,
    /// Most connections held at once. A new connection that arrives when this many are held
    /// displaces the connection that has been idle longest; when every held connection has a
    /// request in the application, accepting pauses until one finishes. [`serve`] lowers this
    /// to the process's file-descriptor soft limit minus 128 if that is smaller. Zero is
    /// treated as one.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_mins(1),
            max_connections: 4096,
        }
    }
}

/// Largest request head (request line + headers) accepted; larger ones get 431. Bounds the
/// memory a connection can pin while sending its head (hyper's own default is ~400 KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// File descriptors kept back from the connection cap for everything else the process
/// opens (files, outgoing connections, the listener).
const FD_RESERVE: u64 = 128;

/// Raises the process's soft `RLIMIT_NOFILE` (open file descriptors) to its hard limit and
/// returns the new soft limit, or `None` if it could not be read or changed (logged) or the
/// platform has no such limit. On macOS the value is also capped by `kern.maxfilesperproc`.
///
/// Call it once at startup, before [`serve`], which sizes its connection cap from the soft
/// limit.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(soft) => Some(soft),
            Err(error) => {
                tracing::warn!(%error, "could not raise the open-file limit");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The soft file-descriptor limit, if there is a finite one.
fn fd_soft_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _)) if soft != rlimit::INFINITY => Some(soft),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "could not read the open-file limit");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Connections the kernel queues for `accept` (the listen backlog). The operating system's
/// own cap (`net.core.somaxconn`, 4096 on current Linux) applies on top. With the default of
/// 128, a burst of connection attempts overflows the queue and the kernel drops the SYNs of
/// whoever comes next, a legitimate client included, who then waits out a 1 s retransmit.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`], for [`serve`].
///
/// # Errors
///
/// The address cannot be bound (in use, not local, not permitted).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish for up to `drain`, closes idle connections at once, and returns.
///
/// Handlers can extract `axum::extract::ConnectInfo<std::net::SocketAddr>` (the peer
/// address). Only HTTP/1.x is spoken (keep-alive on, no upgrades). See the module
/// documentation for what the limits guarantee.
///
/// In detail, when `shutdown` completes: the listener is dropped at once (new connection
/// attempts are refused); connections with no request in the application are closed (a
/// response still being flushed is allowed to finish); connections with a request in the
/// application finish that request, with `Connection: close`, and are then closed; after
/// `drain`, whatever is left is dropped (its handlers are cancelled) and `serve` returns
/// `Ok(())`.
///
/// # Errors
///
/// None in practice: errors from `accept` are logged and retried, never returned. The
/// `io::Result` matches `axum::serve` so callers can swap one for the other.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<()> {
    let mut max_connections = limits.max_connections.max(1);
    if let Some(soft) = fd_soft_limit() {
        let allowed = usize::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
        if allowed < max_connections {
            tracing::warn!(
                configured = max_connections,
                clamped_to = allowed,
                fd_soft_limit = soft,
                "max_connections lowered to fit the open-file limit (call raise_fd_limit at startup to raise it)"
            );
            max_connections = allowed;
        }
    }

    let mut http = hyper::server::conn::http1::Builder::new();
    // Our own timers replace hyper's `header_read_timeout` (see `ServerLimits::header_timeout`);
    // setting it to `None` explicitly also keeps hyper from applying its 30 s default.
    http.keep_alive(true).header_read_timeout(None).max_header_size(MAX_HEAD_BYTES);

    let server = Arc::new(Server {
        epoch: Instant::now(),
        limits,
        max_connections,
        http,
        hot: HotFlags { shutting_down: AtomicBool::new(false), accept_waiting: AtomicBool::new(false) },
        slot_freed: Notify::new(),
        registry: Mutex::new(Registry { next_id: 0, conns: HashMap::new() }),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections, ?limits, "serving HTTP/1.1");
    }

    let mut shutdown = pin!(shutdown);
    let mut tasks = JoinSet::new();
    accept_loop(&server, listener, &app, &mut tasks, shutdown.as_mut()).await;

    // The listener is closed. Tell every connection to finish.
    server.hot.shutting_down.store(true, Ordering::SeqCst);
    let open: Vec<Arc<ConnShared>> = server.registry().conns.values().cloned().collect();
    for conn in &open {
        conn.signal.notify_one();
    }
    drop(open);

    let drained = tokio::time::timeout(drain, async {
        while let Some(result) = tasks.join_next().await {
            log_join_result(result);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
            "shutdown drain time over; dropping remaining connections"
        );
        tasks.shutdown().await;
    }
    tracing::info!("server stopped");
    Ok(())
}

fn log_join_result(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result
        && error.is_panic()
    {
        tracing::error!(%error, "connection task panicked");
    }
}

// ---------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------

// Connection phases, stored in the low two bits of `ConnShared::state`; the upper bits hold
// the time the phase started (nanoseconds since `Server::epoch`).

/// Waiting for, or receiving, a request head (the app has not seen it). Deadline: since +
/// header timeout.
const PHASE_HEAD: u64 = 0;
/// Keep-alive, between requests, no byte of the next request yet. Deadline: since + idle
/// timeout.
const PHASE_IDLE: u64 = 1;
/// A request is in the application or its response is being sent. No deadline (the body
/// has its own).
const PHASE_BUSY: u64 = 2;
/// Chosen for eviction; the connection task closes it.
const PHASE_EVICTED: u64 = 3;
const PHASE_MASK: u64 = 3;
const MAX_SINCE: u64 = u64::MAX >> 2;

fn pack(since_nanos: u64, phase: u64) -> u64 {
    (since_nanos.min(MAX_SINCE) << 2) | phase
}

/// Flags read on the request path, kept off the cache line of the registry lock.
#[repr(align(64))]
struct HotFlags {
    shutting_down: AtomicBool,
    /// Set while the accept loop waits for a connection to become idle or close.
    accept_waiting: AtomicBool,
}

struct Server {
    epoch: Instant,
    limits: ServerLimits,
    max_connections: usize,
    http: hyper::server::conn::http1::Builder,
    hot: HotFlags,
    slot_freed: Notify,
    registry: Mutex<Registry>,
}

struct Registry {
    next_id: u64,
    /// Held connections. An evicted connection is removed at once, before its task has
    /// closed it, so `len()` counts the connections that still occupy a slot.
    conns: HashMap<u64, Arc<ConnShared>>,
}

impl Server {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(MAX_SINCE)
    }

    fn deadline(&self, state: u64) -> Option<Instant> {
        let limit = match state & PHASE_MASK {
            PHASE_HEAD => self.limits.header_timeout,
            PHASE_IDLE => self.limits.idle_timeout,
            _ => return None,
        };
        self.epoch.checked_add(Duration::from_nanos(state >> 2))?.checked_add(limit)
    }

    /// Wakes the accept loop if it is waiting for a slot.
    fn slot_maybe_freed(&self) {
        if self.hot.accept_waiting.load(Ordering::SeqCst) {
            self.slot_freed.notify_one();
        }
    }

    fn has_free_slot(&self) -> bool {
        self.registry().conns.len() < self.max_connections
    }

    /// Whether some held connection could be evicted right now.
    fn has_evictable(&self) -> bool {
        self.registry().conns.values().any(|c| {
            let phase = c.state.load(Ordering::Relaxed) & PHASE_MASK;
            phase == PHASE_HEAD || phase == PHASE_IDLE
        })
    }

    /// Evicts the connection that has been idle longest. Returns false if every held
    /// connection has a request in the application.
    fn evict_idlest(&self) -> bool {
        let mut registry = self.registry();
        loop {
            let mut best: Option<(u64, u64)> = None; // (id, state)
            for (id, conn) in &registry.conns {
                let state = conn.state.load(Ordering::Relaxed);
                let phase = state & PHASE_MASK;
                if phase != PHASE_HEAD && phase != PHASE_IDLE {
                    continue;
                }
                if best.is_none_or(|(_, s)| state >> 2 < s >> 2) {
                    best = Some((*id, state));
                }
            }
            let Some((id, state)) = best else { return false };
            let Some(conn) = registry.conns.get(&id) else { return false };
            // Fails if the connection changed phase since the scan (for instance it has
            // just started a request); then scan again.
            if conn.state.compare_exchange(state, PHASE_EVICTED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                if let Some(conn) = registry.conns.remove(&id) {
                    conn.signal.notify_one();
                }
                return true;
            }
        }
    }
}

/// Per-connection state shared by the connection task, its IO wrapper, its request
/// handling, and the accept loop (for eviction and shutdown).
struct ConnShared {
    id: u64,
    /// `pack(since, phase)`. Written by the connection's own task, except that the accept
    /// loop may compare-and-swap a HEAD or IDLE state to EVICTED.
    state: AtomicU64,
    /// Wakes the connection task after eviction or at shutdown.
    signal: Notify,
    /// Set when hyper finished the connection itself (not a timeout, an eviction or a forced
    /// close): its socket is then closed with a lingering close (see [`linger`]).
    finished: AtomicBool,
    server: Arc<Server>,
}

impl ConnShared {
    /// The IO wrapper saw bytes arrive: if the connection was idle, a request head has
    /// begun and the header timeout starts now.
    #[inline]
    fn on_bytes_read(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if state & PHASE_MASK == PHASE_IDLE {
            let next = pack(self.server.now_nanos(), PHASE_HEAD);
            // Loses only to eviction, which must win.
            let _ = self.state.compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// A request head is complete and about to enter the application. Returns false if the
    /// connection was evicted just before (the request must then not reach the app).
    #[inline]
    fn begin_request(&self) -> bool {
        let previous = self.state.swap(PHASE_BUSY, Ordering::AcqRel);
        if previous & PHASE_MASK == PHASE_EVICTED {
            self.state.store(previous, Ordering::Release);
            return false;
        }
        true
    }

    /// The response is finished (or abandoned): the connection is idle again.
    #[inline]
    fn end_request(&self) {
        let next = pack(self.server.now_nanos(), PHASE_IDLE);
        self.state.store(next, Ordering::SeqCst);
        self.server.slot_maybe_freed();
    }
}

/// Removes the connection from the registry when its task ends, however it ends.
struct Registration(Arc<ConnShared>);

impl Drop for Registration {
    fn drop(&mut self) {
        let server = &self.0.server;
        let removed = server.registry().conns.remove(&self.0.id);
        drop(removed);
        server.slot_maybe_freed();
    }
}

/// Lives from the moment a request enters the application until its response body is
/// finished or dropped; marks the connection idle when dropped.
struct InFlight(Arc<ConnShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

// ---------------------------------------------------------------------------------------
// Accepting
// ---------------------------------------------------------------------------------------

/// Logs at most once per interval; counts what it suppressed.
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { last: None, suppressed: 0 }
    }

    /// `Some(suppressed since the last log)` if a log line may be written now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < Self::INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// `accept` errors that concern one connection only (retry at once).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// EMFILE (per-process) or ENFILE (system-wide) descriptor exhaustion. The numbers are the
/// same on Linux, macOS and the BSDs.
fn is_fd_exhaustion(error: &io::Error) -> bool {
    cfg!(unix) && matches!(error.raw_os_error(), Some(23 | 24))
}

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// Safety net for the "all connections busy" wait, in case a wake-up is missed.
const SLOT_RECHECK: Duration = Duration::from_millis(100);

async fn accept_loop(
    server: &Arc<Server>,
    listener: TcpListener,
    app: &Router,
    tasks: &mut JoinSet<()>,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
) {
    let mut evict_log = Throttle::new();
    let mut busy_log = Throttle::new();
    let mut error_log = Throttle::new();
    let mut backoff = BACKOFF_MIN;

    loop {
        // Reap finished connection tasks so the set does not grow.
        while let Some(result) = tasks.try_join_next() {
            log_join_result(result);
        }

        // At the cap with nothing evictable: stop accepting until a connection becomes
        // idle or closes. Newcomers wait in the kernel's backlog meanwhile.
        let ready = wait_for_slot(server, shutdown.as_mut(), &mut busy_log, || {
            server.has_free_slot() || server.has_evictable()
        })
        .await;
        if !ready {
            return;
        }

        let accepted = tokio::select! {
            biased;
            () = shutdown.as_mut() => return,
            accepted = listener.accept() => accepted,
        };

        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                // Make room: evict the longest-idle connection. If every held connection
                // became busy while we waited in `accept`, hold this one (unserved, like the
                // backlog would) until a slot frees up.
                let mut evicted = false;
                let ready = wait_for_slot(server, shutdown.as_mut(), &mut busy_log, || {
                    if server.has_free_slot() {
                        return true;
                    }
                    evicted = server.evict_idlest();
                    evicted
                })
                .await;
                if !ready {
                    return;
                }
                if evicted && let Some(suppressed) = evict_log.ready() {
                    tracing::warn!(
                        max_connections = server.max_connections,
                        evictions_since_last_log = suppressed + 1,
                        "connection limit reached; closing the longest-idle connections to admit new ones"
                    );
                }
                spawn_connection(server, stream, peer, app, tasks);
            }
            Err(error) if is_connection_error(&error) => {
                tracing::debug!(%error, "accept failed for one connection");
            }
            Err(error) => {
                let fd_exhausted = is_fd_exhaustion(&error);
                let evicted = fd_exhausted && server.evict_idlest();
                if let Some(suppressed) = error_log.ready() {
                    tracing::error!(
                        %error,
                        fd_exhausted,
                        evicted_idle_connection = evicted,
                        backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        suppressed,
                        "accept failed; retrying after a pause"
                    );
                }
                let stop = tokio::select! {
                    biased;
                    () = shutdown.as_mut() => true,
                    () = tokio::time::sleep(backoff) => false,
                };
                if stop {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Waits until `ready()` holds, re-checking whenever a connection goes idle or closes (and
/// every [`SLOT_RECHECK`] as a safety net). Returns false if `shutdown` completed first.
async fn wait_for_slot(
    server: &Server,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
    busy_log: &mut Throttle,
    mut ready: impl FnMut() -> bool,
) -> bool {
    if ready() {
        return true;
    }
    if let Some(suppressed) = busy_log.ready() {
        tracing::warn!(
            max_connections = server.max_connections,
            suppressed,
            "every connection has a request in flight; pausing accept"
        );
    }
    loop {
        let notified = server.slot_freed.notified();
        let mut notified = pin!(notified);
        notified.as_mut().enable();
        server.hot.accept_waiting.store(true, Ordering::SeqCst);
        if ready() {
            server.hot.accept_waiting.store(false, Ordering::SeqCst);
            return true;
        }
        let stop = tokio::select! {
            biased;
            () = shutdown.as_mut() => true,
            () = notified => false,
            () = tokio::time::sleep(SLOT_RECHECK) => false,
        };
        server.hot.accept_waiting.store(false, Ordering::SeqCst);
        if stop {
            return false;
        }
    }
}

// ---------------------------------------------------------------------------------------
// One connection
// ---------------------------------------------------------------------------------------

/// Why a connection task ended.
enum Ended {
    Finished(Result<(), hyper::Error>),
    HeaderTimeout,
    IdleTimeout,
    Evicted,
    Shutdown,
}

fn spawn_connection(server: &Arc<Server>, stream: TcpStream, peer: SocketAddr, app: &Router, tasks: &mut JoinSet<()>) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, %peer, "could not set TCP_NODELAY");
    }
    let shared = {
        let mut registry = server.registry();
        let id = registry.next_id;
        registry.next_id += 1;
        let shared = Arc::new(ConnShared {
            id,
            state: AtomicU64::new(pack(server.now_nanos(), PHASE_HEAD)),
            signal: Notify::new(),
            finished: AtomicBool::new(false),
            server: Arc::clone(server),
        });
        registry.conns.insert(id, Arc::clone(&shared));
        shared
    };
    let registration = Registration(Arc::clone(&shared));

    let service = {
        let app = app.clone();
        let shared = Arc::clone(&shared);
        let body_timeout = server.limits.body_timeout;
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let call = if shared.begin_request() {
                let guard = InFlight(Arc::clone(&shared));
                let request = prepare_request(request, peer, body_timeout);
                let mut app = app.clone();
                Some((guard, app.call(request)))
            } else {
                None
            };
            async move {
                let Some((guard, future)) = call else {
                    return Ok::<_, Infallible>(evicted_response());
                };
                let response = match future.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok(response.map(|body| TrackedBody { inner: body, _in_flight: Some(guard) }))
            }
        })
    };

    let io = TokioIo::new(ConnIo { tcp: Some(stream), shared: Arc::clone(&shared) });
    let conn = server.http.serve_connection(io, service);
    let server = Arc::clone(server);
    tasks.spawn(async move {
        let _registration = registration;
        let ended = drive(conn, &shared, &server).await;
        match ended {
            Ended::Finished(Ok(())) => {}
            Ended::Finished(Err(error)) => {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            Ended::HeaderTimeout => {
                tracing::debug!(%peer, "request head not received in time; closing connection");
            }
            Ended::IdleTimeout => tracing::debug!(%peer, "idle keep-alive connection closed"),
            Ended::Evicted => tracing::debug!(%peer, "idle connection evicted at the connection limit"),
            Ended::Shutdown => tracing::debug!(%peer, "connection closed for shutdown"),
        }
    });
}

/// Runs one connection until hyper finishes it, a deadline passes, it is evicted, or
/// shutdown closes it. Dropping the connection (on return) closes the socket.
async fn drive<S>(
    conn: hyper::server::conn::http1::Connection<TokioIo<ConnIo>, S>,
    shared: &ConnShared,
    server: &Server,
) -> Ended
where
    S: hyper::service::HttpService<Incoming, ResBody = TrackedBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = pin!(conn);
    let mut signal = pin!(shared.signal.notified());
    let mut signalled = false;
    let mut registered: Option<std::task::Waker> = None;
    let initial = server.deadline(shared.state.load(Ordering::Relaxed));
    let mut sleep: Pin<&mut Sleep> = pin!(tokio::time::sleep_until(initial.unwrap_or_else(far_future)));
    // The deadline the sleep is set to. Deadlines only move later while a phase lasts, so
    // the sleep is reset lazily: when a deadline moves earlier, or when it fires early.
    let mut armed = initial;
    let mut graceful = false;

    poll_fn(|cx: &mut Context<'_>| {
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                shared.finished.store(result.is_ok(), Ordering::Release);
                return Poll::Ready(Ended::Finished(result));
            }
            // The signal only has to wake this task (eviction and shutdown are read from the
            // state below), so it is polled only to register a new waker: polling it again
            // with the same waker would take its lock on every wake-up for nothing.
            if !signalled && !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                registered = Some(cx.waker().clone());
                signalled = signal.as_mut().poll(cx).is_ready();
            }
            let state = shared.state.load(Ordering::Acquire);
            let phase = state & PHASE_MASK;
            if phase == PHASE_EVICTED {
                return Poll::Ready(Ended::Evicted);
            }
            if !graceful && server.hot.shutting_down.load(Ordering::Acquire) {
                if phase == PHASE_HEAD {
                    // The app has not seen this request: close now.
                    return Poll::Ready(Ended::Shutdown);
                }
                // Idle: hyper closes at once (after flushing). Busy: the response finishes
                // with `Connection: close`, then hyper closes.
                graceful = true;
                conn.as_mut().graceful_shutdown();
                continue;
            }
            let Some(deadline) = server.deadline(state) else {
                // Busy: no connection deadline. A pending sleep may still wake us once,
                // which is harmless.
                return Poll::Pending;
            };
            if armed.is_none_or(|a| deadline < a) {
                sleep.as_mut().reset(deadline);
                armed = Some(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(if phase == PHASE_HEAD { Ended::HeaderTimeout } else { Ended::IdleTimeout });
            }
            // Fired for an older, earlier deadline: re-arm and poll again to register.
            sleep.as_mut().reset(deadline);
            armed = Some(deadline);
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    })
    .await
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_hours(24 * 365)
}

fn prepare_request(request: Request<Incoming>, peer: SocketAddr, body_timeout: Duration) -> Request<Body> {
    let (mut parts, incoming) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let deadline =
        if http_body::Body::is_end_stream(&incoming) { None } else { Instant::now().checked_add(body_timeout) };
    let body = Body::new(TimedBody { inner: incoming, deadline, sleep: None, timed_out: false });
    Request::from_parts(parts, body)
}

/// Answer for a request that raced with the eviction of its connection.
fn evicted_response() -> Response<TrackedBody> {
    let mut response = Response::new(TrackedBody { inner: Body::from("server busy, retry\n"), _in_flight: None });
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The TCP stream, noting when bytes arrive on an idle keep-alive connection. (An `Option` only
/// so that dropping it can hand the socket to [`linger`].)
struct ConnIo {
    tcp: Option<TcpStream>,
    shared: Arc<ConnShared>,
}

impl ConnIo {
    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.tcp.as_mut().ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

/// Ready with the error when the socket is gone, else the stream.
macro_rules! tcp_or_ready {
    ($io:expr) => {
        match $io.tcp() {
            Ok(tcp) => Pin::new(tcp),
            Err(error) => return Poll::Ready(Err(error)),
        }
    };
}

impl AsyncRead for ConnIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = tcp_or_ready!(this).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.shared.on_bytes_read();
        }
        result
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        tcp_or_ready!(self.get_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        tcp_or_ready!(self.get_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tcp_or_ready!(self.get_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tcp_or_ready!(self.get_mut()).poll_shutdown(cx)
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if let Some(tcp) = self.tcp.take()
            && self.shared.finished.load(Ordering::Acquire)
        {
            linger(tcp);
        }
    }
}

/// How long a closed connection's unread input is drained at most, and how much of it.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// A lingering close. A socket closed while the client's bytes wait unread in it (the rest of
/// a body answered 413 before it all came) makes the kernel send a reset, and the client may
/// then lose the answer it was already sent. hyper has written its answer and shut the socket
/// for writing; when input is waiting, this drains it, for up to [`LINGER_TIME`] and
/// [`LINGER_BYTES`], before closing. A socket with nothing waiting closes at once.
fn linger(tcp: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    match tcp.try_read(&mut buffer) {
        Ok(n) if n > 0 => {}
        _ => return,
    }
    tokio::spawn(async move {
        let mut drained = 0;
        let drain = async {
            while drained < LINGER_BYTES && tcp.readable().await.is_ok() {
                match tcp.try_read(&mut buffer) {
                    // The client is done (or gone).
                    Ok(0) => break,
                    Ok(n) => drained += n,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes while more data
/// is awaited. The timer is only created if the body actually has to be waited for.
struct TimedBody {
    inner: Incoming,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Box::new(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(deadline) = this.deadline else { return Poll::Pending };
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.timed_out = true;
                    this.sleep = None;
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.timed_out { SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}

/// The application's response body, holding the connection busy until hyper has taken all
/// of it (or dropped it).
struct TrackedBody {
    inner: Body,
    _in_flight: Option<InFlight>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
