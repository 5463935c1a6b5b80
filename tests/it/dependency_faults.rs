//! A dependency going away and coming back while the relay runs: SQS or DynamoDB during
//! ingest (LocalStack and moto), PostgreSQL restarted under a stream of deliveries, Redis
//! flushed, cut and restored. Each dependency is reached through a [`Proxy`], so the shared
//! servers other tests use are never touched.
//!
//! What must hold: an answer for a dependency that is down is `503` with the error envelope
//! and `Retry-After`, within [`ANSWER_WITHIN`] (never `500`, never a hang); every event
//! answered `2xx` is delivered; the log never says `succeeded` for a request the receiver did
//! not get; and the relay recovers without a restart. Redis stopping for good is in
//! `degradation.rs` (`redis_stopping_mid_run_loses_nothing`).
//!
//! Layout: this module holds what the cases share; `aws` (SQS and DynamoDB during ingest),
//! `postgres` (a restart and killed sessions under a stream of deliveries) and `redis`
//! (flushed, cut and restored) hold the cases.

mod aws;
mod postgres;
mod redis;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, Receiver, SERVICE_TOKEN, TestApp, eventually};

/// The longest any request may take while a dependency is down or silent.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// How long deliveries may take to catch up once the dependency is back.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Runs `request`, failing the test if it takes longer than [`ANSWER_WITHIN`].
async fn bounded<T>(what: &str, request: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let Ok(answer) = tokio::time::timeout(ANSWER_WITHIN, request).await else {
        panic!("{what}: no answer within {ANSWER_WITHIN:?}");
    };
    if started.elapsed() > Duration::from_millis(500) {
        eprintln!("{what}: answered in {:?}", started.elapsed());
    }
    answer
}

/// The relay's answer for a dependency that is down: 503, `Retry-After`, the error envelope.
async fn assert_unavailable(response: reqwest::Response, what: &str) {
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(retry_after.as_deref(), Some("5"), "{what}: Retry-After");
    assert_eq!(body["success"], false, "{what}: {body}");
    assert_eq!(body["error"]["code"], "service_unavailable", "{what}: {body}");
    assert_eq!(body["error"]["details"], json!([]), "{what}: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().ends_with("is unavailable; try again shortly"),
        "{what}: {body}"
    );
}

fn event(name: &str) -> Value {
    json!({"eventType": "job.created", "eventName": name, "payload": {"name": name}, "source": "faults"})
}

async fn post(app: &TestApp, name: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app.http.post(app.url("/api/events")).header("x-service-token", SERVICE_TOKEN).json(&event(name));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    bounded(&format!("POST /api/events ({name})"), request.send()).await.unwrap()
}

/// The id of an event the relay accepted (202).
async fn accepted(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body["data"]["eventId"].as_str().unwrap().to_owned()
}

async fn api(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.http.request(method.clone(), app.url(path)).header("x-api-key", ACME_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    bounded(&format!("{method} {path}"), request.send()).await.unwrap()
}

async fn health(app: &TestApp) -> (u16, Value) {
    let response = bounded("GET /health", app.http.get(app.url("/health")).send()).await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["data"].clone())
}

/// Asserts `/health` answers `overall` (503 when unhealthy, else 200) with each of `down`
/// down and each of `up` up.
/// The report is shared for up to 2 s (`api::health::MAX_AGE`) and each probe takes up to
/// 2 s, so a change shows within about 4 s: poll for the expected status first.
async fn assert_health(app: &TestApp, overall: &str, down: &[&str], up: &[&str]) {
    let settled = eventually(Duration::from_secs(6), || async {
        let (status, body) = health(app).await;
        (body["status"] == overall).then_some((status, body))
    })
    .await;
    let (status, body) = match settled {
        Some(settled) => settled,
        None => health(app).await,
    };
    let expected = if overall == "unhealthy" { 503 } else { 200 };
    assert_eq!((status, body["status"].as_str()), (expected, Some(overall)), "{body}");
    for dependency in down {
        assert_eq!(body["dependencies"][*dependency]["status"], "down", "{body}");
    }
    for dependency in up {
        assert_eq!(body["dependencies"][*dependency]["status"], "up", "{body}");
    }
}

/// Posts `n` events, one every `every`, and returns their ids in order.
async fn stream(app: &TestApp, label: &str, n: usize, every: Duration) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(accepted(post(app, &format!("{label} {i}"), None).await).await);
        tokio::time::sleep(every).await;
    }
    ids
}

/// How many requests the receiver got for each event (its `webhook-id`).
fn copies(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut copies = BTreeMap::new();
    for request in receiver.received() {
        *copies.entry(request.header("webhook-id").to_owned()).or_default() += 1;
    }
    copies
}

/// Waits until the receiver has every one of `ids`.
async fn wait_for_all(receiver: &Receiver, ids: &[String]) -> BTreeMap<String, usize> {
    let got = eventually(CATCH_UP, || async {
        let copies = copies(receiver);
        ids.iter().all(|id| copies.contains_key(id)).then_some(copies)
    })
    .await;
    got.unwrap_or_else(|| {
        let copies = copies(receiver);
        let missing: Vec<&String> = ids.iter().filter(|id| !copies.contains_key(*id)).collect();
        panic!("{} of {} events never delivered: {missing:?}", missing.len(), ids.len())
    })
}
