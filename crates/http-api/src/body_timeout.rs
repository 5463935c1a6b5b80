//! The error a request body yields when the server cut it off for arriving too slowly
//! (relay-local's server sets it; the extractors answer 408 when they see it).

/// The error a request body yields when it did not arrive within
/// relay-local's `HTTP_BODY_TIMEOUT`.
///
/// The server wraps every request body; once the deadline passes while the handler is
/// waiting for more body data, the read fails with this error (after which the body reports
/// its end). axum wraps body errors, so the application should not match on the error it
/// gets directly but use [`is_body_timeout`], which walks the
/// [`source`](std::error::Error::source) chain. That works for the error of
/// `axum::body::to_bytes`, for the rejections of the `Bytes`, `String`, `Json` and `Form`
/// extractors, for errors from `Body::into_data_stream()`/`http_body_util::BodyExt`, and for
/// an `axum::Error` directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body not received within the body timeout")
    }
}

impl std::error::Error for BodyTimeout {}

/// Returns whether `err`, or any error in its [`source`](std::error::Error::source) chain,
/// is a [`BodyTimeout`].
///
/// Typical use in a handler:
///
/// ```ignore
/// async fn hook(body: Result<Bytes, BytesRejection>) -> Response {
///     match body {
///         Ok(bytes) => handle(bytes).await,
///         Err(rejection) if is_body_timeout(&rejection) => StatusCode::REQUEST_TIMEOUT.into_response(),
///         Err(rejection) => rejection.into_response(),
///     }
/// }
/// ```
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    // The chain is finite for every sane error type; the bound only guards against a
    // pathological `source` cycle.
    for _ in 0..64 {
        let Some(e) = current else { return false };
        if e.is::<BodyTimeout>() {
            return true;
        }
        current = e.source();
    }
    false
}
