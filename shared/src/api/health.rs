use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::envelope::ok;
use crate::Timestamp;

pub fn routes() -> Router {
    Router::new().route("/health", get(health))
}

/// Liveness: the process is up and serving. It checks no dependency, so a load balancer
/// does not take every instance out when one backing service blips.
async fn health() -> Response {
    ok(
        StatusCode::OK,
        json!({
            "status": "healthy",
            "service": "webhook-relay",
            "version": env!("CARGO_PKG_VERSION"),
            "timestamp": Timestamp::now(),
        }),
    )
}
