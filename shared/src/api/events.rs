//! The events API, for internal services: `POST/GET /api/events`, `GET /api/events/{id}`.

use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::envelope::{IDEMPOTENT_REPLAYED, list, ok};
use super::extract::{Access, ApiJson, BodyLimit, Params, ServiceCaller};
use crate::app::Ingest;
use crate::domain::{EventInput, PageRequest};
use crate::Error;

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

pub fn routes() -> Router<EventsState> {
    Router::new()
        .route("/api/events", get(list_events).post(create_event))
        .route("/api/events/{id}", get(get_event))
}

async fn create_event(
    State(state): State<EventsState>,
    _caller: ServiceCaller,
    headers: HeaderMap,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<Response, Error> {
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

async fn list_events(State(state): State<EventsState>, _caller: ServiceCaller, params: Params) -> Result<Response, Error> {
    let page = params.page(PageRequest::MAX_LIMIT)?;
    let events = state.ingest.list(params.get("eventType"), params.get("source"), &page).await?;
    Ok(list(events, &page))
}

async fn get_event(
    State(state): State<EventsState>,
    _caller: ServiceCaller,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let event = state.ingest.get(&id).await?;
    Ok(ok(StatusCode::OK, &event).into_response())
}
