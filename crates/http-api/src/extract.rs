//! Extractors that turn every bad request into the error envelope: JSON bodies, query
//! strings, and the two kinds of credential.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::error::Category;
use serde_json::value::RawValue;

use std::sync::Arc;

use crate::ApiError;
use relay_core::Error;
use relay_core::auth::{Directory, KeyOwner};
use relay_core::domain::js_json::{self, Numbers};
use relay_core::domain::{PageRequest, Tenant, TenantId};
use relay_core::ports::{RateDecision, RateLimiter};

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
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(parse_object(&read_body(request, state).await?).map(ApiJson)?)
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
        } else if crate::is_body_timeout(&rejection) {
            Error::RequestTimeout
        } else {
            Error::BadJson(rejection.body_text())
        }
    })
}

/// The deepest a body may nest: serde_json's own limit, which the first pass (it skips values
/// without recursing) does not apply.
const MAX_BODY_DEPTH: usize = 127;

/// A JSON object: 400 when the bytes are not JSON (or nest deeper than 127 levels), 422 when
/// the shape is wrong. Read straight from the bytes (no intermediate value), so a field may
/// keep its JSON text (the events API's payload). A field given twice takes its last value,
/// as `JSON.parse` does.
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice::<IgnoredAny>(bytes).map_err(|e| Error::BadJson(e.to_string()))?;
    // Skipping does not check that `\uD8xx` escapes pair up; where one appears, read it all.
    if has_surrogate_escape(bytes) {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::BadJson(e.to_string()))?;
        if let Err(problems) = js_json::normalize(text, "body", Numbers::Lenient) {
            let first = problems.first().map(|p| format!("{}: {}", p.path, p.message)).unwrap_or_default();
            return Err(Error::BadJson(first));
        }
    }
    if relay_core::domain::nesting(bytes) > MAX_BODY_DEPTH {
        return Err(Error::BadJson(format!("nests deeper than {MAX_BODY_DEPTH} levels (recursion limit exceeded)")));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::validation("body", "must be a JSON object"));
    }
    match serde_json::from_slice(bytes) {
        Err(e) if e.classify() == Category::Data && e.to_string().starts_with("duplicate field") => {
            last_of_each_field(bytes)
        }
        parsed => parsed.map_err(shape),
    }
}

/// Whether `bytes` hold a `\uD800`-`\uDFFF` escape (UTF-16 surrogates, which must pair).
fn has_surrogate_escape(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| matches!(w, [b'\\', b'u', b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F']))
}

/// The object with each field's last value only, read as `T`.
fn last_of_each_field<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(bytes).map_err(shape)?;
    let deduplicated = serde_json::to_vec(&fields).map_err(|e| Error::Internal(e.to_string()))?;
    serde_json::from_slice(&deduplicated).map_err(shape)
}

/// A body that is JSON but not what the route takes: 422 for a wrong field, type or value
/// (without serde's position, of no use to a caller), a number beyond a double's range
/// included (JSON allows any number; serde_json calls it a syntax error when a field's type
/// makes it read one); 400 for what the first pass let through, a string that is not Unicode
/// (a lone surrogate).
fn shape(e: serde_json::Error) -> Error {
    let text = e.to_string();
    let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(message, _)| message);
    match e.classify() {
        Category::Data => Error::validation("body", message),
        Category::Syntax if message == "number out of range" => {
            Error::validation("body", "holds a number out of range")
        }
        Category::Syntax | Category::Eof | Category::Io => Error::BadJson(text),
    }
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
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        Ok(parse_object(&bytes).map(|value| Self(Some(value)))?)
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
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(ids)) => Ok(Self(ids)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError(Error::RouteNotFound("nothing here: a path segment is not a valid id".into())))
            }
            Err(other) => Err(ApiError(Error::Internal(other.body_text()))),
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
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::validation("query", e.body_text()))?;
        Ok(Self(map))
    }
}

/// Who may call, and how often: the credentials, the per-credential rate limit, and the limit
/// on failed credentials per client address.
#[derive(Debug, Clone)]
pub struct Access {
    /// The credentials, and the tenants and keys managed through the API.
    pub directory: Arc<Directory>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Requests per credential per minute; 0 turns limiting off.
    pub per_minute: u32,
    /// Failed credentials (a wrong API key, service token or dashboard sign-in) per client
    /// address per minute before that address is refused with 429; 0 turns it off.
    pub failures_per_minute: u32,
    /// Addresses this process has seen go over their failure limit, and until when. Checked
    /// before any credential, so an address that is over cannot go on guessing; kept here so
    /// that the check costs no round trip to the shared limiter.
    blocked: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

/// Addresses remembered as blocked at most; past it the expired ones are dropped, then the
/// oldest.
const MAX_BLOCKED: usize = 100_000;

impl Access {
    /// `settings` gives the limits: requests per credential and failed credentials per
    /// client address, each per minute.
    pub fn new(directory: Arc<Directory>, limiter: Arc<dyn RateLimiter>, settings: &crate::ApiSettings) -> Self {
        Self {
            directory,
            limiter,
            per_minute: settings.rate_limit_per_minute,
            failures_per_minute: settings.auth_failure_limit_per_minute,
            blocked: Arc::default(),
        }
    }

    /// Counts a request of `caller`; 429 past the limit. A limiter that fails lets the request
    /// through: rate limits protect the relay, they must not take it down with Redis.
    pub async fn admit(&self, caller: &str) -> Result<(), Error> {
        if self.per_minute == 0 {
            return Ok(());
        }
        self.count(caller, self.per_minute).await
    }

    /// Counts a request of `tenant` (its keys and dashboard sessions share one count) against
    /// its own `rateLimitPerMinute`, else the relay's; 429 past it.
    pub async fn admit_tenant(&self, tenant: &Tenant) -> Result<(), Error> {
        match tenant.rate_limit_per_minute {
            Some(limit) => self.count(&format!("tenant:{}", tenant.id), limit).await,
            None => self.admit(&format!("tenant:{}", tenant.id)).await,
        }
    }

    /// The tenant `key` belongs to, counted as a credential check from `client` (401 for no
    /// key, 403 for a disabled tenant's key, 503 when the store of keys cannot be read).
    pub async fn tenant_of_key(&self, client: Option<IpAddr>, key: &str) -> Result<(Tenant, [u8; 32]), Error> {
        self.check_client(client)?;
        let owner = self.directory.key(key).await?;
        match self.verify(client, owner, Error::Unauthorized("invalid API key")).await? {
            KeyOwner::Active(tenant, digest) => Ok((tenant, digest)),
            KeyOwner::Disabled(_) => Err(Error::Forbidden("this API key's tenant is disabled")),
        }
    }

    async fn count(&self, key: &str, limit: u32) -> Result<(), Error> {
        match self.limiter.hit(key, limit).await {
            Ok(RateDecision::Allowed) => Ok(()),
            Ok(RateDecision::Limited { retry_after }) => Err(Error::RateLimited { retry_after }),
            Err(err) => {
                tracing::warn!(error = %err, "rate limiter unavailable; request let through");
                Ok(())
            }
        }
    }

    /// A credential's check, counted: `found` is what the credential stands for (`None`: it
    /// matched nothing). 429 while `client` is over its limit of failed credentials, whatever
    /// it sent; `refusal` for a credential that matched nothing (429 once that puts the
    /// address over its limit).
    pub async fn verify<T>(&self, client: Option<IpAddr>, found: Option<T>, refusal: Error) -> Result<T, Error> {
        self.check_client(client)?;
        match found {
            Some(found) => Ok(found),
            None => Err(self.failed(client, refusal).await),
        }
    }

    /// 429 while `client` is over its limit of failed credentials (as far as this process
    /// knows).
    fn check_client(&self, client: Option<IpAddr>) -> Result<(), Error> {
        let Some(ip) = client else { return Ok(()) };
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match blocked.get(&ip) {
            Some(until) if *until > Instant::now() => Err(Error::RateLimited { retry_after: *until - Instant::now() }),
            _ => Ok(()),
        }
    }

    /// Counts a failed credential from `client` and returns the error to answer with: `refusal`,
    /// or 429 once the address is over its limit (it then stays refused until the minute ends,
    /// whatever it sends). A request without a known address counts under one shared key.
    async fn failed(&self, client: Option<IpAddr>, refusal: Error) -> Error {
        if self.failures_per_minute == 0 {
            return refusal;
        }
        let key = match client {
            Some(ip) => format!("auth-failures:{ip}"),
            None => "auth-failures:unknown".to_owned(),
        };
        match self.count(&key, self.failures_per_minute).await {
            Ok(()) => refusal,
            Err(limited) => {
                if let (Some(ip), Error::RateLimited { retry_after }) = (client, &limited) {
                    tracing::warn!(client = %ip, "too many failed credentials; address refused until the minute ends");
                    self.block(ip, Instant::now() + *retry_after);
                }
                limited
            }
        }
    }

    fn block(&self, ip: IpAddr, until: Instant) {
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_BLOCKED
                && let Some(oldest) = blocked.iter().min_by_key(|(_, until)| **until).map(|(ip, _)| *ip)
            {
                blocked.remove(&oldest);
            }
        }
        blocked.insert(ip, until);
    }
}

/// A timestamp parameter `field`: RFC 3339, else 422 naming the field.
pub fn timestamp(field: &str, value: &str) -> Result<relay_core::Timestamp, Error> {
    relay_core::Timestamp::parse_rfc3339(value)
        .ok_or_else(|| Error::validation(field, "must be an RFC 3339 timestamp like 2026-11-28T10:00:00Z"))
}

/// The client's address as the platform in front of the app reports it: the Lambda edge
/// (`relay-lambda-http`) puts the source address API Gateway saw here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's address: [`ClientAddr`] when the platform reported one (Lambda), else the TCP
/// peer's (relay-local). Forwarding headers such as `X-Forwarded-For` are not trusted.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ClientAddr>()
        .map(|ClientAddr(ip)| *ip)
        .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip()))
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
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let access = Access::from_ref(state);
        match header(parts, SERVICE_TOKEN) {
            Some(token) => {
                let known = access.directory.service(token).then_some(());
                access.verify(client_ip(parts), known, Error::Unauthorized("invalid service token")).await?;
                // Each token is counted apart, by a digest that does not reveal it.
                let id = hex::encode(&relay_core::auth::digest(token)[..8]);
                access.admit(&format!("service:{id}")).await?;
                Ok(Self)
            }
            None if header(parts, API_KEY).is_some() => {
                Err(ApiError(Error::Forbidden("the events API is for internal services: send X-Service-Token")))
            }
            None => Err(ApiError(Error::Unauthorized("missing X-Service-Token header"))),
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
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let access = Access::from_ref(state);
        match header(parts, API_KEY) {
            Some(key) => {
                let (tenant, _) = access.tenant_of_key(client_ip(parts), key).await?;
                access.admit_tenant(&tenant).await?;
                Ok(Self(tenant.id))
            }
            None if header(parts, SERVICE_TOKEN).is_some() => {
                Err(ApiError(Error::Forbidden("this API belongs to a tenant: send X-Api-Key")))
            }
            None => Err(ApiError(Error::Unauthorized("missing X-Api-Key header"))),
        }
    }
}
