use std::time::Duration;

use async_trait::async_trait;
use url::Url;

/// One signed POST to a webhook.
#[derive(Debug, Clone)]
pub struct OutboundRequest<'a> {
    pub url: &'a Url,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Vec<u8>,
    /// The webhook's own `timeoutMs`, shorter than the sender's; `None`: the sender's.
    pub timeout: Option<Duration>,
}

/// What came of it. `status` is `None` when no response arrived (refused, timed out, blocked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: Option<u16>,
    /// The raw `Retry-After` header.
    pub retry_after: Option<String>,
    /// The first KiB of the response body, as text.
    pub body_excerpt: Option<String>,
    pub error: Option<String>,
    pub duration: Duration,
}

#[async_trait]
pub trait WebhookSender: std::fmt::Debug + Send + Sync + 'static {
    async fn send(&self, request: OutboundRequest<'_>) -> SendResult;
}
