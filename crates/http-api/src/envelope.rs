//! The success envelope, `{"success": true, "data": ...}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use relay_core::domain::{Page, PageRequest};

pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Serialized straight to the response, never through a `serde_json::Value`: an event's
/// payload goes out as the very text that is delivered (a `Value` would sort its keys and
/// rewrite its numbers).
#[derive(Serialize)]
struct Envelope<T> {
    data: T,
    success: bool,
}

#[derive(Serialize)]
struct ListEnvelope<T> {
    data: Vec<T>,
    pagination: Pagination,
    success: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    limit: usize,
    next_cursor: Option<String>,
    offset: usize,
}

pub fn ok<T: Serialize>(status: StatusCode, data: T) -> Response {
    (status, Json(Envelope { data, success: true })).into_response()
}

/// A list: `data` is the array; `pagination` has the seed's `limit` and `offset` and the
/// `nextCursor` to pass as `cursor` for the next page (`null` on the last page).
pub fn list<T: Serialize>(page: Page<T>, request: &PageRequest) -> Response {
    let pagination = Pagination { limit: request.limit, next_cursor: page.next_cursor, offset: request.offset };
    (StatusCode::OK, Json(ListEnvelope { data: page.items, pagination, success: true })).into_response()
}
