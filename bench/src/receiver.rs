//! The webhook receiver the scenarios deliver to: an HTTP/1.1 server on 127.0.0.1 that records
//! every request by (webhook, `webhook-id`), answers 200 or, when told to, fails a share of
//! requests with 500 or answers late, and lets a scenario wait until every event has arrived.
//! And [`Unresponsive`], a receiver that takes connections and never answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::clock;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Share of requests answered 500, decided per (event, attempt) by a seeded hash, so a run
    /// is repeatable.
    pub fail_ratio: f64,
    /// Never fail an event more often than this: the attempt after is always answered 200. Set
    /// it to the relay's `WEBHOOK_MAX_RETRIES` and every event ends delivered.
    pub max_failures: u32,
    pub seed: u64,
    /// How long each answer waits after the request is recorded (a slow receiver, so that
    /// deliveries are in flight when a test kills the relay).
    pub delay: Duration,
}

impl Behaviour {
    pub const ALWAYS_OK: Self = Self { fail_ratio: 0.0, max_failures: 0, seed: 0, delay: Duration::ZERO };

    fn fails(&self, event_id: &str, attempt: u32) -> bool {
        if attempt >= self.max_failures || self.fail_ratio <= 0.0 {
            return false;
        }
        let mut hash = self.seed ^ 0xcbf2_9ce4_8422_2325 ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for byte in event_id.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        // A final mix so that nearby ids spread over the whole range.
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        (hash as f64 / u64::MAX as f64) < self.fail_ratio
    }
}

/// What the receiver saw of one event at one webhook.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// When each request arrived (harness nanoseconds).
    pub arrivals_ns: Vec<u64>,
    /// Requests answered 200.
    pub successes: u32,
    /// The payload's `seq` and `sentNs`.
    pub seq: u64,
    pub sent_ns: u64,
    /// When the first successful request arrived.
    pub delivered_ns: Option<u64>,
}

#[derive(Debug, Default)]
struct Seen {
    records: HashMap<(u32, String), Record>,
    requests: u64,
    failed: u64,
    delivered: u64,
    last_delivered_ns: u64,
    bad_requests: u64,
}

#[derive(Debug)]
struct Shared {
    behaviour: Behaviour,
    seen: Mutex<Seen>,
    progress: Notify,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running receiver. Webhook `n` is `{url}/hook/{n}`.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Totals at one point in time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub requests: u64,
    pub failed: u64,
    /// Distinct (webhook, event) pairs answered 200 at least once.
    pub delivered: u64,
    pub last_delivered_ns: u64,
    pub bad_requests: u64,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { behaviour, seen: Mutex::default(), progress: Notify::new() });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let shared = accepting.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn url(&self, webhook: u32) -> String {
        format!("http://{}/hook/{webhook}", self.addr)
    }

    pub fn totals(&self) -> Totals {
        let seen = self.shared.seen();
        Totals {
            requests: seen.requests,
            failed: seen.failed,
            delivered: seen.delivered,
            last_delivered_ns: seen.last_delivered_ns,
            bad_requests: seen.bad_requests,
        }
    }

    /// A copy of every record, keyed by (webhook, event id).
    pub fn records(&self) -> HashMap<(u32, String), Record> {
        self.shared.seen().records.clone()
    }

    /// Waits until `expected` distinct (webhook, event) pairs have been delivered, or until the
    /// deadline; true if they all were.
    pub async fn wait_for(&self, expected: u64, deadline: Instant) -> bool {
        loop {
            let notified = self.shared.progress.notified();
            if self.totals().delivered >= expected {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                return self.totals().delivered >= expected;
            }
        }
    }

    /// Waits until no request has arrived for `quiet`, at most `limit`: catches late duplicates.
    pub async fn settle(&self, quiet: Duration, limit: Duration) {
        let end = Instant::now() + limit;
        let mut last = self.totals().requests;
        while Instant::now() < end {
            tokio::time::sleep(quiet).await;
            let now = self.totals().requests;
            if now == last {
                return;
            }
            last = now;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let arrived = clock::now_ns();
    let webhook = request.uri().path().strip_prefix("/hook/").and_then(|n| n.parse::<u32>().ok());
    let event_id = request.headers().get("webhook-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = request.into_body().collect().await?.to_bytes();
    let (Some(webhook), Some(event_id)) = (webhook, event_id) else {
        shared.seen().bad_requests += 1;
        return Ok(answer(StatusCode::BAD_REQUEST));
    };
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    let data = &payload["data"];
    let status = {
        let mut seen = shared.seen();
        seen.requests += 1;
        let record = seen.records.entry((webhook, event_id.clone())).or_default();
        let attempt = u32::try_from(record.arrivals_ns.len()).unwrap_or(u32::MAX);
        record.arrivals_ns.push(arrived);
        record.seq = data["seq"].as_u64().unwrap_or_default();
        record.sent_ns = data["sentNs"].as_u64().unwrap_or_default();
        if shared.behaviour.fails(&event_id, attempt) {
            seen.failed += 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            record.successes += 1;
            let first = record.delivered_ns.is_none();
            record.delivered_ns.get_or_insert(arrived);
            if first {
                seen.delivered += 1;
                seen.last_delivered_ns = seen.last_delivered_ns.max(arrived);
            }
            StatusCode::OK
        }
    };
    shared.progress.notify_waiters();
    if !shared.behaviour.delay.is_zero() {
        tokio::time::sleep(shared.behaviour.delay).await;
    }
    Ok(answer(status))
}

/// A receiver that accepts every connection, reads what comes, and never answers: each request
/// holds its sender until the sender gives up. Webhook `n` is `{url}/hook/{n}`, as on
/// [`Receiver`]. Its connections close when it is dropped.
#[derive(Debug)]
pub struct Unresponsive {
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Unresponsive {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let counted = accepted.clone();
        let task = tokio::spawn(async move {
            // Owned here, so that aborting this task closes every connection it holds.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                while connections.try_join_next().is_some() {}
                connections.spawn(async move {
                    let mut buffer = vec![0; 16 * 1024];
                    // Until the sender closes it: read, discard, never write.
                    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
                });
            }
        });
        Ok(Self { addr, accepted, task })
    }

    pub fn url(&self, webhook: u32) -> String {
        format!("http://{}/hook/{webhook}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Unresponsive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_share_is_close_to_the_ratio_and_capped() {
        let behaviour = Behaviour { fail_ratio: 0.5, max_failures: 3, seed: 7, delay: Duration::ZERO };
        let ids: Vec<String> = (0..10_000).map(|i| format!("01a2-{i:08}")).collect();
        let failing = ids.iter().filter(|id| behaviour.fails(id, 0)).count();
        assert!((4_500..5_500).contains(&failing), "{failing}");
        assert!(ids.iter().all(|id| !behaviour.fails(id, 3)));
        assert_eq!(behaviour.fails("x", 1), behaviour.fails("x", 1));
        assert!(!Behaviour::ALWAYS_OK.fails("x", 0));
    }

    #[tokio::test]
    async fn an_unresponsive_receiver_takes_the_request_and_never_answers() {
        use tokio::io::AsyncWriteExt;

        let receiver = Unresponsive::start().await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(receiver.addr).await.unwrap();
        stream.write_all(b"POST /hook/0 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
        let mut byte = [0; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
        assert!(read.is_err(), "it answered: {read:?}");
        assert_eq!(receiver.connections(), 1);
        drop(receiver);
        // Dropped: the connection is closed.
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    }
}
