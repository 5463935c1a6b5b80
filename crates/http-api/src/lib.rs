//! The HTTP API: axum routers served by `lambda_http::run` in Lambda and by `axum::serve` in
//! relay-local. `events` is the internal events API (X-Service-Token), `webhooks` the
//! management API (X-Api-Key, tenant-scoped); `error` is the one place errors become
//! statuses and envelopes.

mod body_timeout;
mod envelope;
mod error;

pub use error::ApiError;
mod events;
mod extract;
mod health;
mod hygiene;
mod metrics;
mod openapi;
mod settings;
mod tenants;
mod views;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use body_timeout::{BodyTimeout, is_body_timeout};
pub use envelope::IDEMPOTENT_REPLAYED;
pub use events::EventsState;
pub use extract::{Access, ClientAddr, Params, client_ip};
pub use health::{
    DependencyReport, DependencyStatus, Detail, EventStoreProbe, Health, HealthReport, HealthState, QueueProbe,
};
pub use hygiene::REQUEST_ID;
pub use openapi::ApiDoc;
pub use settings::{ApiSettings, public_url};
pub use tenants::PORTAL_PATH;
pub use webhooks::ManagementState;

use relay_core::Error;

/// The largest body the management API accepts.
const MANAGEMENT_BODY_LIMIT: usize = 64 * 1024;

/// What every app has besides its routes: `/health` (and the credentials that unlock its
/// details), and the allowed CORS origins.
#[derive(Debug, Clone, Default)]
pub struct Common {
    pub health: Health,
    pub access: Option<Access>,
    pub cors_origins: Vec<axum::http::HeaderValue>,
}

/// relay-ingest's app: `POST /api/events` and `/health`.
pub fn ingest_app(state: EventsState, common: Common) -> Router {
    finish(events_routes(events::write_routes(), state), common)
}

/// relay-api's app: the management API, the events' reads and lists, `/health`, and `pages`
/// (the dashboard, when on).
pub fn management_app(state: ManagementState, events: EventsState, pages: Router, common: Common) -> Router {
    let reads = events_routes(events::read_routes(), events);
    finish(management_routes(state).merge(reads).merge(pages), common)
}

/// relay-local's app: everything.
pub fn local_app(events: EventsState, management: ManagementState, pages: Router, common: Common) -> Router {
    finish(events_routes(events::routes(), events).merge(management_routes(management)).merge(pages), common)
}

fn events_routes(routes: Router<EventsState>, state: EventsState) -> Router {
    let limit = state.max_payload_bytes;
    routes.layer(DefaultBodyLimit::max(limit)).with_state(state)
}

fn management_routes(state: ManagementState) -> Router {
    webhooks::routes().merge(tenants::routes()).layer(DefaultBodyLimit::max(MANAGEMENT_BODY_LIMIT)).with_state(state)
}

fn finish(router: Router, common: Common) -> Router {
    let router = router
        .merge(health::routes(HealthState { health: common.health, access: common.access }))
        .merge(openapi::routes())
        .fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            ApiError(Error::RouteNotFound(format!("no route for {method} {}", uri.path())))
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            ApiError(Error::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path())))
        });
    hygiene::wrap(router, &common.cors_origins)
}
