//! The success envelope, `{"success": true, "data": ...}`, and the access log.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::domain::{Page, PageRequest};

pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

pub fn ok<T: Serialize>(status: StatusCode, data: T) -> Response {
    (status, Json(json!({ "success": true, "data": data }))).into_response()
}

/// A list: `data` is the array; `pagination` has the seed's `limit` and `offset` and the
/// `nextCursor` to pass as `cursor` for the next page (`null` on the last page).
pub fn list<T: Serialize>(page: Page<T>, request: &PageRequest) -> Response {
    let body = json!({
        "success": true,
        "data": page.items,
        "pagination": { "limit": request.limit, "offset": request.offset, "nextCursor": page.next_cursor },
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// One structured line per request: method, route, status, latency. Never headers or bodies.
pub async fn access_log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        method = %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
