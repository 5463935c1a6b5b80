//! Extractors that turn every bad request into the error envelope: JSON bodies, query
//! strings, and the two kinds of credential.

use std::collections::HashMap;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::auth::Credentials;
use crate::domain::{PageRequest, TenantId};
use crate::ports::{RateDecision, RateLimiter};

pub const SERVICE_TOKEN: &str = "x-service-token";
pub const API_KEY: &str = "x-api-key";

/// A JSON body: 400 when it is not JSON, 422 when it is JSON of the wrong shape, 413 when it
/// is over the route's limit. The content type is not insisted on.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// The largest body a router accepts, for the 413 message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    BodyLimit: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_object(&read_body(request, state).await?).map(ApiJson)
    }
}

/// The whole body, within the router's limit (413 past it).
async fn read_body<S>(request: Request, state: &S) -> Result<Bytes, Error>
where
    S: Send + Sync,
    BodyLimit: FromRef<S>,
{
    Bytes::from_request(request, state).await.map_err(|rejection: BytesRejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge { limit: BodyLimit::from_ref(state).0 }
        } else {
            Error::BadJson(rejection.body_text())
        }
    })
}

/// A JSON object: 400 when the bytes are not JSON, 422 when the shape is wrong.
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::BadJson(e.to_string()))?;
    if !value.is_object() {
        return Err(Error::validation("body", "must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| Error::validation("body", e.to_string()))
}

/// Like [`ApiJson`], but an empty body is `None`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    BodyLimit: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        parse_object(&bytes).map(|value| Self(Some(value)))
    }
}

/// The path's ids. A segment that is not UTF-8 (`%FF`) names nothing: 404, as any malformed
/// id is (axum's own `Path` answers 400 in plain text).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(ids)) => Ok(Self(ids)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(Error::RouteNotFound("nothing here: a path segment is not a valid id".into()))
            }
            Err(other) => Err(Error::Internal(other.body_text())),
        }
    }
}

/// The query string as name/value pairs; the handler picks and checks what it uses.
#[derive(Debug)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `limit`, `offset` and `cursor`.
    pub fn page(&self, max_limit: usize) -> Result<PageRequest, Error> {
        PageRequest::parse(self.get("limit"), self.get("offset"), self.get("cursor"), max_limit)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::validation("query", e.body_text()))?;
        Ok(Self(map))
    }
}

/// Who may call, and how often: the credentials, and the per-credential rate limit.
#[derive(Debug, Clone)]
pub struct Access {
    pub credentials: Arc<Credentials>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Requests per credential per minute; 0 turns limiting off.
    pub per_minute: u32,
}

impl Access {
    /// Counts a request of `caller`; 429 past the limit. A limiter that fails lets the request
    /// through: rate limits protect the relay, they must not take it down with Redis.
    async fn admit(&self, caller: &str) -> Result<(), Error> {
        if self.per_minute == 0 {
            return Ok(());
        }
        match self.limiter.hit(caller, self.per_minute).await {
            Ok(RateDecision::Allowed) => Ok(()),
            Ok(RateDecision::Limited { retry_after }) => Err(Error::RateLimited { retry_after }),
            Err(err) => {
                tracing::warn!(error = %err, "rate limiter unavailable; request let through");
                Ok(())
            }
        }
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

/// An internal service, proven by `X-Service-Token`.
#[derive(Debug, Clone, Copy)]
pub struct ServiceCaller;

impl<S> FromRequestParts<S> for ServiceCaller
where
    S: Send + Sync,
    Access: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let access = Access::from_ref(state);
        match header(parts, SERVICE_TOKEN) {
            Some(token) if access.credentials.service(token) => {
                // Each token is counted apart, by a digest that does not reveal it.
                let id = hex::encode(&Sha256::digest(token.as_bytes())[..8]);
                access.admit(&format!("service:{id}")).await?;
                Ok(Self)
            }
            Some(_) => Err(Error::Unauthorized("invalid service token")),
            None if header(parts, API_KEY).is_some() => {
                Err(Error::Forbidden("the events API is for internal services: send X-Service-Token"))
            }
            None => Err(Error::Unauthorized("missing X-Service-Token header")),
        }
    }
}

/// An external client, proven by `X-Api-Key`, acting for the key's tenant.
#[derive(Debug, Clone)]
pub struct TenantCaller(pub TenantId);

impl<S> FromRequestParts<S> for TenantCaller
where
    S: Send + Sync,
    Access: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let access = Access::from_ref(state);
        match header(parts, API_KEY) {
            Some(key) => {
                let tenant = access.credentials.tenant(key).ok_or(Error::Unauthorized("invalid API key"))?;
                access.admit(&format!("tenant:{tenant}")).await?;
                Ok(Self(tenant))
            }
            None if header(parts, SERVICE_TOKEN).is_some() => {
                Err(Error::Forbidden("this API belongs to a tenant: send X-Api-Key"))
            }
            None => Err(Error::Unauthorized("missing X-Api-Key header")),
        }
    }
}
