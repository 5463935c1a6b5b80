//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! request types, served at `GET /openapi.json`. A test checks every route is in it.

use std::sync::LazyLock;

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{events, health, metrics, tenants, webhooks};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "webhook-relay", description = "Signs and delivers internal events to the webhooks external systems register."),
    paths(
        events::create_event, events::list_events, events::get_event, events::event_stats,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::get_webhook, webhooks::update_webhook,
        webhooks::delete_webhook, webhooks::list_deliveries, webhooks::retry_delivery, webhooks::webhook_stats,
        webhooks::recover, webhooks::get_secret, webhooks::rotate_secret,
        webhooks::overview, webhooks::recent_deliveries, webhooks::dashboard_health, metrics::tenant,
        metrics::operator,
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant, tenants::update_tenant,
        tenants::delete_tenant, tenants::create_key, tenants::list_keys, tenants::revoke_key,
        tenants::create_portal_link,
        health::check, document,
    ),
    components(schemas(relay_core::domain::EventInput, relay_core::domain::WebhookInput, webhooks::RecoverInput, webhooks::RotateInput, relay_core::domain::TenantInput, relay_core::domain::ApiKeyInput, relay_core::domain::PortalLinkInput)),
    modifiers(&Credentials),
    tags(
        (name = "events", description = "For internal services (X-Service-Token)"),
        (name = "tenants", description = "Tenants, their API keys and portal links, for internal services (X-Service-Token)"),
        (name = "webhooks", description = "For external clients, per tenant (X-Api-Key)"),
        (name = "dashboard", description = "Per-tenant operations views (X-Api-Key)"),
        (name = "operations", description = "For operators (X-Service-Token)"),
        (name = "health", description = "Liveness and dependencies"),
    )
)]
pub struct ApiDoc;

struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "serviceToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Service-Token"))),
        );
        components.add_security_scheme("apiKey", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))));
    }
}

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "the OpenAPI 3 document")))]
async fn document() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&DOCUMENT)
}

/// `GET /openapi.json`, public.
pub fn routes() -> Router {
    Router::new().route("/openapi.json", get(document))
}
