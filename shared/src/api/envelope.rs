//! The success envelope, `{"success": true, "data": ...}`.

use axum::Json;
use axum::http::StatusCode;
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
