//! The operators' dashboard at `/dashboard`: server-rendered HTML (maud), one embedded
//! stylesheet and no script, under a Content-Security-Policy that loads nothing from anywhere
//! else. An operator signs in with an API key, which is exchanged for a signed session cookie
//! (the key is not kept); every page shows the session's tenant only; every form that changes
//! state carries a CSRF token tied to the session.

mod events;
mod layout;
mod overview;
mod session;
mod webhooks;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

pub use session::{COOKIE, Session, Sessions};

use layout::Frame;
use relay_core::Timestamp;
use relay_core::ports::Cache;
use relay_core::settings::{ConfigError, Redacted, Vars};
use relay_http_api::ManagementState;
use relay_http_api::{ApiError, Params};

/// HTML pages load only the relay's own stylesheet, and post forms only to the relay.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLESHEET: &str = include_str!("app.css");
const SIGN_IN: &str = "/dashboard/sign-in";
/// Form posts are small; the largest is the create form.
const FORM_LIMIT: usize = 16 * 1024;

#[derive(Clone, Debug)]
pub struct WebState {
    pub management: ManagementState,
    pub sessions: Sessions,
    /// Sessions signed out before they expired (shared between processes through Redis).
    pub ended: Arc<dyn Cache>,
    /// Mark the cookie `Secure` even when the request does not say it came over https.
    pub always_secure: bool,
}

/// How long a dashboard session lasts before signing in again.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// `DASHBOARD_SESSION_SECRET` (at least 32 characters): signs the session cookies. Unset,
/// relay-local makes a random one at start (sessions end with the process) and relay-api
/// serves no dashboard.
pub fn session_secret(vars: &Vars) -> Result<Option<Redacted<String>>, ConfigError> {
    match vars.redacted("DASHBOARD_SESSION_SECRET") {
        Some(secret) if secret.0.len() < 32 => {
            Err(ConfigError::new("DASHBOARD_SESSION_SECRET", "must be at least 32 characters"))
        }
        secret => Ok(secret),
    }
}

/// The dashboard's routes over `management`, sessions signed with `secret` and checked against
/// `ended` (the shared list of signed-out sessions).
pub fn pages(management: ManagementState, secret: Vec<u8>, ended: Arc<dyn Cache>, always_secure: bool) -> Router {
    routes(WebState { management, sessions: Sessions::new(secret, SESSION_TTL), ended, always_secure })
}

pub fn routes(state: WebState) -> Router {
    Router::new()
        .route("/dashboard", get(overview::overview))
        .route("/dashboard/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/dashboard/webhooks/new", get(webhooks::new_form))
        .route("/dashboard/webhooks/{id}", get(webhooks::detail))
        .route("/dashboard/webhooks/{id}/enable", post(webhooks::enable))
        .route("/dashboard/webhooks/{id}/disable", post(webhooks::disable))
        .route("/dashboard/webhooks/{id}/delete", get(webhooks::delete_form).post(webhooks::delete))
        .route("/dashboard/webhooks/{id}/secret", post(webhooks::reveal_secret))
        .route("/dashboard/webhooks/{id}/secret/rotate", post(webhooks::rotate_secret))
        .route("/dashboard/webhooks/{id}/retry/{event_id}", post(webhooks::retry))
        .route("/dashboard/webhooks/{id}/recover", post(webhooks::recover))
        .route("/dashboard/events", get(events::list))
        .route("/dashboard/events/{id}", get(events::detail))
        .route(SIGN_IN, get(sign_in_form).post(sign_in))
        .route("/dashboard/portal/{token}", get(portal))
        .route("/dashboard/sign-out", post(sign_out))
        .route("/dashboard/assets/app.css", get(stylesheet))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

/// A page: HTML under the Content-Security-Policy, never cached (it shows a tenant's data).
fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A signed-in operator: the session from a valid cookie, else a redirect to the sign-in page.
#[derive(Debug)]
pub struct Operator {
    pub session: Session,
    /// The token this session's forms carry.
    pub csrf: String,
}

impl Operator {
    fn frame(&self) -> Frame<'_> {
        Frame { tenant: &self.session.tenant, csrf: &self.csrf }
    }
}

impl FromRequestParts<WebState> for Operator {
    type Rejection = Response;

    /// The session must be signed by us and unexpired, its key must still be one of its
    /// tenant's keys, and it must not have been signed out; then the request counts against
    /// the tenant's rate limit, as an API call does.
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        let access = &state.management.access;
        let session = cookie(&parts.headers, COOKIE)
            .and_then(|value| state.sessions.verify(value, Timestamp::now()))
            .ok_or_else(|| signed_out(state, &parts.headers))?;
        let tenant = match state.sessions.tenant_of(&session, &access.directory).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => return Err(signed_out(state, &parts.headers)),
            Err(err) => return Err(failure(err)),
        };
        match state.ended.get(&session.ended_key()).await {
            Ok(None) => {}
            Ok(Some(_)) => return Err(signed_out(state, &parts.headers)),
            // Without the list of ended sessions a signed-out cookie cannot be told apart: refuse.
            Err(err) => return Err(failure(err)),
        }
        access.admit_tenant(&tenant).await.map_err(failure)?;
        let csrf = state.sessions.csrf_token(&session);
        Ok(Self { session, csrf })
    }
}

/// To the sign-in page, dropping the cookie that did not pass.
fn signed_out(state: &WebState, headers: &HeaderMap) -> Response {
    let mut response = Redirect::to(SIGN_IN).into_response();
    if cookie(headers, COOKIE).is_some() {
        response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, over_https(state, headers)));
    }
    response
}

/// A form a signed-in operator posted from this dashboard: same origin (when the browser says
/// where it came from) and carrying the session's CSRF token; else a 403 page.
#[derive(Debug)]
pub struct Posted {
    pub operator: Operator,
    fields: Vec<(String, String)>,
}

impl Posted {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find_map(|(key, value)| (key == name).then_some(value.as_str()))
    }

    fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

impl FromRequest<WebState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &WebState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        if !same_origin(&parts.headers) {
            return Err(forbidden());
        }
        let body = read_form(Request::from_parts(parts, body), state).await?;
        let fields: Vec<(String, String)> = form(&body).collect();
        let token =
            fields.iter().find_map(|(key, value)| (key == "csrf").then_some(value.as_str())).unwrap_or_default();
        if !state.sessions.csrf_ok(&operator.session, token) {
            return Err(forbidden());
        }
        Ok(Self { operator, fields })
    }
}

/// False when the browser says the request comes from elsewhere. Browsers send
/// `Sec-Fetch-Site`, which must be `same-origin` (or `none`: typed by the user); without it,
/// an `Origin` must name this host. A request with neither passes: the CSRF token decides.
/// (`Origin` alone is not enough: under the relay's `Referrer-Policy: no-referrer` browsers
/// send `Origin: null` even for the dashboard's own forms.)
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// A path parameter; one that is not UTF-8 (or is missing) is a 404 page.
#[derive(Debug)]
pub struct WebPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<WebState> for WebPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state).await.map(|Path(value)| Self(value)).map_err(|_| not_found())
    }
}

/// The query string's parameters: the API's [`Params`], with a page for the rare string
/// that does not decode.
#[derive(Debug)]
pub struct Query(Params);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Params::from_request_parts(parts, state).await.map(Self).map_err(|ApiError(err)| failure(err))
    }
}

/// The value of cookie `name`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The fields of a form post or a query string (`application/x-www-form-urlencoded`).
fn form(body: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={value}; Path=/dashboard; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("relay_session=; Max-Age=0"))
}

fn over_https(state: &WebState, headers: &HeaderMap) -> bool {
    state.always_secure || headers.get("x-forwarded-proto").is_some_and(|proto| proto.as_bytes() == b"https")
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLESHEET)
        .into_response()
}

async fn sign_in_form() -> Response {
    html(StatusCode::OK, layout::sign_in(None))
}

async fn sign_in(State(state): State<WebState>, request: Request) -> Response {
    // A cross-site sign-in would put the victim in the attacker's tenant (login CSRF).
    if !same_origin(request.headers()) {
        return forbidden();
    }
    let secure = over_https(&state, request.headers());
    let (parts, body) = request.into_parts();
    let client = relay_http_api::client_ip(&parts);
    let body = match read_form(Request::from_parts(parts, body), &state).await {
        Ok(body) => body,
        Err(page) => return page,
    };
    let key = form(&body).find_map(|(name, value)| (name == "api_key").then_some(value)).unwrap_or_default();
    let key = key.trim();
    let access = &state.management.access;
    let tenant = match access.tenant_of_key(client, key).await {
        Ok((tenant, _)) => tenant,
        Err(relay_core::Error::Unauthorized(_)) => {
            tracing::info!("dashboard sign-in refused");
            return html(StatusCode::UNAUTHORIZED, layout::sign_in(Some("That API key is not valid.")));
        }
        Err(relay_core::Error::Forbidden(_)) => {
            tracing::info!("dashboard sign-in refused: tenant disabled");
            return html(StatusCode::FORBIDDEN, layout::sign_in(Some("That API key's tenant is disabled.")));
        }
        Err(other) => return failure(other),
    };
    if let Err(limited) = access.admit_tenant(&tenant).await {
        return failure(limited);
    }
    let (session, value) = state.sessions.issue(tenant.id, &relay_core::auth::digest(key), Timestamp::now());
    tracing::info!(tenant = %session.tenant, "dashboard sign-in");
    signed_in(&state, &value, secure)
}

/// To the overview, with the new session's cookie.
fn signed_in(state: &WebState, cookie_value: &str, secure: bool) -> Response {
    let mut response = Redirect::to("/dashboard").into_response();
    let cookie = session_cookie(cookie_value, state.sessions.ttl().as_secs(), secure);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// A portal link (`POST /api/tenants/{id}/portal-links`): signs its holder in as the tenant,
/// once. Used, expired, or for a tenant disabled since: the sign-in page says so. The token is
/// not a credential an address may guess at: a wrong one counts as a failed sign-in.
async fn portal(State(state): State<WebState>, headers: HeaderMap, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let client = relay_http_api::client_ip(&parts);
    let token = parts.uri.path().strip_prefix(relay_http_api::PORTAL_PATH).unwrap_or_default();
    let access = &state.management.access;
    let tenant = match state.management.tenants.redeem(token).await {
        Ok(found) => access.verify(client, found, relay_core::Error::Unauthorized("invalid portal link")).await,
        Err(err) => return failure(err),
    };
    let tenant = match tenant {
        Ok(tenant) => tenant,
        Err(relay_core::Error::Unauthorized(_)) => {
            tracing::info!("portal link refused: used, expired or unknown");
            let message = "This sign-in link has already been used or has expired. Ask for a new link, or sign in with an API key.";
            return html(StatusCode::UNAUTHORIZED, layout::sign_in(Some(message)));
        }
        Err(other) => return failure(other),
    };
    let (session, value) = state.sessions.issue_portal(tenant, Timestamp::now());
    tracing::info!(tenant = %session.tenant, "dashboard sign-in by portal link");
    signed_in(&state, &value, over_https(&state, &headers))
}

/// Ends the session everywhere: its nonce goes on the shared list of ended sessions until it
/// would have expired anyway, and the browser drops the cookie.
async fn sign_out(State(state): State<WebState>, headers: HeaderMap, posted: Posted) -> Response {
    let session = &posted.operator.session;
    let left = Duration::from_millis(
        u64::try_from(session.expires_at.as_millis() - Timestamp::now().as_millis()).unwrap_or(0),
    );
    if let Err(err) = state.ended.put(&session.ended_key(), b"1", left.max(Duration::from_secs(1))).await {
        return failure(err);
    }
    tracing::info!(tenant = %session.tenant, "dashboard sign-out");
    let mut response = Redirect::to(SIGN_IN).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, over_https(&state, &headers)));
    response
}

fn forbidden() -> Response {
    let text = "This form has expired or did not come from this dashboard. Reload the page and try again.";
    html(StatusCode::FORBIDDEN, layout::message("Refused", text))
}

fn not_found() -> Response {
    html(StatusCode::NOT_FOUND, layout::message("Not found", "There is nothing here for your tenant."))
}

/// A form's body: a page saying why when it is too large or did not arrive in time.
async fn read_form(request: Request, state: &WebState) -> Result<Bytes, Response> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if relay_http_api::is_body_timeout(&rejection) {
            failure(relay_core::Error::RequestTimeout)
        } else {
            too_large()
        }
    })
}

fn too_large() -> Response {
    html(StatusCode::PAYLOAD_TOO_LARGE, layout::message("Too large", "That form is larger than the dashboard accepts."))
}

/// What a validation error says, one line per field (`url: must be https`).
fn problems(message: &str, details: &[relay_core::error::FieldError]) -> Vec<String> {
    if details.is_empty() {
        return vec![message.to_owned()];
    }
    details.iter().map(|d| format!("{}: {}", d.field, d.message)).collect()
}

/// The page for an error, with the status (and `Retry-After`) the API gives it.
fn failure(err: relay_core::Error) -> Response {
    use relay_core::Error;
    let (title, text) = match &err {
        Error::NotFound(what) => ("Not found", format!("No such {what} for your tenant.")),
        Error::RateLimited { .. } => {
            ("Slow down", "Too many requests in this minute. Try again in a moment.".to_owned())
        }
        Error::RequestTimeout => ("Too slow", "The form did not arrive in time. Try again.".to_owned()),
        Error::Validation { message, details } => ("Not done", problems(message, details).join("; ")),
        Error::Conflict { message, .. } => ("Not done", message.clone()),
        _ => ("Unavailable", "Part of the relay did not answer. Try again in a moment.".to_owned()),
    };
    let api = ApiError(err).into_response();
    let mut page = html(api.status(), layout::message(title, &text));
    if let Some(value) = api.headers().get(header::RETRY_AFTER) {
        page.headers_mut().insert(header::RETRY_AFTER, value.clone());
    }
    page
}
