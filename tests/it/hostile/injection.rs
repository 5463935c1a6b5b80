//! Explicit injection cases: hostile request ids; CR, LF and NUL in names and event fields;
//! CR/LF in webhook URLs followed to a real delivery; URLs that grow past 2048 characters once
//! encoded.

use std::time::Duration;

use axum::http::{HeaderValue, Method};
use serde_json::{Value, json};

use super::harness::{Harness, assert_error, build, check_stored_url, sane_request_id};
use crate::helpers::{ACME_KEY, Received, Receiver, TestApp};

/// A request id the relay does not keep is replaced with a new UUID.
#[test]
fn hostile_request_ids_are_replaced() {
    let harness = Harness::start();
    let route = harness.route(Method::GET, "/api/webhooks");
    let long = "a".repeat(129);
    let ids: [&[u8]; 9] = [b"", b" ", long.as_bytes(), b"a b", b"\xc3\xbc", b"\xff", b"id\tx", b"../x", b"ok-id_1.2"];
    for id in ids {
        let request = route.request("/api/webhooks").header("x-request-id", HeaderValue::from_bytes(id).unwrap());
        let reply = harness.exchange(route, build(request, "").unwrap()).unwrap_or_else(|e| panic!("{e}"));
        let answered = reply.headers["x-request-id"].to_str().unwrap();
        if sane_request_id(std::str::from_utf8(id).unwrap_or_default()) {
            assert_eq!(answered.as_bytes(), id);
        } else {
            assert!(uuid::Uuid::parse_str(answered).is_ok(), "{answered}");
        }
    }
}

/// No header of a delivery is `X-Injected`, and none holds CR, LF or NUL.
fn assert_no_injected_header(request: &Received) {
    assert!(!request.headers.contains_key("x-injected"), "{:?}", request.headers);
    for (name, value) in &request.headers {
        assert!(!value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)), "{name}: {value:?}");
    }
}

/// CR, LF and NUL in a webhook's name and in an event's name and source are kept in the JSON
/// (escaped), never reflected into a header of the response or of the delivery; in an event
/// type they are refused.
#[tokio::test]
async fn control_characters_in_names_stay_in_json() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "0")]).await;
    let receiver = Receiver::start().await;
    let name = "evil\r\nX-Injected: yes\u{0}name";
    let response = app
        .http
        .post(app.url("/api/webhooks"))
        .header("x-api-key", ACME_KEY)
        .json(&json!({"name": format!(" {name}\r\n"), "url": receiver.url(), "eventTypes": ["job.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(!response.headers().contains_key("x-injected"), "{:?}", response.headers());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["name"], name, "kept as sent, trimmed");

    let event = json!({
        "eventType": "job.created",
        "eventName": "job\r\nX-Injected: yes\u{0}",
        "source": "svc\r\nX-Injected: yes",
        "payload": {"k\r\nX-Injected: yes": "v\u{0}\r\n"},
    });
    let response = app.post_event(event.clone()).await;
    assert_eq!(response.status(), 202);
    assert!(!response.headers().contains_key("x-injected"));

    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_no_injected_header(&delivered[0]);
    let body = delivered[0].json();
    assert_eq!((&body["eventName"], &body["data"]), (&event["eventName"], &event["payload"]));

    for event_type in ["job.created\r\n", "job.created\u{0}", "job\r\n.created"] {
        let response = app.post_event(json!({"eventType": event_type, "eventName": "x", "payload": {}})).await;
        assert_eq!(response.status(), 422, "{event_type:?}");
        let (status, _) = app
            .api(
                reqwest::Method::POST,
                "/api/webhooks",
                ACME_KEY,
                Some(json!({"name": "x", "url": receiver.url(), "eventTypes": [event_type]})),
            )
            .await;
        assert_eq!(status, 422, "{event_type:?}");
    }
    app.stop().await;
}

/// A URL within 2048 characters as sent that grows past them once percent-encoded is refused,
/// on create and on update.
#[test]
fn a_url_longer_than_2048_characters_once_encoded_is_refused() {
    let harness = Harness::start();
    let url = format!("http://{}/{}", harness.receiver_host(), "é".repeat(1000));
    assert!(url.len() <= 2048);
    let create = harness.route(Method::POST, "/api/webhooks");
    let body = json!({"name": "long", "url": url, "eventTypes": ["job.created"]}).to_string();
    let reply = harness.exchange(create, build(create.request("/api/webhooks"), body).unwrap()).unwrap();
    assert_error(&reply, 422, "validation_failed");
    assert_eq!(reply.json()["error"]["details"][0]["field"], "url");
    let update = harness.route(Method::PUT, "/api/webhooks/{id}");
    let body = json!({ "url": url }).to_string();
    let reply = harness.exchange(update, build(update.request(&update.path()), body).unwrap()).unwrap();
    assert_error(&reply, 422, "validation_failed");
}

/// Registers a webhook named "crlf" at `url` for acme.
async fn register(app: &TestApp, url: &str) -> (reqwest::StatusCode, Value) {
    app.api(
        reqwest::Method::POST,
        "/api/webhooks",
        ACME_KEY,
        Some(json!({"name": "crlf", "url": url, "eventTypes": ["job.created"]})),
    )
    .await
}

/// CR/LF in a webhook URL, raw or percent-encoded: refused in the host; elsewhere stored
/// percent-encoded (raw CR, LF and tab are dropped, as the URL standard says), and the
/// delivery arrives with no header split off.
#[tokio::test]
async fn crlf_in_webhook_urls_never_splits_a_delivery_header() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "0")]).await;
    let receiver = Receiver::start().await;
    let base = receiver.url();
    let accepted = [
        format!("{base}/%0d%0aX-Injected:%20yes"),
        format!("{base}\r\nX-Injected: yes"),
        format!("{base}?q=%0d%0aX-Injected:%20yes"),
        format!("{base}?q=\r\nX-Injected: yes\r\n\r\nGET / HTTP/1.1"),
        format!("{base}/a b\tc\u{0}d"),
    ];
    for url in &accepted {
        let (status, body) = register(&app, url).await;
        assert_eq!(status, 201, "{url:?}: {body}");
        let stored = body["data"]["url"].as_str().unwrap();
        check_stored_url(stored).unwrap_or_else(|e| panic!("{url:?}: {e}"));
        assert!(stored.starts_with(&base), "{stored}");
    }
    for url in [
        format!("http://{}%0d%0aX-Injected:%20yes/", receiver.addr),
        format!("http://127.0.0.1\r\nX-Injected: yes:{}/", receiver.addr.port()),
        format!("http://{}:1%0d%0a/", receiver.addr.ip()),
    ] {
        let (status, body) = register(&app, &url).await;
        assert_eq!(status, 422, "{url:?}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "url");
    }

    app.send_event("job.created").await;
    let delivered = receiver.wait_for(accepted.len(), Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), accepted.len(), "one delivery per webhook, none split in two");
    for request in &delivered {
        assert_no_injected_header(request);
        assert_eq!(request.json()["eventType"], "job.created");
    }
    app.stop().await;
}
