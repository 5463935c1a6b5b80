//! The one place an [`Error`] becomes an HTTP status and the error envelope
//! `{"success": false, "error": {"code", "message", "details"}}`: handlers and extractors
//! answer with [`ApiError`], which any [`Error`] turns into with `?`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use relay_core::Error;

/// An [`Error`] as the API answers it.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match &self.0 {
            Error::BadJson(_) => StatusCode::BAD_REQUEST,
            Error::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) | Error::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable { .. } | Error::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match &self.0 {
            Error::BadJson(_) => "invalid_json",
            Error::Validation { .. } => "validation_failed",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) | Error::RouteNotFound(_) => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Conflict { code, .. } => code,
            Error::RequestTimeout => "request_timeout",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable { .. } => "service_unavailable",
            Error::Overloaded { .. } => "overloaded",
            Error::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self.0 {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            Error::Unavailable { dependency, message } => {
                tracing::warn!(dependency, error = %message, "dependency unavailable");
                format!("{dependency} is unavailable; try again shortly")
            }
            other => other.to_string(),
        };
        let details = match &self.0 {
            Error::Validation { details, .. } => serde_json::to_value(details).unwrap_or_default(),
            _ => json!([]),
        };
        let body = json!({
            "success": false,
            "error": { "code": self.code(), "message": message, "details": details },
        });
        let mut response = (status, Json(body)).into_response();
        let retry_after = match &self.0 {
            // Whole seconds, rounded up: a client that waits that long is through.
            Error::RateLimited { retry_after } | Error::Overloaded { retry_after } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Error::Unavailable { .. } => Some(5),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
