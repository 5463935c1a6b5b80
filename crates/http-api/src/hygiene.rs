//! What every response gets: a request id (the caller's `X-Request-Id` if it is sane, else a
//! new one) in the response and in every log line of the request, security headers, CORS for
//! the configured origins, and one structured access-log line.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use uuid::Uuid;

pub const REQUEST_ID: &str = "x-request-id";

/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
    (header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"),
    (header::CACHE_CONTROL, "no-store"),
];

/// The caller's request id when it is 1-128 of `A-Z a-z 0-9 - _ .`, else a new UUID.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

async fn observe(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let method = request.method().clone();
    // The route template as the metrics label; a request no route matched is labelled
    // `unmatched` (its path goes to the log only), so clients cannot add series.
    let matched = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let route = matched.as_deref().unwrap_or(UNMATCHED).to_owned();
    let path = if matched.is_some() { None } else { Some(request.uri().path().to_owned()) };
    let span =
        tracing::info_span!("request", request_id = %id, method = %method, route = %route, path = path.as_deref());
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(status, latency_ms = elapsed.as_millis() as u64, "request"));
    let metrics = relay_core::metrics::global();
    let method = relay_core::metrics::method_label(method.as_str());
    metrics.increment(
        "relay_http_requests_total",
        &[("method", method), ("route", &route), ("status", &status.to_string())],
    );
    metrics.observe("relay_http_request_duration_ms", &[("route", &route)], elapsed);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Wraps a finished router in CORS, then the request id, security headers and access log, so
/// that a preflight (answered by the CORS layer itself) gets them too.
pub fn wrap(router: Router, cors_origins: &[HeaderValue]) -> Router {
    let router = if cors_origins.is_empty() { router } else { router.layer(cors(cors_origins)) };
    router.layer(axum::middleware::from_fn(observe))
}

fn cors(cors_origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(cors_origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-service-token"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(REQUEST_ID),
        ])
        .expose_headers([
            HeaderName::from_static(REQUEST_ID),
            HeaderName::from_static("idempotent-replayed"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600))
}
