//! The Lambda edge of relay-ingest and relay-api: serves an axum router to API Gateway
//! (`lambda_http`), passing on the source address API Gateway saw as
//! [`ClientAddr`](relay_http_api::ClientAddr), which the per-address limits count by.

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use lambda_http::request::RequestContext;
use relay_http_api::ClientAddr;

pub use lambda_http::Error;

/// Serves `router` until Lambda stops the process.
pub async fn serve(router: Router) -> Result<(), Error> {
    lambda_http::run(edge(router)).await
}

/// `router` as Lambda serves it: each request with the source address API Gateway saw as
/// its [`ClientAddr`].
pub fn edge(router: Router) -> Router {
    router.layer(middleware::from_fn(with_client_addr))
}

async fn with_client_addr(mut request: Request, next: Next) -> Response {
    if let Some(addr) = source_ip(&request) {
        request.extensions_mut().insert(addr);
    }
    next.run(request).await
}

/// The source address in API Gateway's request context (HTTP API or REST API).
pub fn source_ip(request: &Request) -> Option<ClientAddr> {
    let ip = match request.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.as_deref(),
        _ => None,
    };
    ip.and_then(|ip| ip.parse().ok()).map(ClientAddr)
}
