//! The management API, for external clients, scoped to the API key's tenant:
//! `POST/GET /api/webhooks`, `GET/PUT/DELETE /api/webhooks/{id}`,
//! `GET /api/webhooks/{id}/deliveries`, `POST /api/webhooks/{webhookId}/retry/{eventId}`.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use super::MANAGEMENT_BODY_LIMIT;
use super::envelope::{list, ok};
use super::extract::{Access, ApiJson, ApiPath, BodyLimit, OptionalJson, Params, TenantCaller, timestamp};
use super::views::{DeliveryView, WebhookView};
use crate::ApiError;
use relay_core::app::{Dashboard, Tenants, WebhookAdmin};
use relay_core::domain::{DeliveryStatus, PageRequest, WebhookInput};
use relay_core::{Error, Timestamp};

#[derive(Clone, Debug)]
pub struct ManagementState {
    pub admin: WebhookAdmin,
    pub tenants: Tenants,
    /// `PUBLIC_URL`: the relay's address as its users reach it (portal links start with it);
    /// unset, the request's `Host`.
    pub public_url: Option<String>,
    pub dashboard: Dashboard,
    pub health: super::Health,
    pub access: Access,
}

impl FromRef<ManagementState> for Access {
    fn from_ref(state: &ManagementState) -> Self {
        state.access.clone()
    }
}

impl FromRef<ManagementState> for BodyLimit {
    fn from_ref(_: &ManagementState) -> Self {
        BodyLimit(MANAGEMENT_BODY_LIMIT)
    }
}

pub fn routes() -> Router<ManagementState> {
    Router::new()
        .route("/api/webhooks", get(list_webhooks).post(create_webhook))
        .route("/api/webhooks/{id}", get(get_webhook).put(update_webhook).delete(delete_webhook))
        .route("/api/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/api/webhooks/{id}/retry/{event_id}", post(retry_delivery))
        .route("/api/webhooks/{id}/recover", post(recover))
        .route("/api/webhooks/{id}/stats", get(webhook_stats))
        .route("/api/dashboard/overview", get(overview))
        .route("/api/dashboard/recent-deliveries", get(recent_deliveries))
        .route("/api/dashboard/health", get(dashboard_health))
        .route("/api/dashboard/metrics", get(super::metrics::tenant))
        .route("/api/metrics", get(super::metrics::operator))
        .route("/api/webhooks/{id}/secret", get(get_secret))
        .route("/api/webhooks/{id}/secret/rotate", post(rotate_secret))
}

#[utoipa::path(get, path = "/api/webhooks/{id}/stats", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path), ("since" = Option<String>, Query, description = "RFC 3339; default all time")), responses((status = 200, description = "counts by status, success rate, latency, last success and failure"), (status = 404, description = "no such webhook for this tenant"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn webhook_stats(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let webhook = state.admin.get(&tenant, &id).await?;
    let since = match params.get("since") {
        Some(value) => timestamp("since", value)?,
        None => Timestamp::from_millis(0),
    };
    let stats = state.dashboard.webhook_stats(webhook.id, since).await?;
    Ok(ok(StatusCode::OK, json!({ "webhookId": webhook.id, "since": since, "stats": stats })))
}

#[utoipa::path(get, path = "/api/dashboard/health", tag = "dashboard", security(("apiKey" = [])), responses((status = 200, description = "healthy or degraded, with each dependency's status and latency"), (status = 503, description = "unhealthy: event store or queue down"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn dashboard_health(State(state): State<ManagementState>, _caller: TenantCaller) -> Response {
    super::health::respond(&state.health.report().await, super::Detail::Latency)
}

#[utoipa::path(get, path = "/api/dashboard/overview", tag = "dashboard", security(("apiKey" = [])), responses((status = 200, description = "the tenant's deliveries over 24 h and 7 d, webhooks, deliveries waiting"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn overview(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::OK, state.dashboard.overview(&tenant).await?))
}

#[utoipa::path(get, path = "/api/dashboard/recent-deliveries", tag = "dashboard", security(("apiKey" = [])), params(("limit" = Option<u32>, Query, description = "1-500, default 100")), responses((status = 200, description = "the tenant's most recent deliveries"), (status = 422, description = "bad limit"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn recent_deliveries(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = match params.get("limit") {
        None => 100,
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| Error::validation("limit", "must be a whole number from 1 to 500"))?,
    };
    let recent = state.dashboard.recent(&tenant, limit).await?;
    let views: Vec<DeliveryView<'_>> = recent.iter().map(DeliveryView::new).collect();
    Ok(ok(StatusCode::OK, views))
}

/// The body of `POST /api/webhooks/{id}/recover`: RFC 3339 `since`, optional `until` (now).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverInput {
    since: Option<String>,
    until: Option<String>,
}

#[utoipa::path(post, path = "/api/webhooks/{id}/recover", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path, description = "the webhook id")), request_body = RecoverInput, responses((status = 202, description = "failed deliveries in the window put back on the queue"), (status = 404, description = "no such webhook"), (status = 409, description = "webhook disabled"), (status = 422, description = "bad window"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn recover(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<RecoverInput>,
) -> Result<Response, ApiError> {
    let since = timestamp("since", input.since.as_deref().ok_or_else(|| Error::validation("since", "is required"))?)?;
    let until = match input.until.as_deref() {
        Some(value) => timestamp("until", value)?,
        None => Timestamp::now(),
    };
    if since >= until {
        return Err(Error::validation("until", "must be after since").into());
    }
    let recovered = state.admin.recover(&tenant, &id, since, until).await?;
    Ok(ok(StatusCode::ACCEPTED, json!({ "recovered": recovered, "since": since, "until": until })))
}

/// The body of `POST /api/webhooks/{id}/secret/rotate` (optional).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    secret: Option<String>,
}

fn secret_view(webhook: &relay_core::domain::Webhook, secret: &relay_core::domain::WebhookSecret) -> serde_json::Value {
    json!({
        "secret": secret.expose(),
        "previousSecretExpiresAt": webhook.previous_secret.as_ref().and(webhook.previous_secret_expires_at),
    })
}

#[utoipa::path(get, path = "/api/webhooks/{id}/secret", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path, description = "the webhook id")), responses((status = 200, description = "the signing secret"), (status = 404, description = "no such webhook"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn get_secret(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let webhook = state.admin.get(&tenant, &id).await?;
    Ok(ok(StatusCode::OK, secret_view(&webhook, &state.admin.secret(&webhook)?)))
}

#[utoipa::path(post, path = "/api/webhooks/{id}/secret/rotate", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path, description = "the webhook id")), request_body(content = Option<RotateInput>, description = "optional: your own whsec_ secret"), responses((status = 200, description = "the new secret; the previous one signs until previousSecretExpiresAt"), (status = 404, description = "no such webhook"), (status = 422, description = "bad secret"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn rotate_secret(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<RotateInput>,
) -> Result<Response, ApiError> {
    let secret = input.and_then(|i| i.secret);
    let webhook = state.admin.rotate_secret(&tenant, &id, secret.as_deref()).await?;
    Ok(ok(StatusCode::OK, secret_view(&webhook, &state.admin.secret(&webhook)?)))
}

#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", security(("apiKey" = [])), request_body = relay_core::domain::WebhookInput, responses((status = 201, description = "registered; the secret is shown this once"), (status = 400, description = "not JSON"), (status = 422, description = "invalid webhook"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn create_webhook(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<Response, ApiError> {
    let webhook = state.admin.create(&tenant, input).await?;
    let secret = state.admin.secret(&webhook)?;
    let held = state.admin.state(&webhook).await;
    Ok(ok(StatusCode::CREATED, WebhookView::with_secret(&webhook, held, &secret)))
}

#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", security(("apiKey" = [])), params(("limit" = Option<u32>, Query, description = "1-500, default 50"), ("offset" = Option<u32>, Query, description = "0-100000"), ("cursor" = Option<String>, Query, description = "the nextCursor of the previous page")), responses((status = 200, description = "the tenant's webhooks, newest first"), (status = 422, description = "bad paging"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn list_webhooks(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    params: Params,
) -> Result<Response, ApiError> {
    let page = params.page(PageRequest::MAX_LIMIT)?;
    let webhooks = state.admin.list(&tenant, &page).await?;
    let states = state.admin.states(&webhooks.items).await;
    let views: Vec<WebhookView<'_>> =
        webhooks.items.iter().zip(states).map(|(webhook, held)| WebhookView::new(webhook, held)).collect();
    Ok(list(relay_core::domain::Page { items: views, next_cursor: webhooks.next_cursor.clone() }, &page))
}

#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path, description = "the webhook id")), responses((status = 200, description = "the webhook"), (status = 404, description = "no such webhook for this tenant"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn get_webhook(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let webhook = state.admin.get(&tenant, &id).await?;
    let held = state.admin.state(&webhook).await;
    Ok(ok(StatusCode::OK, WebhookView::new(&webhook, held)))
}

#[utoipa::path(put, path = "/api/webhooks/{id}", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path, description = "the webhook id")), request_body = relay_core::domain::WebhookInput, responses((status = 200, description = "updated (partial: omitted fields stay)"), (status = 404, description = "no such webhook"), (status = 422, description = "invalid change"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn update_webhook(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<Response, ApiError> {
    let webhook = state.admin.update(&tenant, &id, input).await?;
    let held = state.admin.state(&webhook).await;
    Ok(ok(StatusCode::OK, WebhookView::new(&webhook, held)))
}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path, description = "the webhook id")), responses((status = 200, description = "deleted"), (status = 404, description = "no such webhook"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn delete_webhook(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.admin.delete(&tenant, &id).await?;
    Ok(ok(StatusCode::OK, json!({ "id": id, "deleted": true })))
}

#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path), ("status" = Option<String>, Query, description = "pending, retrying, succeeded or failed"), ("limit" = Option<u32>, Query, description = "1-500, default 50"), ("offset" = Option<u32>, Query, description = "0-100000"), ("cursor" = Option<String>, Query, description = "the nextCursor of the previous page")), responses((status = 200, description = "one delivery per event with its attempts, newest first"), (status = 404, description = "no such webhook"), (status = 422, description = "bad filter or paging"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn list_deliveries(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let page = params.page(PageRequest::MAX_LIMIT)?;
    let status = match params.get("status") {
        None => None,
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| Error::validation("status", "must be one of pending, retrying, succeeded, failed"))?,
        ),
    };
    let deliveries = state.admin.deliveries(&tenant, &id, status, &page).await?;
    let views: Vec<DeliveryView<'_>> = deliveries.items.iter().map(DeliveryView::new).collect();
    Ok(list(relay_core::domain::Page { items: views, next_cursor: deliveries.next_cursor.clone() }, &page))
}

#[utoipa::path(post, path = "/api/webhooks/{id}/retry/{event_id}", tag = "webhooks", security(("apiKey" = [])), params(("id" = String, Path, description = "the webhook id"), ("event_id" = String, Path, description = "the event id")), responses((status = 200, description = "the delivery after one manual attempt, made now"), (status = 404, description = "no delivery of that event to that webhook"), (status = 409, description = "webhook disabled"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn retry_delivery(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    ApiPath((webhook_id, event_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let delivery = state.admin.retry(&tenant, &webhook_id, &event_id).await?;
    Ok(ok(StatusCode::OK, DeliveryView::new(&delivery)))
}
