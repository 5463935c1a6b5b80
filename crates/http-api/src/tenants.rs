//! The tenants API, for internal services (the platform owns its customer list):
//! `POST/GET /api/tenants`, `GET/PUT/DELETE /api/tenants/{id}`,
//! `POST/GET /api/tenants/{id}/api-keys`, `DELETE /api/tenants/{id}/api-keys/{keyId}`,
//! `POST /api/tenants/{id}/portal-links`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use super::envelope::{list, ok};
use super::extract::{ApiJson, ApiPath, OptionalJson, Params, ServiceCaller};
use super::views::ApiKeyView;
use super::webhooks::ManagementState;
use crate::ApiError;
use relay_core::domain::{ApiKeyInput, PageRequest, PortalLinkInput, TenantInput};

/// Where a portal link signs in: the token follows.
pub const PORTAL_PATH: &str = "/dashboard/portal/";

pub fn routes() -> Router<ManagementState> {
    Router::new()
        .route("/api/tenants", get(list_tenants).post(create_tenant))
        .route("/api/tenants/{id}", get(get_tenant).put(update_tenant).delete(delete_tenant))
        .route("/api/tenants/{id}/api-keys", get(list_keys).post(create_key))
        .route("/api/tenants/{id}/api-keys/{keyId}", delete(revoke_key))
        .route("/api/tenants/{id}/portal-links", post(create_portal_link))
}

#[utoipa::path(post, path = "/api/tenants", tag = "tenants", security(("serviceToken" = [])), request_body = TenantInput, responses((status = 201, description = "the tenant"), (status = 409, description = "a tenant with this id exists"), (status = 422, description = "invalid tenant"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn create_tenant(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiJson(input): ApiJson<TenantInput>,
) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::CREATED, state.tenants.create(input).await?))
}

#[utoipa::path(get, path = "/api/tenants", tag = "tenants", security(("serviceToken" = [])), params(("limit" = Option<u32>, Query, description = "1-500, default 50"), ("offset" = Option<u32>, Query), ("cursor" = Option<String>, Query)), responses((status = 200, description = "stored tenants, newest first (tenants that exist only because API_KEYS names them are not listed)"), (status = 422, description = "bad paging"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn list_tenants(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    params: Params,
) -> Result<Response, ApiError> {
    let page = params.page(PageRequest::MAX_LIMIT)?;
    Ok(list(state.tenants.list(&page).await?, &page))
}

#[utoipa::path(get, path = "/api/tenants/{id}", tag = "tenants", security(("serviceToken" = [])), params(("id" = String, Path)), responses((status = 200, description = "the tenant (also one that exists because API_KEYS names it)"), (status = 404, description = "no such tenant"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn get_tenant(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::OK, state.tenants.get(&id).await?))
}

#[utoipa::path(put, path = "/api/tenants/{id}", tag = "tenants", security(("serviceToken" = [])), params(("id" = String, Path)), request_body = TenantInput, responses((status = 200, description = "the tenant as changed: name, isActive, rateLimitPerMinute, maxWebhooks"), (status = 404, description = "no such tenant"), (status = 422, description = "invalid change"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn update_tenant(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<TenantInput>,
) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::OK, state.tenants.update(&id, input).await?))
}

#[utoipa::path(delete, path = "/api/tenants/{id}", tag = "tenants", security(("serviceToken" = [])), params(("id" = String, Path)), responses((status = 200, description = "the tenant, its webhooks and its keys removed (its delivery log ages out with the log's retention)"), (status = 404, description = "no such tenant"), (status = 409, description = "the tenant exists only because API_KEYS names it"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn delete_tenant(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.tenants.delete(&id).await?;
    Ok(ok(StatusCode::OK, json!({ "id": id, "deleted": true })))
}

#[utoipa::path(post, path = "/api/tenants/{id}/api-keys", tag = "tenants", security(("serviceToken" = [])), params(("id" = String, Path)), request_body = ApiKeyInput, responses((status = 201, description = "{ id, name, key, prefix, createdAt }: the key is shown this once"), (status = 404, description = "no such tenant"), (status = 422, description = "invalid name, or the tenant holds 50 keys"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn create_key(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ApiKeyInput>,
) -> Result<Response, ApiError> {
    let issued = state.tenants.issue_key(&id, input).await?;
    let view = ApiKeyView { key: Some(&issued.secret), ..ApiKeyView::new(&issued.key) };
    let mut response = ok(StatusCode::CREATED, view);
    response.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(get, path = "/api/tenants/{id}/api-keys", tag = "tenants", security(("serviceToken" = [])), params(("id" = String, Path)), responses((status = 200, description = "the tenant's keys: id, name, prefix, createdAt, lastUsedAt (never the key)"), (status = 404, description = "no such tenant"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn list_keys(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let keys = state.tenants.keys(&id).await?;
    Ok(ok(StatusCode::OK, keys.iter().map(ApiKeyView::new).collect::<Vec<_>>()))
}

#[utoipa::path(delete, path = "/api/tenants/{id}/api-keys/{keyId}", tag = "tenants", security(("serviceToken" = [])), params(("id" = String, Path), ("keyId" = String, Path)), responses((status = 200, description = "revoked: refused within 5 seconds on every process"), (status = 404, description = "no such tenant or key"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn revoke_key(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    state.tenants.revoke_key(&id, &key_id).await?;
    Ok(ok(StatusCode::OK, json!({ "id": key_id, "revoked": true })))
}

#[utoipa::path(post, path = "/api/tenants/{id}/portal-links", tag = "tenants", security(("serviceToken" = [])), params(("id" = String, Path)), request_body = PortalLinkInput, responses((status = 201, description = "{ url, expiresAt }: a single-use link signing its holder into /dashboard as the tenant"), (status = 404, description = "no such tenant"), (status = 409, description = "the tenant is disabled"), (status = 422, description = "ttlSeconds out of range (60-86400)"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
async fn create_portal_link(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    OptionalJson(input): OptionalJson<PortalLinkInput>,
) -> Result<Response, ApiError> {
    let issued = state.tenants.portal_link(&id, input.unwrap_or_default()).await?;
    let url = format!("{}{PORTAL_PATH}{}", base_url(state.public_url.as_deref(), &headers), issued.token);
    let mut response = ok(StatusCode::CREATED, json!({ "url": url, "expiresAt": issued.expires_at }));
    response.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response.into_response())
}

/// The relay's address as its users reach it: `PUBLIC_URL` when set, else the request's
/// `Host` (http for a loopback host, https otherwise).
fn base_url(public_url: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let name = host.rsplit_once(':').map_or(host, |(name, port)| if port.contains(']') { host } else { name });
    let loopback = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    format!("{}://{host}", if loopback { "http" } else { "https" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_is_the_setting_or_the_host() {
        let headers = |host: &str| {
            let mut map = HeaderMap::new();
            map.insert(header::HOST, host.parse().unwrap());
            map
        };
        assert_eq!(base_url(Some("https://relay.example.com/"), &headers("x")), "https://relay.example.com");
        assert_eq!(base_url(None, &headers("127.0.0.1:3000")), "http://127.0.0.1:3000");
        assert_eq!(base_url(None, &headers("[::1]:3000")), "http://[::1]:3000");
        assert_eq!(base_url(None, &headers("api.example.com")), "https://api.example.com");
    }
}
