//! relay-local's HTTP server in front of the real relay (its router, `/health`, `/api/events`),
//! over real sockets on 127.0.0.1. The suite shows that:
//!
//! * thousands of clients that open a connection and trickle a request head (slowloris), or
//!   that sit on idle keep-alive connections, do not keep `/health` from answering a newcomer
//!   within 100 ms, and at `HTTP_MAX_CONNECTIONS` the longest-idle connections are closed to
//!   make room;
//! * `HTTP_IDLE_TIMEOUT`, `HTTP_HEADER_TIMEOUT` and `HTTP_BODY_TIMEOUT` close what they
//!   promise to close, when they promise to; a body that stops arriving is answered `408`
//!   with the relay's JSON error envelope, and nothing is stored;
//! * stopping the relay lets a delivery in progress finish and be logged, returns within
//!   `SHUTDOWN_TIMEOUT` even when a receiver never answers, and refuses new connections;
//! * the server hands the relay the client's address, so failed credentials are counted per
//!   address and an address over its limit is refused even with a good key.
//!
//! The tests run one at a time (they measure latency with thousands of sockets open).

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_core::domain::{DeliveryKey, DeliveryStatus, EventId, WebhookId};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{ACME_KEY, Receiver, Reply, SERVICE_TOKEN, TestApp, eventually};

/// One test at a time: each opens up to 4,000 sockets and measures latency.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the issue promises for `/health` next to a crowd of bad clients.
const HEALTH_WITHIN: Duration = Duration::from_millis(100);
/// Slack on the second-scale timeouts: the machine is shared.
const SLACK_LOW: Duration = Duration::from_millis(900);
const SLACK_HIGH: Duration = Duration::from_millis(2500);

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP
// ---------------------------------------------------------------------------------------

/// A response read off the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("EOF after {:?}", String::from_utf8_lossy(buf)),
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Reads one response (`Content-Length` or chunked body); bytes past it stay in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Resp> {
    let end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end;
        }
        read_more(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    let mut resp = Resp { status, headers, body: Vec::new() };
    buf.drain(..end + 4);
    if resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                read_more(stream, buf).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
            while buf.len() < line_end + 2 + size + 2 {
                read_more(stream, buf).await?;
            }
            resp.body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return Ok(resp);
            }
        }
    }
    let length: usize = resp.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < length {
        read_more(stream, buf).await?;
    }
    resp.body = buf.drain(..length).collect();
    Ok(resp)
}

/// `GET path` on a new connection: the response, and the time from connect to its last byte.
async fn get_fresh(addr: SocketAddr, path: &str) -> io::Result<(Resp, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await?;
    let resp = read_response(&mut stream, &mut Vec::new()).await?;
    Ok((resp, started.elapsed()))
}

/// Waits for the server to close `stream`: how long that took, or what happened instead.
async fn wait_closed(stream: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
        Ok(Ok(0)) => Ok(started.elapsed()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Ok(started.elapsed()),
        Ok(Ok(n)) => Err(format!("got {n} bytes instead of EOF: {:?}", String::from_utf8_lossy(&chunk[..n]))),
        Ok(Err(e)) => Err(format!("read error {e}")),
        Err(_) => Err(format!("still open after {limit:?}")),
    }
}

/// Whether the server has closed this (non-blocking) socket; a direct `read`, so no reactor is
/// involved.
fn closed_now(stream: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// 20 new connections in a row, each `GET /health`; each must be answered in full within
/// [`HEALTH_WITHIN`] of connecting.
async fn assert_health_fast(addr: SocketAddr, what: &str) {
    // The crowd was just opened: the first request also shows that the server has accepted it
    // all (the listen queue is first in, first out). Not measured, but shown.
    let (resp, took) = tokio::time::timeout(Duration::from_secs(10), get_fresh(addr, "/health"))
        .await
        .unwrap_or_else(|_| panic!("{what}: /health did not answer within 10 s"))
        .unwrap_or_else(|e| panic!("{what}: /health failed: {e}"));
    assert_eq!(resp.status, 200, "{what}: {resp:?}");
    eprintln!("{what}: first /health (after the crowd arrived) took {took:?}");

    let mut times = Vec::new();
    for i in 0..20 {
        let (resp, took) = tokio::time::timeout(Duration::from_secs(5), get_fresh(addr, "/health"))
            .await
            .unwrap_or_else(|_| panic!("{what}: /health #{i} hung (times so far {times:?})"))
            .unwrap_or_else(|e| panic!("{what}: /health #{i} failed: {e} (times so far {times:?})"));
        assert_eq!(resp.status, 200, "{what}: /health #{i}: {resp:?}");
        assert_eq!(resp.json()["data"]["status"], "healthy", "{what}: {resp:?}");
        times.push(took);
    }
    let worst = times.iter().max().copied().unwrap_or_default();
    eprintln!("{what}: 20 x /health, worst {worst:?}, all {times:?}");
    assert!(
        times.iter().all(|t| *t < HEALTH_WITHIN),
        "{what}: a /health took longer than {HEALTH_WITHIN:?} from connect to the end of the response: {times:?}"
    );
}

/// Raises the open-file limit for thousands of sockets. False (with the reason printed) when the
/// hard limit is too low for the test; under `CI=true` that fails instead.
fn enough_descriptors(needed: u64) -> bool {
    let raised = relay_local::serve::raise_fd_limit();
    let limit = raised.or_else(|| rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft));
    match limit {
        Some(limit) if limit < needed => {
            let reason = format!(
                "skipped: the open-file limit is {limit} even after raising it to the hard limit; this test needs about {needed}"
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: {reason}");
            eprintln!("{reason}");
            false
        }
        _ => true,
    }
}

fn relay_addr(app: &TestApp) -> SocketAddr {
    app.relay.as_ref().expect("relay running").addr
}

// ---------------------------------------------------------------------------------------
// Many clients
// ---------------------------------------------------------------------------------------

const SLOWLORIS: usize = 2000;

/// `n` connections that each send part of a request head and stop; non-blocking, so that
/// [`closed_now`] can look at them. Blocking sockets in a blocking thread, so the runtime (which
/// runs the relay) is left alone.
fn open_slowloris(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")?;
        stream.set_nonblocking(true)?;
        conns.push(stream);
    }
    Ok(conns)
}

/// Opens the slowloris crowd in waves of [`WAVE`], each followed by a `GET /health` that shows
/// the server has accepted the wave (the listen queue is first in, first out). Without the
/// pause the crowd outruns `accept` in this debug build and overflows the listen backlog (128,
/// tokio's default), and the kernel drops SYNs: each drop stalls a connect for a second, and
/// the crowd takes longer to open than the 10 s header timeout it is meant to sit in.
async fn open_crowd(addr: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    const WAVE: usize = 100;
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let wave = WAVE.min(n - conns.len());
        let opened = tokio::task::spawn_blocking(move || open_slowloris(addr, wave))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("opening slowloris connection {}..{}: {e}", conns.len(), conns.len() + wave));
        conns.extend(opened);
        let (resp, _) = tokio::time::timeout(Duration::from_secs(10), get_fresh(addr, "/health"))
            .await
            .unwrap_or_else(|_| panic!("/health hung after {} slowloris connections", conns.len()))
            .unwrap_or_else(|e| panic!("/health after {} slowloris connections: {e}", conns.len()));
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    conns
}

async fn slowloris(max_connections: Option<usize>) {
    let _serial = SERIAL.lock().await;
    if !enough_descriptors(4_500) {
        return;
    }
    let cap = max_connections.map(|n| n.to_string());
    let vars: Vec<(&str, &str)> = cap.iter().map(|n| ("HTTP_MAX_CONNECTIONS", n.as_str())).collect();
    let app = TestApp::spawn_with(&vars).await;
    let addr = relay_addr(&app);
    let what = format!(
        "{SLOWLORIS} slowloris connections, HTTP_MAX_CONNECTIONS={}",
        cap.as_deref().unwrap_or("4096 (default)")
    );

    let opened_at = Instant::now();
    let conns = open_crowd(addr, SLOWLORIS).await;
    eprintln!("{what}: opened in {:?}", opened_at.elapsed());

    assert_health_fast(addr, &what).await;

    match max_connections {
        None => {
            // Under the cap nothing is evicted, and the 10 s header timeout has not run out.
            let closed: Vec<usize> = (0..conns.len()).filter(|&i| closed_now(&conns[i])).collect();
            let age = opened_at.elapsed();
            eprintln!("{what}: {} closed, {age:?} after the first was opened", closed.len());
            if age < Duration::from_secs(9) {
                assert!(closed.is_empty(), "{what}: closed under the cap before the header timeout: {closed:?}");
            }
        }
        Some(cap) => {
            // Over the cap: each newcomer displaced the longest-idle connection, so the oldest
            // ones were closed and the newest are still held.
            let want = SLOWLORIS - cap;
            let closed = eventually(Duration::from_secs(3), || async {
                let closed: Vec<usize> = (0..conns.len()).filter(|&i| closed_now(&conns[i])).collect();
                (closed.len() >= want).then_some(closed)
            })
            .await;
            let closed = closed.unwrap_or_else(|| {
                let n = conns.iter().filter(|c| closed_now(c)).count();
                panic!("{what}: only {n} connections were closed; at least {want} had to be evicted")
            });
            eprintln!(
                "{what}: {} closed by eviction (first {:?}, last {:?})",
                closed.len(),
                closed.first(),
                closed.last()
            );
            let newest = SLOWLORIS - cap + 100..SLOWLORIS;
            let wrongly: Vec<usize> = closed.iter().copied().filter(|i| newest.contains(i)).collect();
            assert!(
                wrongly.is_empty(),
                "{what}: evicted some of the newest connections instead of the oldest: {wrongly:?}"
            );
        }
    }
    drop(conns);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_slow_health_under_the_default_cap() {
    slowloris(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_over_the_cap_are_evicted_oldest_first() {
    slowloris(Some(1000)).await;
}

/// `n` keep-alive connections that have each had one `GET /health` answered, with the time
/// each answer arrived.
async fn idle_clients(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connection {i}: {e}"));
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let resp = read_response(&mut stream, &mut Vec::new()).await.unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(resp.status, 200, "connection {i}: {resp:?}");
        assert_ne!(resp.header("connection"), Some("close"), "connection {i} not kept alive: {resp:?}");
        conns.push((stream, Instant::now()));
    }
    conns
}

const IDLE: usize = 1100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_slow_health_and_are_closed_after_the_idle_timeout() {
    let _serial = SERIAL.lock().await;
    if !enough_descriptors(2 * IDLE as u64 + 300) {
        return;
    }

    // Default settings: 1,100 idle keep-alive connections, and /health is as fast as ever.
    let app = TestApp::spawn().await;
    let addr = relay_addr(&app);
    let started = Instant::now();
    let conns = idle_clients(addr, IDLE).await;
    eprintln!("{IDLE} idle keep-alive connections opened in {:?}", started.elapsed());
    assert_health_fast(addr, &format!("{IDLE} idle keep-alive connections")).await;
    let conns: Vec<std::net::TcpStream> = conns.into_iter().map(|(c, _)| c.into_std().unwrap()).collect();
    let closed = conns.iter().filter(|c| closed_now(c)).count();
    assert_eq!(closed, 0, "idle connections closed well before HTTP_IDLE_TIMEOUT (60 s)");
    drop(conns);
    app.stop().await;

    // HTTP_IDLE_TIMEOUT=1: the server closes each about a second after its answer.
    let app = TestApp::spawn_with(&[("HTTP_IDLE_TIMEOUT", "1")]).await;
    let conns = idle_clients(relay_addr(&app), IDLE).await;
    let waits: Vec<_> = conns
        .into_iter()
        .map(|(mut stream, idle_since)| {
            tokio::spawn(async move {
                let limit = Duration::from_secs(5).saturating_sub(idle_since.elapsed());
                wait_closed(&mut stream, limit).await.map(|_| idle_since.elapsed())
            })
        })
        .collect();
    let mut idle_for = Vec::with_capacity(waits.len());
    let mut failures = Vec::new();
    for (i, wait) in waits.into_iter().enumerate() {
        match wait.await.unwrap() {
            Ok(took) => idle_for.push(took),
            Err(e) => failures.push(format!("connection {i}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "HTTP_IDLE_TIMEOUT=1: {} connections not closed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let min = idle_for.iter().min().copied().unwrap_or_default();
    let max = idle_for.iter().max().copied().unwrap_or_default();
    eprintln!("HTTP_IDLE_TIMEOUT=1: {IDLE} connections closed after {min:?} ..= {max:?} idle");
    assert!(min >= SLACK_LOW, "HTTP_IDLE_TIMEOUT=1: a connection was closed after only {min:?} idle");
    assert!(max <= SLACK_HIGH, "HTTP_IDLE_TIMEOUT=1: a connection was still open {max:?} after going idle");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_timeout_closes_a_partial_head_and_a_silent_connection() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT", "1")]).await;
    let addr = relay_addr(&app);

    let partial = async {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        wait_closed(&mut stream, Duration::from_secs(5)).await.map(|_| started.elapsed())
    };
    let silent = async {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        wait_closed(&mut stream, Duration::from_secs(5)).await.map(|_| started.elapsed())
    };
    let (partial, silent) = tokio::join!(partial, silent);
    eprintln!("HTTP_HEADER_TIMEOUT=1: partial head closed after {partial:?}, silent connection after {silent:?}");
    for (what, outcome) in [("a partial request head", partial), ("a connection that sent nothing", silent)] {
        let took = outcome.unwrap_or_else(|e| panic!("HTTP_HEADER_TIMEOUT=1, {what}: {e}"));
        assert!(
            (SLACK_LOW..=SLACK_HIGH).contains(&took),
            "HTTP_HEADER_TIMEOUT=1, {what}: closed after {took:?}, expected about 1 s"
        );
    }

    // The server is fine afterwards.
    let (resp, _) = get_fresh(addr, "/health").await.unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_timeout_answers_408_with_the_error_envelope_and_stores_nothing() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn_with(&[("HTTP_BODY_TIMEOUT", "1")]).await;
    let addr = relay_addr(&app);

    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/events HTTP/1.1\r\nHost: x\r\nX-Service-Token: {SERVICE_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let first_bytes = br#"{"eventTyp"#;
    assert_eq!(first_bytes.len(), 10);
    stream.write_all(first_bytes).await.unwrap();
    let mut buf = Vec::new();
    let resp = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream, &mut buf))
        .await
        .unwrap_or_else(|_| panic!("HTTP_BODY_TIMEOUT=1: no answer within 5 s"))
        .unwrap_or_else(|e| panic!("HTTP_BODY_TIMEOUT=1: {e}"));
    let took = started.elapsed();
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    eprintln!("HTTP_BODY_TIMEOUT=1: {} after {took:?}: {body}", resp.status);
    assert_eq!(resp.status, 408, "{resp:?} {body}");
    assert!(
        (SLACK_LOW..=SLACK_HIGH).contains(&took),
        "HTTP_BODY_TIMEOUT=1: answered after {took:?}, expected about 1 s"
    );
    assert!(resp.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{resp:?}");
    let envelope = resp.json();
    assert_eq!(envelope["success"], false, "{envelope}");
    assert_eq!(envelope["error"]["code"], "request_timeout", "{envelope}");
    assert!(envelope["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{envelope}");
    // The rest of that body is never read: the connection is not reused.
    wait_closed(&mut stream, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("HTTP_BODY_TIMEOUT=1: connection after the 408: {e}"));

    let listed = app.http.get(app.url("/api/events")).header("x-service-token", SERVICE_TOKEN).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["data"], serde_json::json!([]), "an event was stored from a body that never arrived: {listed}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Stopping
// ---------------------------------------------------------------------------------------

fn delivery_key(event: &str, webhook: &str) -> DeliveryKey {
    DeliveryKey { event_id: EventId::parse(event).unwrap(), webhook_id: WebhookId::parse(webhook).unwrap() }
}

async fn assert_refused(addr: SocketAddr, what: &str) {
    match TcpStream::connect(addr).await {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("{what}: a new connection to {addr} after shutdown was not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_delivery_in_progress_finish() {
    let _serial = SERIAL.lock().await;
    let mut app = TestApp::spawn_with(&[("SHUTDOWN_TIMEOUT", "10")]).await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).delay(Duration::from_millis(1500)));
    let (webhook, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let arrived = Instant::now();

    let relay = app.relay.take().unwrap();
    let addr = relay.addr;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), relay.shutdown())
        .await
        .unwrap_or_else(|_| panic!("shutdown did not return within 20 s (SHUTDOWN_TIMEOUT=10)"));
    let took = started.elapsed();
    let since_arrival = arrived.elapsed();
    let delivery = app.backends.deliveries.get(delivery_key(&event, &webhook)).await.unwrap();
    eprintln!(
        "shutdown took {took:?} ({since_arrival:?} after the delivery reached the receiver); delivery {delivery:?}"
    );

    let delivery = delivery.expect("the delivery was never logged");
    assert_eq!(delivery.status, DeliveryStatus::Succeeded, "the delivery in progress did not finish: {delivery:?}");
    assert_eq!((delivery.attempt_count, delivery.last_status_code), (1, Some(200)), "{delivery:?}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}, over SHUTDOWN_TIMEOUT (10 s)");
    assert!(
        since_arrival >= Duration::from_millis(1400),
        "shutdown returned {since_arrival:?} after the delivery arrived, before the receiver answered (1.5 s)"
    );
    assert_eq!(receiver.received().len(), 1, "one delivery, no retry");
    assert_refused(addr, "SHUTDOWN_TIMEOUT=10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_shutdown_timeout() {
    let _serial = SERIAL.lock().await;
    let mut app = TestApp::spawn_with(&[
        ("SHUTDOWN_TIMEOUT", "1"),
        ("WEBHOOK_TIMEOUT", "15000"),
        ("QUEUE_VISIBILITY_TIMEOUT", "30"),
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).delay(Duration::from_secs(10)));
    let (webhook, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    receiver.wait_for(1, Duration::from_secs(10)).await;

    let relay = app.relay.take().unwrap();
    let addr = relay.addr;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), relay.shutdown())
        .await
        .unwrap_or_else(|_| panic!("shutdown did not return within 10 s (SHUTDOWN_TIMEOUT=1)"));
    let took = started.elapsed();
    let delivery = app.backends.deliveries.get(delivery_key(&event, &webhook)).await.unwrap();
    eprintln!("SHUTDOWN_TIMEOUT=1, receiver taking 10 s: shutdown took {took:?}; delivery {delivery:?}");
    assert!(took >= SLACK_LOW, "shutdown returned after {took:?}, without waiting for the delivery in progress");
    assert!(took <= Duration::from_secs(2), "shutdown took {took:?}, expected about 1 s (SHUTDOWN_TIMEOUT=1)");
    assert!(
        delivery.as_ref().is_some_and(|d| d.status != DeliveryStatus::Succeeded),
        "a delivery still waiting on its receiver cannot have succeeded: {delivery:?}"
    );
    assert_refused(addr, "SHUTDOWN_TIMEOUT=1").await;
}

// ---------------------------------------------------------------------------------------
// The client's address
// ---------------------------------------------------------------------------------------

/// `GET /api/webhooks` with `key`, from a socket bound to `from` (another loopback address).
async fn list_webhooks_from(from: std::net::IpAddr, to: SocketAddr, key: &str) -> io::Result<Resp> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let mut stream = socket.connect(to).await?;
    let request = format!("GET /api/webhooks HTTP/1.1\r\nHost: x\r\nX-Api-Key: {key}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    read_response(&mut stream, &mut Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_credentials_are_counted_per_client_address() {
    let _serial = SERIAL.lock().await;
    // The count is per clock minute: start well inside one.
    let (_, left) = relay_core::ports::minute_window();
    if left < Duration::from_secs(5) {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
    let app = TestApp::spawn().await;

    let mut answers = Vec::new();
    for _ in 0..25 {
        let response =
            app.http.get(app.url("/api/webhooks")).header("x-api-key", "not-a-real-key-000001").send().await.unwrap();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or("?").to_owned());
        answers.push((response.status().as_u16(), retry_after));
    }
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses[..20], [401; 20], "the first 20 wrong keys are answered 401: {answers:?}");
    assert_eq!(statuses[20..], [429; 5], "past AUTH_FAILURE_LIMIT_PER_MINUTE (20) the address is refused: {answers:?}");
    for (_, retry_after) in &answers[20..] {
        let secs: u64 = retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("429 without a usable Retry-After: {answers:?}"));
        assert!((1..=60).contains(&secs), "Retry-After {secs}: {answers:?}");
    }

    // The address, not the key, is refused: the right key from 127.0.0.1 too. (Without the peer
    // address from the server the relay could not tell who to refuse.)
    let (status, body) = app.api(reqwest::Method::GET, "/api/webhooks", ACME_KEY, None).await;
    assert_eq!(status, 429, "the right key from the refused address: {body}");

    // Another address is counted apart.
    let other = std::net::IpAddr::from([127, 0, 0, 2]);
    match list_webhooks_from(other, relay_addr(&app), ACME_KEY).await {
        Ok(resp) => assert_eq!(resp.status, 200, "the right key from {other}, which made no failed attempt: {resp:?}"),
        Err(e) => eprintln!("skipped the check from {other}: cannot connect from that address here ({e})"),
    }
    app.stop().await;
}
