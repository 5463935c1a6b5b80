//! The events API, for internal services: `POST/GET /api/events`, `GET /api/events/{id}`.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::envelope::{IDEMPOTENT_REPLAYED, list, ok};
use super::extract::{Access, ApiJson, ApiPath, BodyLimit, Params, ServiceCaller, timestamp};
use crate::ApiError;
use relay_core::app::Ingest;
use relay_core::domain::{EventInput, PageRequest};
use relay_core::{Error, Timestamp};

#[derive(Clone, Debug)]
pub struct EventsState {
    pub ingest: Ingest,
    pub access: Access,
    pub max_payload_bytes: usize,
}

impl FromRef<EventsState> for Access {
    fn from_ref(state: &EventsState) -> Self {
        state.access.clone()
    }
}

impl FromRef<EventsState> for BodyLimit {
    fn from_ref(state: &EventsState) -> Self {
        BodyLimit(state.max_payload_bytes)
    }
}

/// Every events route (relay-local).
pub fn routes() -> Router<EventsState> {
    Router::new()
        .route("/api/events", get(list_events).post(create_event))
        .route("/api/events/stats", get(event_stats))
        .route("/api/events/{id}", get(get_event))
}

/// Accepting events (relay-ingest, which reaches DynamoDB and SQS only).
pub fn write_routes() -> Router<EventsState> {
    Router::new().route("/api/events", post(create_event))
}

/// Reading and listing events (relay-api, beside the event index in PostgreSQL).
pub fn read_routes() -> Router<EventsState> {
    Router::new()
        .route("/api/events", get(list_events))
        .route("/api/events/stats", get(event_stats))
        .route("/api/events/{id}", get(get_event))
}

/// Counts by type since `since` (RFC 3339; default the last 24 hours).
#[utoipa::path(get, path = "/api/events/stats", tag = "events", security(("serviceToken" = [])), params(("since" = Option<String>, Query, description = "RFC 3339; default 24 h ago")), responses((status = 200, description = "counts of events by configured type"), (status = 422, description = "bad since"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn event_stats(
    State(state): State<EventsState>,
    _caller: ServiceCaller,
    params: Params,
) -> Result<Response, ApiError> {
    let since = match params.get("since") {
        Some(value) => timestamp("since", value)?,
        None => Timestamp::now() - std::time::Duration::from_secs(86_400),
    };
    let counts = state.ingest.counts_by_type(since).await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let by_type: serde_json::Map<String, serde_json::Value> =
        counts.into_iter().map(|(t, n)| (t.as_str().to_owned(), n.into())).collect();
    Ok(ok(StatusCode::OK, serde_json::json!({ "since": since, "total": total, "byType": by_type })))
}

#[utoipa::path(post, path = "/api/events", tag = "events", security(("serviceToken" = [])), request_body = relay_core::domain::EventInput, params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe for 24 h")), responses((status = 202, description = "accepted (or replayed: Idempotent-Replayed: true)"), (status = 400, description = "not JSON"), (status = 409, description = "Idempotency-Key reused with another body"), (status = 413, description = "body over MAX_PAYLOAD_BYTES"), (status = 422, description = "invalid event; an unknown or disabled tenant, or no tenant where ALLOW_BROADCAST_EVENTS is false (field tenant)"), (status = 503, description = "store or queue unavailable; retry with the same Idempotency-Key"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn create_event(
    State(state): State<EventsState>,
    _caller: ServiceCaller,
    headers: HeaderMap,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| Error::validation("Idempotency-Key", "must be visible ASCII"))?),
    };
    let accepted = state.ingest.accept(input, key).await?;
    let mut response = ok(StatusCode::ACCEPTED, &accepted.event);
    if accepted.replayed {
        response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/events", tag = "events", security(("serviceToken" = [])), params(("eventType" = Option<String>, Query), ("source" = Option<String>, Query), ("tenant" = Option<String>, Query, description = "only the events scoped to this tenant"), ("limit" = Option<u32>, Query, description = "1-500, default 50"), ("offset" = Option<u32>, Query, description = "0-100000"), ("cursor" = Option<String>, Query, description = "the nextCursor of the previous page")), responses((status = 200, description = "events, newest first"), (status = 422, description = "bad filter or paging"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn list_events(
    State(state): State<EventsState>,
    _caller: ServiceCaller,
    params: Params,
) -> Result<Response, ApiError> {
    let page = params.page(PageRequest::MAX_LIMIT)?;
    let events = state.ingest.list(params.get("eventType"), params.get("source"), params.get("tenant"), &page).await?;
    Ok(list(events, &page))
}

#[utoipa::path(get, path = "/api/events/{id}", tag = "events", security(("serviceToken" = [])), params(("id" = String, Path, description = "the event id")), responses((status = 200, description = "the event"), (status = 404, description = "no such event"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn get_event(
    State(state): State<EventsState>,
    _caller: ServiceCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let event = state.ingest.get(&id).await?;
    Ok(ok(StatusCode::OK, &event).into_response())
}
