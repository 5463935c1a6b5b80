//! Test helpers: the relay on port 0 with ms-scale retry settings, a real receiver server
//! that records what it got and answers as scripted, and polling.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use relay_local::Config;
use relay_local::{self as local, Backends, RunningRelay};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const SERVICE_TOKEN: &str = "test-service-token-0001";
pub const ACME_KEY: &str = "acme-api-key-00000001";
pub const GLOBEX_KEY: &str = "globex-api-key-000001";

/// The relay, started on port 0 over in-memory backends.
pub struct TestApp {
    pub relay: Option<RunningRelay>,
    pub base: String,
    pub http: reqwest::Client,
    pub backends: Backends,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts the relay with test defaults (in-memory backends, retries every ~20 ms, 2
    /// retries, loopback allowed), overridden by `vars` (`REDIS_URL`, `DATABASE_URL`, ...).
    pub async fn spawn_with(vars: &[(&str, &str)]) -> Self {
        let config = test_config(vars);
        let backends = relay_local::backends(&config).await.expect("backends");
        Self::start(&config, backends).await
    }

    pub async fn start(config: &Config, backends: Backends) -> Self {
        let listener = relay_local::serve::bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let relay = local::start(config, backends.clone(), listener).await.expect("start relay");
        let base = relay.base_url();
        Self { relay: Some(relay), base, http: reqwest::Client::builder().no_proxy().build().unwrap(), backends }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_event(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/events"))
            .header("x-service-token", SERVICE_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a valid event of `event_type` and returns its id.
    pub async fn send_event(&self, event_type: &str) -> String {
        let response = self
            .post_event(json!({
                "eventType": event_type,
                "eventName": format!("{event_type} happened"),
                "payload": {"n": 1, "name": "Zoë"},
                "source": "tests",
            }))
            .await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        body["data"]["eventId"].as_str().unwrap().to_owned()
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Registers a webhook for `acme` and returns (id, secret).
    pub async fn create_webhook(&self, url: &str, event_types: &[&str]) -> (String, String) {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/api/webhooks",
                ACME_KEY,
                Some(json!({"name": "test hook", "url": url, "eventTypes": event_types})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["data"]["id"].as_str().unwrap().to_owned(), body["data"]["secret"].as_str().unwrap().to_owned())
    }

    pub async fn deliveries(&self, webhook_id: &str) -> Vec<Value> {
        let (status, body) =
            self.api(reqwest::Method::GET, &format!("/api/webhooks/{webhook_id}/deliveries"), ACME_KEY, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// Waits until the delivery of `event_id` to `webhook_id` has `status`, and returns it.
    pub async fn wait_for_delivery(&self, webhook_id: &str, event_id: &str, status: &str) -> Value {
        eventually(Duration::from_secs(10), || async {
            self.deliveries(webhook_id).await.into_iter().find(|d| d["eventId"] == event_id && d["status"] == status)
        })
        .await
        .unwrap_or_else(|| panic!("delivery of {event_id} never became {status}"))
    }

    pub async fn stop(mut self) {
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await;
        }
    }
}

/// The test configuration: two tenants, fast retries, loopback allowed; `vars` override.
/// The key ring the tests seal webhook secrets with (`SECRETS_ENCRYPTION_KEYS`).
pub const TEST_SECRET_KEYS: &str = "test:a-fixed-key-for-the-integration-tests-0000";

pub fn test_config(vars: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = [
        ("SERVICE_TOKENS", SERVICE_TOKEN),
        ("API_KEYS", &format!("acme:{ACME_KEY},globex:{GLOBEX_KEY}")),
        ("WEBHOOK_RETRY_DELAY", "20"),
        ("WEBHOOK_MAX_RETRIES", "2"),
        ("WEBHOOK_TIMEOUT", "2000"),
        ("QUEUE_VISIBILITY_TIMEOUT", "5"),
        ("WORKER_CONCURRENCY", "2"),
        ("SECRETS_ENCRYPTION_KEYS", TEST_SECRET_KEYS),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in vars {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_vars(&relay_core::settings::Vars::from_map(env)).expect("test config")
}

/// Polls `check` every 10 ms until it returns `Some`, or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Reply>>,
    arrived: Notify,
}

/// A real HTTP server that records every request and answers from its script (then 200).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        let app = Router::new().route("/{*path}", post(receive)).route("/", post(receive)).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Answers every unscripted request with `reply` (instead of 200).
    pub fn always(&self, reply: Reply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived).await.is_err() {
                let got = self.received();
                assert!(got.len() >= n, "expected {n} requests, got {}", got.len());
                return got;
            }
        }
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.received.lock().unwrap().push(Received { headers, body, at: Instant::now() });
    state.arrived.notify_waiters();
    let reply = state.script.lock().unwrap().pop_front().or_else(|| state.fallback.lock().unwrap().clone());
    let Some(reply) = reply else { return StatusCode::OK.into_response() };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
    }
    response
}
