//! The operators' dashboard at `/dashboard`: server-rendered HTML (maud), one embedded
//! stylesheet and no script, under a Content-Security-Policy that loads nothing from anywhere
//! else. An operator signs in with an API key, which is exchanged for a signed session cookie
//! (the key is not kept); every page shows the session's tenant only; every form that changes
//! state carries a CSRF token tied to the session.

mod pages;
mod session;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use session::{COOKIE, Session, Sessions};

use crate::Timestamp;
use crate::api::ManagementState;
use crate::domain::PageRequest;
use pages::Frame;

/// HTML pages load only the relay's own stylesheet, and post forms only to the relay.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLESHEET: &str = include_str!("app.css");
const SIGN_IN: &str = "/dashboard/sign-in";

#[derive(Clone, Debug)]
pub struct WebState {
    pub management: ManagementState,
    pub sessions: Sessions,
    /// Mark the cookie `Secure` even when the request does not say it came over https.
    pub always_secure: bool,
}

pub fn routes(state: WebState) -> Router {
    Router::new()
        .route("/dashboard", get(overview))
        .route("/dashboard/webhooks", get(webhooks))
        .route(SIGN_IN, get(sign_in_form).post(sign_in))
        .route("/dashboard/sign-out", post(sign_out))
        .route("/dashboard/assets/app.css", get(stylesheet))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(state)
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, Html(markup.into_string())).into_response();
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}

/// A signed-in request: the session from a valid cookie, else a redirect to the sign-in page.
#[derive(Debug)]
pub struct SignedIn(pub Session);

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        cookie(&parts.headers, COOKIE)
            .and_then(|value| state.sessions.verify(value, Timestamp::now()))
            .map(Self)
            .ok_or_else(|| Redirect::to(SIGN_IN).into_response())
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

/// The fields of a form post (`application/x-www-form-urlencoded`).
fn form(body: &Bytes) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn field(body: &Bytes, name: &str) -> Option<String> {
    form(body).find_map(|(key, value)| (key == name).then_some(value))
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
    html(StatusCode::OK, pages::sign_in(None))
}

async fn sign_in(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> Response {
    let key = field(&body, "api_key").unwrap_or_default();
    let Some(tenant) = state.management.access.credentials.tenant(key.trim()) else {
        tracing::info!("dashboard sign-in refused");
        return html(StatusCode::UNAUTHORIZED, pages::sign_in(Some("That API key is not valid.")));
    };
    let (session, value) = state.sessions.issue(tenant, Timestamp::now());
    tracing::info!(tenant = %session.tenant, "dashboard sign-in");
    let mut response = Redirect::to("/dashboard").into_response();
    let cookie = session_cookie(&value, state.sessions.ttl().as_secs(), over_https(&state, &headers));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

async fn sign_out(
    State(state): State<WebState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.sessions.csrf_ok(&session, &field(&body, "csrf").unwrap_or_default()) {
        return forbidden();
    }
    let mut response = Redirect::to(SIGN_IN).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, over_https(&state, &headers)));
    response
}

fn forbidden() -> Response {
    html(StatusCode::FORBIDDEN, pages::message("Refused", "This form has expired or did not come from this dashboard. Reload the page and try again."))
}

/// A page for a failure of the relay itself (a store down), with the status it maps to.
fn failure(err: crate::Error) -> Response {
    let status = err.into_response().status();
    html(status, pages::message("Unavailable", "Part of the relay did not answer. Try again in a moment."))
}

async fn overview(State(state): State<WebState>, SignedIn(session): SignedIn) -> Response {
    let overview = match state.management.dashboard.overview(&session.tenant).await {
        Ok(overview) => overview,
        Err(err) => return failure(err),
    };
    let health = state.management.health.run().await;
    let csrf = state.sessions.csrf_token(&session);
    html(StatusCode::OK, pages::overview(&Frame { tenant: &session.tenant, csrf: &csrf }, &overview, &health))
}

async fn webhooks(State(state): State<WebState>, SignedIn(session): SignedIn) -> Response {
    let page = PageRequest { limit: PageRequest::MAX_LIMIT, ..PageRequest::default() };
    let listed = match state.management.admin.list(&session.tenant, &page).await {
        Ok(listed) => listed,
        Err(err) => return failure(err),
    };
    let csrf = state.sessions.csrf_token(&session);
    html(StatusCode::OK, pages::webhooks(&Frame { tenant: &session.tenant, csrf: &csrf }, &listed.items))
}
