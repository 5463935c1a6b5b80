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

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use envelope::IDEMPOTENT_REPLAYED;
pub use events::EventsState;
pub use extract::Access;
pub use health::Health;
pub use webhooks::ManagementState;

use crate::Error;

/// The largest body the management API accepts.
const MANAGEMENT_BODY_LIMIT: usize = 64 * 1024;

/// relay-ingest's app: the events API and `/health`.
pub fn ingest_app(state: EventsState, health: Health) -> Router {
    finish(events_routes(state), health)
}

/// relay-api's app: the management API and `/health`.
pub fn management_app(state: ManagementState, health: Health) -> Router {
    finish(management_routes(state), health)
}

/// relay-local's app: everything.
pub fn local_app(events: EventsState, management: ManagementState, health: Health) -> Router {
    finish(events_routes(events).merge(management_routes(management)), health)
}

fn events_routes(state: EventsState) -> Router {
    let limit = state.max_payload_bytes;
    events::routes().layer(DefaultBodyLimit::max(limit)).with_state(state)
}

fn management_routes(state: ManagementState) -> Router {
    webhooks::routes().layer(DefaultBodyLimit::max(MANAGEMENT_BODY_LIMIT)).with_state(state)
}

fn finish(router: Router, health: Health) -> Router {
    router
        .merge(health::routes(health))
        .fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            Error::RouteNotFound(format!("no route for {method} {}", uri.path()))
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            Error::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
        })
        .layer(axum::middleware::from_fn(envelope::access_log))
}
