//! The library's error type. Every layer returns [`Error`]; `api::error` is the one place that
//! turns it into an HTTP status and the JSON error envelope.

use std::time::Duration;

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem with one field of a request, listed in the error envelope's `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON at all (400).
    #[error("request body is not valid JSON: {0}")]
    BadJson(String),
    /// The request is well-formed JSON but breaks a rule (422).
    #[error("{message}")]
    Validation { message: String, details: Vec<FieldError> },
    /// No credential, or one that matches nothing (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid credential of the wrong kind for this route (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The thing does not exist, or belongs to another tenant (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No such route (404).
    #[error("{0}")]
    RouteNotFound(String),
    /// The route exists, the method does not (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the current state (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The client took longer than `HTTP_BODY_TIMEOUT` to send the body (408).
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// The body is larger than the configured limit (413).
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Too many requests for this credential (429).
    #[error("rate limit exceeded")]
    RateLimited { retry_after: Duration },
    /// The relay holds as much backlog as it may (relay-local's embedded queue past
    /// `QUEUE_MAX_BACKLOG`): send again after `retry_after` (503).
    #[error("the relay's backlog is full; send the event again in {} s", retry_after.as_secs().max(1))]
    Overloaded { retry_after: Duration },
    /// A backing service (store, queue) failed or is unreachable (503).
    #[error("{dependency} is unavailable: {message}")]
    Unavailable { dependency: &'static str, message: String },
    /// A bug: something that should not happen (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let detail = FieldError::new(field, message);
        Self::Validation { message: format!("{}: {}", detail.field, detail.message), details: vec![detail] }
    }

    /// A webhook changed between a read and the write based on it (409 if it reaches a caller,
    /// which happens only when it keeps changing under a retried write).
    pub fn webhook_changed() -> Self {
        Self::Conflict {
            code: "webhook_changed",
            message: "the webhook was changed at the same time; try again".into(),
        }
    }

    pub fn invalid(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", details.len()),
        };
        Self::Validation { message, details }
    }

    pub fn unavailable(dependency: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Unavailable { dependency, message: err.to_string() }
    }
}
