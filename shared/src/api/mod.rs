//! The HTTP API: axum routers served by `lambda_http::run` in Lambda and by `axum::serve` in
//! relay-local. `events` is the internal events API (X-Service-Token), `webhooks` the
//! management API (X-Api-Key, tenant-scoped); `error` is the one place errors become
//! statuses and envelopes.

mod envelope;
mod error;
mod events;
mod extract;
mod health;
mod views;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use envelope::IDEMPOTENT_REPLAYED;
pub use events::EventsState;
pub use webhooks::ManagementState;

use crate::Error;

/// The largest body the management API accepts.
const MANAGEMENT_BODY_LIMIT: usize = 64 * 1024;

/// relay-ingest's app: the events API and `/health`.
pub fn ingest_app(state: EventsState) -> Router {
    finish(events_routes(state))
}

/// relay-api's app: the management API and `/health`.
pub fn management_app(state: ManagementState) -> Router {
    finish(management_routes(state))
}

/// relay-local's app: everything.
pub fn local_app(events: EventsState, management: ManagementState) -> Router {
    finish(events_routes(events).merge(management_routes(management)))
}

fn events_routes(state: EventsState) -> Router {
    let limit = state.max_payload_bytes;
    events::routes().layer(DefaultBodyLimit::max(limit)).with_state(state)
}

fn management_routes(state: ManagementState) -> Router {
    webhooks::routes().layer(DefaultBodyLimit::max(MANAGEMENT_BODY_LIMIT)).with_state(state)
}

fn finish(router: Router) -> Router {
    router
        .merge(health::routes())
        .fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            Error::RouteNotFound(format!("no route for {method} {}", uri.path()))
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            Error::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
        })
        .layer(axum::middleware::from_fn(envelope::access_log))
}

/// What both APIs need to authenticate callers.
pub type SharedCredentials = Arc<crate::auth::Credentials>;
