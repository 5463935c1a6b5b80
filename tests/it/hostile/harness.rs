//! The relay's router driven in-process over the in-memory backends (no sockets, so a few
//! thousand requests take seconds), every route of /openapi.json with its ids filled in, and
//! the checks every answer to hostile input must pass.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use relay_local::Relay;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

use super::strategies::{Json, Piece};
use crate::helpers::{ACME_KEY, Receiver, SERVICE_TOKEN, test_config};

/// The one origin the harness's relay allows (`CORS_ORIGINS`).
pub const CORS_ORIGIN: &str = "https://app.example.com";

/// A signing secret callers may bring.
pub const OWN_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Whose credential a route wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Service,
    Tenant,
    Anyone,
}

impl Caller {
    /// The header and the valid value.
    pub fn credential(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Service => Some(("x-service-token", SERVICE_TOKEN)),
            Self::Tenant => Some(("x-api-key", ACME_KEY)),
            Self::Anyone => None,
        }
    }
}

/// An API key id no tenant has.
const NO_SUCH_KEY: &str = "01a2a000-0000-7000-8000-000000000000";

/// A documented route, with the ids its placeholders take.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub template: String,
    pub caller: Caller,
    /// It has a `requestBody` in /openapi.json: the body is read and parsed.
    pub reads_body: bool,
    id: String,
    event_id: String,
}

impl Route {
    pub fn path(&self) -> String {
        self.path_with(None, None)
    }

    /// The path with `{id}` and `{event_id}` filled, by these segments where given (`{keyId}`,
    /// an API key's id, always by one no tenant has).
    pub fn path_with(&self, id: Option<&str>, event_id: Option<&str>) -> String {
        self.template
            .replace("{id}", id.unwrap_or(&self.id))
            .replace("{event_id}", event_id.unwrap_or(&self.event_id))
            .replace("{keyId}", NO_SUCH_KEY)
    }

    pub fn takes_body(&self) -> bool {
        self.method == Method::POST || self.method == Method::PUT
    }

    /// A request with the route's credential and a JSON content type.
    pub fn request(&self, path_and_query: &str) -> axum::http::request::Builder {
        let mut builder = Request::builder().method(self.method.clone()).uri(path_and_query);
        if let Some((name, value)) = self.caller.credential() {
            builder = builder.header(name, value);
        }
        builder.header(header::CONTENT_TYPE, "application/json")
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Status and the start of the body, for failure messages.
    pub fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(600)]).into_owned();
        format!("{} {body}", self.status)
    }
}

/// The relay over in-memory backends with one poller delivering, a receiver, and the ids the
/// routes use: `main` (acme, subscribed to job.created, with one delivered event), `doomed`
/// (what DELETE removes) and `target` (what the URL property updates).
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    stop: watch::Sender<bool>,
    receiver: Receiver,
    pub routes: Vec<Route>,
    pub target: String,
    /// How many answers of each status `exchange` saw.
    statuses: Mutex<BTreeMap<u16, u32>>,
}

impl Harness {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With `vars` over the harness's configuration (`DATABASE_URL`, ...).
    pub fn start_with(vars: &[(&str, &str)]) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        // Thousands of requests, many with wrong credentials, on purpose: no limit may answer
        // 429 in their place (auth.rs tests the limits).
        let mut env =
            vec![("RATE_LIMIT_PER_MINUTE", "0"), ("AUTH_FAILURE_LIMIT_PER_MINUTE", "0"), ("CORS_ORIGINS", CORS_ORIGIN)];
        env.extend_from_slice(vars);
        let config = test_config(&env);
        let (stop, stopped) = watch::channel(false);
        let (relay, receiver) = runtime.block_on(async {
            let backends = relay_local::backends(&config).await.expect("backends");
            let relay = Relay::new(&config, backends).expect("the relay");
            for poller in relay.pollers() {
                tokio::spawn(poller.run(stopped.clone()));
            }
            (relay, Receiver::start().await)
        });
        let mut harness = Self {
            runtime,
            router: relay.router(),
            stop,
            receiver,
            routes: Vec::new(),
            target: String::new(),
            statuses: Mutex::default(),
        };
        let main = harness.create_webhook("job.created");
        let doomed = harness.create_webhook("assessment.graded");
        harness.target = harness.create_webhook("assessment.graded");
        let event = harness.seed_delivery(&main);
        harness.routes = harness.documented_routes(&main, &doomed, &event);
        harness
    }

    /// Where the receiver listens, as `host:port`.
    pub fn receiver_host(&self) -> String {
        self.receiver.addr.to_string()
    }

    /// Sends `request` and reads the whole answer (10 s at most).
    pub fn send(&self, request: Request<Body>) -> Result<Reply, TestCaseError> {
        self.runtime.block_on(async {
            let call = self.router.clone().oneshot(request);
            let response = match tokio::time::timeout(Duration::from_secs(10), call).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => return Err(TestCaseError::fail("no answer within 10 s")),
            };
            let (parts, body) = response.into_parts();
            let body =
                to_bytes(body, 64 << 20).await.map_err(|e| TestCaseError::fail(format!("unreadable body: {e}")))?;
            Ok(Reply { status: parts.status, headers: parts.headers, body })
        })
    }

    /// Sends `request` to `route` and checks the answer as every answer is checked.
    pub fn exchange(&self, route: &Route, request: Request<Body>) -> Result<Reply, TestCaseError> {
        let method = request.method().clone();
        let request_id = request.headers().get("x-request-id").cloned();
        let reply = self.send(request)?;
        *self.statuses.lock().expect("statuses").entry(reply.status.as_u16()).or_default() += 1;
        check(&route.template, &method, request_id.as_ref(), &reply)
            .map_err(|e| TestCaseError::fail(format!("{method} {} -> {}: {e}", route.template, reply.summary())))?;
        Ok(reply)
    }

    /// Forgets the statuses seen so far (the set-up's).
    pub fn reset_statuses(&self) {
        self.statuses.lock().expect("statuses").clear();
    }

    /// Asserts that answers of each of `statuses` were seen, so a property did not spend its
    /// cases on one kind of refusal; prints what was seen.
    pub fn assert_statuses_seen(&self, statuses: &[u16]) {
        let seen = self.statuses.lock().expect("statuses").clone();
        eprintln!("statuses seen: {seen:?}");
        for status in statuses {
            assert!(seen.contains_key(status), "no {status} among {seen:?}");
        }
    }

    /// The routes that read a body.
    pub fn body_routes(&self) -> Vec<Route> {
        self.routes.iter().filter(|r| r.takes_body()).cloned().collect()
    }

    pub fn route(&self, method: Method, template: &str) -> &Route {
        self.routes
            .iter()
            .find(|r| r.method == method && r.template == template)
            .unwrap_or_else(|| panic!("{method} {template} is not in /openapi.json"))
    }

    /// The route's valid body, as fields to mutate (`{}` for routes that read none).
    pub fn valid_body(&self, route: &Route) -> Vec<(Vec<Piece>, Json)> {
        let value = match (route.method.as_str(), route.template.as_str()) {
            ("POST", "/api/events") => {
                json!({"eventType": "job.created", "eventName": "hostile", "payload": {"n": 1}, "source": "hostile-tests"})
            }
            ("POST", "/api/webhooks") => {
                json!({"name": "hostile", "url": self.receiver_url(), "eventTypes": ["assessment.graded"]})
            }
            ("PUT", "/api/webhooks/{id}") => {
                json!({"name": "renamed", "eventTypes": ["job.created"], "isActive": true})
            }
            ("POST", "/api/webhooks/{id}/recover") => json!({"since": "2026-01-01T00:00:00Z"}),
            ("POST", "/api/webhooks/{id}/secret/rotate") => json!({"secret": OWN_SECRET}),
            ("POST", "/api/tenants") => json!({"id": "hostile", "name": "Hostile Inc."}),
            ("PUT", "/api/tenants/{id}") => json!({"name": "renamed", "isActive": true}),
            ("POST", "/api/tenants/{id}/api-keys") => json!({"name": "hostile"}),
            ("POST", "/api/tenants/{id}/portal-links") => json!({"ttlSeconds": 900}),
            _ => json!({}),
        };
        match Json::from_value(&value) {
            Json::Object(fields) => fields,
            _ => Vec::new(),
        }
    }

    pub fn valid_body_text(&self, route: &Route) -> String {
        Json::Object(self.valid_body(route)).render()
    }

    pub fn receiver_url(&self) -> String {
        self.receiver.url()
    }

    fn call(&self, method: Method, path: &str, caller: Caller, body: Value) -> Reply {
        let route = Route {
            method,
            template: path.to_owned(),
            caller,
            reads_body: true,
            id: String::new(),
            event_id: String::new(),
        };
        let request = route.request(path).body(Body::from(body.to_string())).expect("a request");
        self.exchange(&route, request).unwrap_or_else(|e| panic!("{e}"))
    }

    fn create_webhook(&self, event_type: &str) -> String {
        let body = json!({"name": "hostile", "url": self.receiver_url(), "eventTypes": [event_type]});
        let reply = self.call(Method::POST, "/api/webhooks", Caller::Tenant, body);
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.summary());
        reply.json()["data"]["id"].as_str().expect("an id").to_owned()
    }

    /// Posts a job.created event and waits until it was delivered to `webhook`.
    fn seed_delivery(&self, webhook: &str) -> String {
        let body = json!({"eventType": "job.created", "eventName": "seed", "payload": {"n": 1}});
        let reply = self.call(Method::POST, "/api/events", Caller::Service, body);
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.summary());
        let event = reply.json()["data"]["eventId"].as_str().expect("an id").to_owned();
        let deliveries = format!("/api/webhooks/{webhook}/deliveries");
        for _ in 0..500 {
            let reply = self.call(Method::GET, &deliveries, Caller::Tenant, Value::Null);
            if reply.json()["data"].as_array().is_some_and(|d| d.iter().any(|d| d["status"] == "succeeded")) {
                return event;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the seed event was never delivered");
    }

    fn documented_routes(&self, main: &str, doomed: &str, event: &str) -> Vec<Route> {
        let reply = self.call(Method::GET, "/openapi.json", Caller::Anyone, Value::Null);
        let document = reply.json();
        let mut routes = Vec::new();
        for (template, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                    continue;
                };
                // The credential the document says the operation takes.
                let scheme = operation["security"][0].as_object().and_then(|s| s.keys().next().cloned());
                let caller = match scheme.as_deref() {
                    Some("serviceToken") => Caller::Service,
                    Some("apiKey") => Caller::Tenant,
                    _ => Caller::Anyone,
                };
                let id = if template.starts_with("/api/events/") {
                    event
                } else if method == Method::DELETE {
                    doomed
                } else {
                    main
                };
                let route = Route {
                    method,
                    template: template.clone(),
                    caller,
                    reads_body: operation.get("requestBody").is_some(),
                    id: id.to_owned(),
                    event_id: event.to_owned(),
                };
                assert!(!route.path().contains('{'), "{template} has a placeholder these tests do not fill");
                routes.push(route);
            }
        }
        assert!(routes.len() >= 20, "only {} routes in /openapi.json", routes.len());
        routes
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A request id the relay keeps: 1-128 of `A-Z a-z 0-9 - _ .`.
pub fn sane_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// What every answer must be: no 5xx; one sane `X-Request-Id` (the caller's when it was sane,
/// else a new UUID); the security headers; CORS only for the configured origin; and a body
/// that is a valid envelope (the error envelope with the code its status documents for 4xx,
/// the success envelope for 2xx).
pub fn check(
    template: &str,
    method: &Method,
    sent_id: Option<&HeaderValue>,
    reply: &Reply,
) -> Result<(), TestCaseError> {
    let status = reply.status;
    prop_assert!(!status.is_server_error(), "a server error");
    let ids: Vec<&HeaderValue> = reply.headers.get_all("x-request-id").iter().collect();
    prop_assert_eq!(ids.len(), 1, "not one X-Request-Id");
    let id = ids[0].to_str().unwrap_or_default();
    prop_assert!(sane_request_id(id), "X-Request-Id {:?}", ids[0]);
    match sent_id.and_then(|v| v.to_str().ok()).filter(|v| sane_request_id(v)) {
        Some(sent) => prop_assert_eq!(id, sent, "the caller's sane X-Request-Id was not kept"),
        None => prop_assert!(uuid::Uuid::parse_str(id).is_ok(), "X-Request-Id {} is not a new UUID", id),
    }
    prop_assert_eq!(
        reply.headers.get(header::X_CONTENT_TYPE_OPTIONS).map(HeaderValue::as_bytes),
        Some(&b"nosniff"[..])
    );
    if let Some(origin) = reply.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        prop_assert_eq!(origin.as_bytes(), CORS_ORIGIN.as_bytes(), "CORS allowed another origin");
    }
    if *method == Method::HEAD {
        prop_assert!(reply.body.is_empty(), "HEAD answered with a body");
        return Ok(());
    }
    if *method == Method::OPTIONS && status == StatusCode::OK && reply.body.is_empty() {
        prop_assert!(
            reply.headers.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS),
            "an empty 200 that is not a preflight"
        );
        return Ok(());
    }
    let content_type = reply.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The Prometheus text format, which both metrics routes answer `?format=prometheus` with.
    let metrics = matches!(template, "/api/dashboard/metrics" | "/api/metrics");
    if metrics && status.is_success() && content_type.starts_with("text/plain") {
        prop_assert!(std::str::from_utf8(&reply.body).is_ok(), "metrics text is not UTF-8");
        return Ok(());
    }
    prop_assert!(content_type.starts_with("application/json"), "content type {:?}", content_type);
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|e| TestCaseError::fail(format!("body is not JSON: {e}")))?;
    if status.is_client_error() {
        return check_error(status, &body);
    }
    prop_assert!(status.is_success(), "neither 2xx nor 4xx");
    if template == "/openapi.json" {
        prop_assert!(body["openapi"].is_string(), "not an OpenAPI document");
        return Ok(());
    }
    prop_assert_eq!(&body["success"], &Value::Bool(true), "success is not true");
    prop_assert!(body.get("data").is_some(), "no data");
    prop_assert!(body.get("error").is_none(), "a success with an error");
    Ok(())
}

/// The codes each 4xx status documents (README, "Envelope, errors, paging").
fn documented_codes(status: StatusCode) -> &'static [&'static str] {
    match status.as_u16() {
        400 => &["invalid_json"],
        401 => &["unauthorized"],
        403 => &["forbidden"],
        404 => &["not_found"],
        405 => &["method_not_allowed"],
        409 => &["idempotency_key_reused", "webhook_disabled", "tenant_exists", "tenant_static", "tenant_disabled"],
        413 => &["payload_too_large"],
        422 => &["validation_failed"],
        429 => &["rate_limited"],
        _ => &[],
    }
}

fn check_error(status: StatusCode, body: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(&body["success"], &Value::Bool(false), "success is not false");
    prop_assert!(body.get("data").is_none(), "an error with data");
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or_default();
    prop_assert!(documented_codes(status).contains(&code), "code {:?} is not documented for {}", code, status);
    prop_assert!(error["message"].as_str().is_some_and(|m| !m.trim().is_empty()), "no message");
    let details = error["details"].as_array().ok_or_else(|| TestCaseError::fail("details is not an array"))?;
    if code == "validation_failed" {
        prop_assert!(!details.is_empty(), "validation_failed without details");
        for detail in details {
            prop_assert!(detail["field"].is_string(), "a detail without a field");
            prop_assert!(detail["message"].as_str().is_some_and(|m| !m.is_empty()), "a detail without a message");
        }
    } else {
        prop_assert!(details.is_empty(), "details outside validation_failed");
    }
    Ok(())
}

/// Builds a request; one `http` refuses (a made-up byte in the URI) is not a case.
pub fn build(builder: axum::http::request::Builder, body: impl Into<Body>) -> Result<Request<Body>, TestCaseError> {
    builder.body(body.into()).map_err(|e| TestCaseError::reject(format!("not a request: {e}")))
}

/// The body limit of the router `route` is on (README: `MAX_PAYLOAD_BYTES`, 64 KiB).
pub fn body_limit(route: &Route) -> usize {
    if route.template.starts_with("/api/events") { 256 * 1024 } else { 64 * 1024 }
}

/// What an accepted webhook URL must be: http(s) with a host, no credentials or fragment, at
/// most 2048 characters, and nothing but visible ASCII, so it can never split a header line.
pub fn check_stored_url(stored: &str) -> Result<(), TestCaseError> {
    prop_assert!(stored.bytes().all(|b| b.is_ascii_graphic()), "stored URL {:?} holds raw bytes", stored);
    prop_assert!(stored.len() <= 2048, "stored URL is {} characters", stored.len());
    let url = url::Url::parse(stored).map_err(|e| TestCaseError::fail(format!("stored URL {stored:?}: {e}")))?;
    prop_assert!(matches!(url.scheme(), "http" | "https"), "scheme of {}", stored);
    prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()), "no host in {}", stored);
    prop_assert!(url.username().is_empty() && url.password().is_none(), "credentials in {}", stored);
    prop_assert!(url.fragment().is_none(), "a fragment in {}", stored);
    Ok(())
}

/// Asserts the status and the error code of an answer.
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.summary());
    assert_eq!(reply.json()["error"]["code"], code, "{}", reply.summary());
}
