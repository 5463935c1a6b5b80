//! Explicit cases on sizes and on the socket: 10 MB bodies (in-process on every route, and
//! over TCP without sending them whole) and requests no HTTP client would send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use axum::http::Method;
use serde_json::Value;

use super::harness::{Harness, Route, assert_error, body_limit, build};
use crate::helpers::{ACME_KEY, SERVICE_TOKEN, TestApp};

const TEN_MB: usize = 10 * 1024 * 1024;

/// A valid-looking body of `size` bytes for `route`: its valid body with a long string in it.
fn big_body(harness: &Harness, route: &Route, size: usize) -> String {
    let valid = harness.valid_body_text(route);
    let head = valid.strip_suffix('}').unwrap_or("{");
    let comma = if head.len() > 1 { "," } else { "" };
    let prefix = format!(r#"{head}{comma}"blob":""#);
    format!("{prefix}{}\"}}", "a".repeat(size.saturating_sub(prefix.len() + 2)))
}

/// 10 MB bodies: 413 with the envelope on every route that reads a body; ignored elsewhere.
#[test]
fn ten_megabyte_bodies_are_413() {
    let harness = Harness::start();
    for route in &harness.routes {
        if !route.takes_body() && route.method != Method::GET {
            continue;
        }
        let body = big_body(&harness, route, TEN_MB);
        let reply = harness
            .exchange(route, build(route.request(&route.path()), body).unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
        if route.reads_body {
            assert_error(&reply, 413, "payload_too_large");
            let limit = body_limit(route).to_string();
            assert!(reply.json()["error"]["message"].as_str().unwrap().contains(&limit), "{}", reply.summary());
        }
    }
}

/// Over TCP, a body announced (or streamed) as 10 MB is refused once it passes the limit,
/// without the relay waiting for the rest.
#[tokio::test]
async fn a_ten_megabyte_body_is_refused_before_it_is_all_sent() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "0")]).await;
    let addr = app.relay.as_ref().unwrap().addr;
    let cases = [
        ("/api/events", format!("X-Service-Token: {SERVICE_TOKEN}"), 512 * 1024, 262_144),
        ("/api/webhooks", format!("X-Api-Key: {ACME_KEY}"), 128 * 1024, 65_536),
    ];
    for (path, credential, sent, limit) in cases {
        for chunked in [false, true] {
            let framing =
                if chunked { "Transfer-Encoding: chunked".to_owned() } else { format!("Content-Length: {TEN_MB}") };
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: relay\r\n{credential}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
            );
            let body = format!("{{\"name\":\"{}", "a".repeat(sent));
            let response = tokio::task::spawn_blocking(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                stream.write_all(head.as_bytes()).unwrap();
                // The relay may answer and close before all of this is sent: writing then fails
                // (a broken pipe), which is fine; the answer is what counts.
                let _sent: std::io::Result<()> = if chunked {
                    body.as_bytes().chunks(16 * 1024).try_for_each(|chunk| {
                        write!(stream, "{:x}\r\n", chunk.len())?;
                        stream.write_all(chunk)?;
                        stream.write_all(b"\r\n")
                    })
                } else {
                    stream.write_all(body.as_bytes())
                };
                // The rest of the 10 MB is never sent: the answer must come anyway.
                let mut response = Vec::new();
                let mut buffer = [0u8; 4096];
                while !ends_response(&response) {
                    match stream.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => response.extend_from_slice(&buffer[..n]),
                        Err(e) => panic!("no answer to {path} while its body was pending: {e}"),
                    }
                }
                String::from_utf8_lossy(&response).into_owned()
            })
            .await
            .unwrap();
            assert!(response.starts_with("HTTP/1.1 413"), "{path} chunked={chunked}: {response}");
            assert!(response.to_ascii_lowercase().contains("\r\nx-request-id: "), "{response}");
            let envelope: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
            assert_eq!(envelope["error"]["code"], "payload_too_large");
            assert!(envelope["error"]["message"].as_str().unwrap().contains(&limit.to_string()), "{envelope}");
        }
    }
    app.stop().await;
}

/// Requests no HTTP client would send: CR or NUL inside a header, a space in a header name or
/// before its colon, obs-fold, 500 headers, a 100 KB header (relay-local takes heads of up to
/// 64 KiB), a bad request line, conflicting lengths. The HTTP server refuses them with a 400
/// (431 for the headers) before the relay's code runs, so without the envelope or a request
/// id. What it lets through (a lone LF ends a header line, as RFC 9112 allows; a 32 KB header;
/// a broken chunk) the relay answers as usual, with the envelope. Either way the relay goes on.
#[tokio::test]
async fn malformed_requests_on_the_wire_are_refused_or_answered() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "0")]).await;
    let addr = app.relay.as_ref().unwrap().addr;
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let refused: Vec<Vec<u8>> = vec![
        "GET /health HTTP/1.1\r\nHost: r\r\nX-Request-Id: a\rX-Injected: yes\r\n\r\n".into(),
        "GET /health HTTP/1.1\r\nHost: r\r\nX-Request-Id: a\0b\r\n\r\n".into(),
        "GET /health HTTP/1.1\r\nHost: r\r\nX Api-Key: a\r\n\r\n".into(),
        "GET /health HTTP/1.1\r\nHost: r\r\nX-Api-Key : a\r\n\r\n".into(),
        "GET /health HTTP/1.1\r\nHost: r\r\nX-Api-Key: a\r\n folded\r\n\r\n".into(),
        format!("GET /health HTTP/1.1\r\nHost: r\r\n{many}\r\n").into(),
        format!("GET /api/webhooks HTTP/1.1\r\nHost: r\r\nX-Api-Key: {}\r\n\r\n", "k".repeat(100_000)).into(),
        "GET /he alth HTTP/1.1\r\nHost: r\r\n\r\n".into(),
        b"GET /health\xff HTTP/1.1\r\nHost: r\r\n\r\n".to_vec(),
        "POST /api/events HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}".into(),
        "POST /api/events HTTP/1.1\r\nHost: r\r\nContent-Length: -1\r\n\r\n".into(),
    ];
    for request in refused {
        let shown = String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned();
        let response = exchange_raw(addr, request).await;
        assert!(
            response.starts_with("HTTP/1.1 400 ") || response.starts_with("HTTP/1.1 431 "),
            "{shown:?}: {response}"
        );
    }
    let answered = [
        "GET /api/webhooks HTTP/1.1\r\nHost: r\r\nX-Request-Id: a\nX-Injected: yes\r\nConnection: close\r\n\r\n"
            .to_owned(),
        format!(
            "GET /api/webhooks HTTP/1.1\r\nHost: r\r\nX-Api-Key: {}\r\nConnection: close\r\n\r\n",
            "k".repeat(32_000)
        ),
        format!(
            "POST /api/events HTTP/1.1\r\nHost: r\r\nX-Service-Token: {SERVICE_TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n"
        ),
    ];
    for request in answered {
        let response = exchange_raw(addr, request.clone().into_bytes()).await;
        let status: u16 = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        assert!((400..500).contains(&status), "{:.80?}: {response}", request);
        assert!(response.to_ascii_lowercase().contains("\r\nx-request-id: "), "{response}");
        let envelope: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
        assert_eq!(envelope["success"], false, "{response}");
    }
    let health = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the relay goes on");
    app.stop().await;
}

/// Writes `request` on a new connection and reads the answer until the server closes it.
async fn exchange_raw(addr: SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stream.write_all(&request);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap()
}

/// A whole HTTP/1.1 response with a Content-Length body has arrived.
fn ends_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
    });
    length.is_some_and(|n| body.len() >= n)
}
