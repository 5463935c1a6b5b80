//! Receivers that misbehave: too slow, resetting, erroring, redirecting, answering with endless,
//! huge or trickling bodies or endless headers, and TLS that fails. Each outcome is the one the
//! README's "Delivery semantics" documents, read back from the delivery log, and the attempt
//! always ends within `WEBHOOK_TIMEOUT`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::helpers::{ACME_KEY, Receiver, Reply, TestApp};

/// Every test here runs with a short timeout, so a hang shows as a failed test, not a slow one.
const TIMEOUT_MS: u64 = 500;
const TIMEOUT: Duration = Duration::from_millis(TIMEOUT_MS);
const WAIT: Duration = Duration::from_secs(10);
/// In the URLs, to check that no error repeats the query string.
const QUERY_SECRET: &str = "token=q-secret-0001";

async fn spawn_app() -> TestApp {
    TestApp::spawn_with(&[("WEBHOOK_TIMEOUT", &TIMEOUT_MS.to_string())]).await
}

/// What one connection to a [`RawServer`] did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    /// The request head (request line and headers), if it arrived.
    pub(crate) head: String,
    /// Body bytes written before the relay went away or the script ended.
    pub(crate) written: usize,
    /// How long the connection lasted, from accept to the last write failing or the script ending.
    pub(crate) lasted: Duration,
}

/// A TCP server that runs `script` on each connection and records it (also used by `ssrf`).
#[derive(Clone)]
pub(crate) struct RawServer {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<Connection>>>,
}

impl RawServer {
    /// On 127.0.0.1, a free port.
    async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Connection> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    pub(crate) fn serve<F, Fut>(listener: TcpListener, script: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Connection> + Send + 'static,
    {
        let server =
            Self { addr: listener.local_addr().unwrap(), accepted: Arc::default(), connections: Arc::default() };
        let (accepted, connections, script) = (server.accepted.clone(), server.connections.clone(), Arc::new(script));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (connections, script) = (connections.clone(), script.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let mut record = script(stream).await;
                    record.lasted = started.elapsed();
                    connections.lock().await.push(record);
                });
            }
        });
        server
    }

    pub(crate) fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/hook?{QUERY_SECRET}", self.addr)
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections have finished their script; returns them.
    async fn finished(&self, n: usize, within: Duration) -> Vec<Connection> {
        crate::helpers::eventually(within, || async {
            let done = self.connections.lock().await.clone();
            (done.len() >= n).then_some(done)
        })
        .await
        .unwrap_or_else(|| panic!("{n} connections did not finish within {within:?}"))
    }
}

/// Reads a request's head and its `Content-Length` body; returns the head.
pub(crate) async fn read_request(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    let mut body = vec![0u8; length];
    let _ = stream.read_exact(&mut body).await;
    head
}

/// Writes `chunk` (after `head`) until the peer goes away or `limit` bytes are out, pausing
/// `pause` between writes.
async fn stream_body(
    stream: &mut (impl AsyncWrite + Unpin),
    head: &str,
    chunk: &[u8],
    pause: Duration,
    limit: usize,
) -> usize {
    if stream.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let mut written = 0;
    while written < limit {
        if stream.write_all(chunk).await.is_err() || stream.flush().await.is_err() {
            break;
        }
        written += chunk.len();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    written
}

/// A chunked-encoding chunk holding `data`.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

async fn register(app: &TestApp, url: &str) -> (String, String) {
    app.create_webhook(url, &["job.created"]).await
}

fn attempts(delivery: &Value) -> &Vec<Value> {
    delivery["attempts"].as_array().unwrap()
}

fn error_of(attempt: &Value) -> &str {
    attempt["error"].as_str().unwrap_or_else(|| panic!("no error in {attempt}"))
}

fn duration_of(attempt: &Value) -> Duration {
    Duration::from_millis(attempt["durationMs"].as_u64().unwrap())
}

/// No error an operator reads may repeat the URL's query string or the signing secret.
fn assert_no_secrets(delivery: &Value, secret: &str) {
    let text = delivery.to_string();
    assert!(!text.contains("q-secret-0001"), "the query string leaked into the log: {text}");
    assert!(!text.contains(secret), "the signing secret leaked into the log: {text}");
}

/// Every attempt of a delivery that used up its retries: no response, the error, within the
/// timeout (plus scheduling slack).
fn assert_failed_without_response(delivery: &Value, error_contains: &[&str]) {
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["attemptCount"], 3, "1 attempt + 2 retries: {delivery}");
    assert_eq!(delivery["lastStatusCode"], Value::Null);
    for attempt in attempts(delivery) {
        assert_eq!(attempt["statusCode"], Value::Null, "{attempt}");
        let error = error_of(attempt).to_ascii_lowercase();
        assert!(error_contains.iter().any(|e| error.contains(e)), "error {error:?} says none of {error_contains:?}");
        assert!(duration_of(attempt) <= TIMEOUT + Duration::from_millis(300), "{attempt}");
    }
    assert_eq!(delivery["lastError"], attempts(delivery)[2]["error"]);
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_times_out_every_attempt() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).delay(Duration::from_secs(2)));
    let (webhook_id, secret) = register(&app, &format!("{}?{QUERY_SECRET}", receiver.url())).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    assert_failed_without_response(&failed, &["timed out after 500 ms"]);
    for attempt in attempts(&failed) {
        assert_eq!(error_of(attempt), "timed out after 500 ms");
        assert!(duration_of(attempt) >= TIMEOUT - Duration::from_millis(5), "{attempt}");
        assert_eq!(attempt["responseBody"], Value::Null);
    }
    assert_eq!(receiver.received().len(), 3, "each attempt reached the receiver");
    assert_no_secrets(&failed, &secret);
    app.stop().await;
}

#[tokio::test]
async fn a_connection_reset_or_closed_fails_the_attempt_and_is_retried() {
    let app = spawn_app().await;
    // Reads the request, then closes with SO_LINGER 0: the relay gets a TCP RST.
    let reset = RawServer::start(|mut stream| async move {
        let head = read_request(&mut stream).await;
        stream.set_zero_linger().unwrap();
        drop(stream);
        Connection { head, ..Connection::default() }
    })
    .await;
    // Accepts and closes at once, before the request is read.
    let closed = RawServer::start(|stream| async move {
        drop(stream);
        Connection::default()
    })
    .await;
    let (reset_id, secret) = register(&app, &reset.url("http")).await;
    let (closed_id, _) = register(&app, &closed.url("http")).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&reset_id, &event_id, "failed").await;
    println!("reset: {}", attempts(&failed)[0]["error"]);
    assert_failed_without_response(&failed, &["connection reset"]);
    assert_no_secrets(&failed, &secret);
    let connections = reset.finished(3, WAIT).await;
    assert!(connections.iter().all(|c| c.head.starts_with("POST /hook?")), "{connections:?}");

    let failed = app.wait_for_delivery(&closed_id, &event_id, "failed").await;
    println!("closed: {}", attempts(&failed)[0]["error"]);
    assert_failed_without_response(&failed, &["connection closed", "connection reset"]);
    assert_eq!(closed.accepted(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_500_is_retried_then_failed_and_retry_after_is_ignored_on_it() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    // 3000 bytes of two-byte characters: the excerpt is cut at 1 KiB, between characters.
    let body = "é".repeat(1500);
    receiver.always(Reply::status(500).header("retry-after", "30").body(&body));
    let (webhook_id, secret) = register(&app, &receiver.url()).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    assert_eq!(failed["attemptCount"], 3);
    assert_eq!(failed["lastStatusCode"], 500);
    assert_eq!(failed["lastError"], "HTTP 500");
    for attempt in attempts(&failed) {
        assert_eq!(attempt["statusCode"], 500);
        assert_eq!(attempt["error"], "HTTP 500");
        let excerpt = attempt["responseBody"].as_str().unwrap();
        assert_eq!(excerpt.len(), 1024, "the excerpt is the first KiB");
        assert!(body.starts_with(excerpt));
    }
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps.iter().all(|gap| *gap < Duration::from_secs(1)), "Retry-After on a 500 was honoured: {gaps:?}");
    assert_no_secrets(&failed, &secret);
    app.stop().await;
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    // Whole seconds: 2 s from now is 1 to 2 s from when the relay reads it.
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    receiver.script([Reply::status(429).header("retry-after", &date)]);
    let (webhook_id, _) = register(&app, &receiver.url()).await;
    let event_id = app.send_event("job.created").await;

    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}, before Retry-After: {date}");
    assert!(gap < Duration::from_millis(2500), "retried after {gap:?}, Retry-After: {date}");
    let delivery = app.wait_for_delivery(&webhook_id, &event_id, "succeeded").await;
    assert_eq!(delivery["attemptCount"], 2);
    assert_eq!(attempts(&delivery)[0]["statusCode"], 429);
    assert_eq!(attempts(&delivery)[0]["error"], "HTTP 429");
    app.stop().await;
}

#[tokio::test]
async fn redirects_of_every_kind_are_failed_attempts_and_the_target_gets_nothing() {
    let app = spawn_app().await;
    let target = Receiver::start().await;
    let receiver = Receiver::start().await;
    receiver.script([301, 307, 308].map(|status| Reply::status(status).header("location", &target.url())));
    let (webhook_id, _) = register(&app, &receiver.url()).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    let statuses: Vec<&Value> = attempts(&failed).iter().map(|a| &a["statusCode"]).collect();
    assert_eq!(statuses, [&json!(301), &json!(307), &json!(308)]);
    let errors: Vec<&str> = attempts(&failed).iter().map(error_of).collect();
    assert_eq!(errors, ["HTTP 301", "HTTP 307", "HTTP 308"]);
    assert_eq!(receiver.received().len(), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(target.received().is_empty(), "a redirect was followed");
    app.stop().await;
}

/// `200`, then a body that never ends: the attempt keeps the first KiB and closes the
/// connection. A 2xx is a success; the body only feeds the log.
#[tokio::test]
async fn an_endless_body_after_a_200_succeeds_and_is_cut_after_the_excerpt() {
    let app = spawn_app().await;
    let server = RawServer::start(|mut stream| async move {
        let head = read_request(&mut stream).await;
        let response = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        let written = stream_body(&mut stream, response, &chunk(&[b'a'; 16 * 1024]), Duration::ZERO, usize::MAX).await;
        Connection { head, written, ..Connection::default() }
    })
    .await;
    let (webhook_id, _) = register(&app, &server.url("http")).await;
    let event_id = app.send_event("job.created").await;

    let delivery = app.wait_for_delivery(&webhook_id, &event_id, "succeeded").await;
    assert_eq!(delivery["attemptCount"], 1);
    let attempt = &attempts(&delivery)[0];
    assert_eq!(attempt["statusCode"], 200);
    assert_eq!(attempt["error"], Value::Null);
    assert_eq!(attempt["responseBody"], "a".repeat(1024));
    assert!(duration_of(attempt) < TIMEOUT, "the attempt waited for the endless body: {attempt}");
    // The relay closed the connection: the server's writes failed soon, and little was sent.
    let connection = &server.finished(1, Duration::from_secs(3)).await[0];
    assert!(connection.lasted < Duration::from_secs(2), "{connection:?}");
    assert!(connection.written < 32 << 20, "the relay kept reading: {} bytes", connection.written);
    println!("endless body: {} bytes written before the relay closed, in {:?}", connection.written, connection.lasted);
    app.stop().await;
}

/// A 50 MB body declared with `Content-Length`, behind a 500: every attempt keeps the first
/// KiB, ends at once and is retried.
#[tokio::test]
async fn a_huge_body_is_not_read_past_the_excerpt() {
    const SIZE: usize = 50 * 1024 * 1024;
    let app = spawn_app().await;
    let server = RawServer::start(|mut stream| async move {
        let head = read_request(&mut stream).await;
        let response = format!("HTTP/1.1 500 Internal Server Error\r\ncontent-length: {SIZE}\r\n\r\n");
        let written = stream_body(&mut stream, &response, &[b'x'; 64 * 1024], Duration::ZERO, SIZE).await;
        Connection { head, written, ..Connection::default() }
    })
    .await;
    let (webhook_id, _) = register(&app, &server.url("http")).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    assert_eq!(failed["attemptCount"], 3);
    for attempt in attempts(&failed) {
        assert_eq!(attempt["statusCode"], 500);
        assert_eq!(attempt["error"], "HTTP 500");
        assert_eq!(attempt["responseBody"], "x".repeat(1024));
        assert!(duration_of(attempt) < TIMEOUT, "{attempt}");
    }
    let connections = server.finished(3, Duration::from_secs(3)).await;
    for connection in &connections {
        assert!(connection.written < SIZE, "the whole 50 MB body was read: {connection:?}");
        assert!(connection.lasted < Duration::from_secs(2), "{connection:?}");
    }
    println!("huge body: {:?}", connections.iter().map(|c| c.written).collect::<Vec<_>>());
    app.stop().await;
}

/// One byte per 100 ms: the attempt ends at the timeout with what arrived. A 2xx already
/// received is a success (the receiver has the event); any other status stays a failure and
/// its error names the status first.
#[tokio::test]
async fn a_body_trickling_past_the_timeout_ends_the_attempt_at_the_timeout() {
    let app = spawn_app().await;
    let trickle = |status: &'static str| {
        move |mut stream: TcpStream| async move {
            let head = read_request(&mut stream).await;
            let response = format!("HTTP/1.1 {status}\r\ntransfer-encoding: chunked\r\n\r\n");
            let written = stream_body(&mut stream, &response, &chunk(b"z"), Duration::from_millis(100), 100).await;
            Connection { head, written, ..Connection::default() }
        }
    };
    let ok = RawServer::start(trickle("200 OK")).await;
    let unavailable = RawServer::start(trickle("503 Service Unavailable")).await;
    let (ok_id, _) = register(&app, &ok.url("http")).await;
    let (unavailable_id, _) = register(&app, &unavailable.url("http")).await;
    let event_id = app.send_event("job.created").await;

    let delivery = app.wait_for_delivery(&ok_id, &event_id, "succeeded").await;
    assert_eq!(delivery["attemptCount"], 1);
    let attempt = &attempts(&delivery)[0];
    assert_eq!(attempt["statusCode"], 200);
    assert_eq!(attempt["error"], "response body: timed out after 500 ms");
    let excerpt = attempt["responseBody"].as_str().unwrap();
    assert!((1..=6).contains(&excerpt.len()) && excerpt.chars().all(|c| c == 'z'), "{excerpt:?}");
    let took = duration_of(attempt);
    assert!(took >= TIMEOUT - Duration::from_millis(5) && took <= TIMEOUT + Duration::from_millis(300), "{took:?}");
    let connection = &ok.finished(1, Duration::from_secs(3)).await[0];
    assert!(connection.lasted < Duration::from_secs(2), "the relay kept the connection: {connection:?}");

    let failed = app.wait_for_delivery(&unavailable_id, &event_id, "failed").await;
    assert_eq!(failed["attemptCount"], 3);
    assert_eq!(failed["lastStatusCode"], 503);
    for attempt in attempts(&failed) {
        assert_eq!(attempt["statusCode"], 503);
        assert_eq!(attempt["error"], "HTTP 503 (response body: timed out after 500 ms)");
        assert!(duration_of(attempt) <= TIMEOUT + Duration::from_millis(300), "{attempt}");
    }
    app.stop().await;
}

/// Headers that never end: hyper's limit on the response head ends the attempt long before
/// the timeout.
#[tokio::test]
async fn endless_response_headers_fail_the_attempt_promptly() {
    let app = spawn_app().await;
    let server = RawServer::start(|mut stream| async move {
        let head = read_request(&mut stream).await;
        let header = format!("x-padding: {}\r\n", "p".repeat(1000));
        let written =
            stream_body(&mut stream, "HTTP/1.1 200 OK\r\n", header.as_bytes(), Duration::ZERO, 64 << 20).await;
        Connection { head, written, ..Connection::default() }
    })
    .await;
    let (webhook_id, _) = register(&app, &server.url("http")).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    println!("endless headers: {}", attempts(&failed)[0]["error"]);
    assert_failed_without_response(&failed, &["too large"]);
    for attempt in attempts(&failed) {
        assert!(duration_of(attempt) < TIMEOUT, "{attempt}");
    }
    let connections = server.finished(3, Duration::from_secs(3)).await;
    assert!(connections.iter().all(|c| c.written < 8 << 20), "{connections:?}");
    app.stop().await;
}

/// `https://` to a port that speaks plain HTTP: the handshake fails.
#[tokio::test]
async fn https_to_a_plain_http_port_fails_the_handshake() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (webhook_id, secret) = register(&app, &format!("https://{}/hook?{QUERY_SECRET}", receiver.addr)).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    println!("https to http: {}", attempts(&failed)[0]["error"]);
    assert_failed_without_response(&failed, &["tls handshake failed"]);
    assert!(receiver.received().is_empty(), "a request got through");
    assert_no_secrets(&failed, &secret);
    app.stop().await;
}

/// A TLS server whose certificate is self-signed: not trusted, nothing is sent.
#[tokio::test]
async fn a_self_signed_certificate_is_not_trusted() {
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::aws_lc_rs;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/it/fixtures");
    let certs = CertificateDer::pem_file_iter(format!("{fixtures}/self_signed_cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{fixtures}/self_signed_key.pem")).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let app = spawn_app().await;
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = RawServer::serve(listener, move |stream| {
        let (acceptor, handshakes) = (acceptor.clone(), counted.clone());
        async move {
            let Ok(mut tls) = acceptor.accept(stream).await else { return Connection::default() };
            handshakes.fetch_add(1, Ordering::SeqCst);
            let head = read_request(&mut tls).await;
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            Connection { head, ..Connection::default() }
        }
    });
    let (webhook_id, secret) = register(&app, &server.url("https")).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    println!("self-signed: {}", attempts(&failed)[0]["error"]);
    assert_failed_without_response(&failed, &["certificate"]);
    for attempt in attempts(&failed) {
        assert!(error_of(attempt).starts_with("TLS handshake failed: "), "{attempt}");
    }
    assert_eq!(server.accepted(), 3, "each attempt connected");
    assert_eq!(handshakes.load(Ordering::SeqCst), 0, "a handshake completed with an untrusted certificate");
    assert_no_secrets(&failed, &secret);

    // The same server, asked by hand, still fails the same way and leaves the delivery failed.
    let (status, body) =
        app.api(Method::POST, &format!("/api/webhooks/{webhook_id}/retry/{event_id}"), ACME_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "failed");
    assert!(error_of(&body["data"]["attempts"][3]).contains("certificate"), "{body}");
    app.stop().await;
}
