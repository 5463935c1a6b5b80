use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;

use super::ssrf::{Blocked, SsrfGuard};
use crate::ports::{OutboundRequest, SendResult, WebhookSender};
use crate::{Error, Result};

/// The most of a response body kept in the attempt log.
pub const EXCERPT_BYTES: usize = 1024;

/// Sends webhook requests. Build one per process and share it: it holds the connection pool.
#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    guard: Arc<SsrfGuard>,
    timeout: Duration,
}

impl HttpSender {
    pub fn new(timeout: Duration, guard: SsrfGuard) -> Result<Self> {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(GuardedResolver { guard: guard.clone() })
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, guard, timeout })
    }

    fn failure(&self, error: String, started: Instant) -> SendResult {
        SendResult { status: None, retry_after: None, body_excerpt: None, error: Some(error), duration: started.elapsed() }
    }

    fn describe(&self, err: &reqwest::Error) -> String {
        let mut source = err.source();
        while let Some(inner) = source {
            if let Some(blocked) = inner.downcast_ref::<Blocked>() {
                return blocked.to_string();
            }
            source = inner.source();
        }
        if err.is_timeout() {
            format!("timed out after {} ms", self.timeout.as_millis())
        } else if err.is_connect() {
            format!("connection failed: {}", root_cause(err))
        } else {
            format!("request failed: {}", root_cause(err))
        }
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn send(&self, request: OutboundRequest<'_>) -> SendResult {
        let started = Instant::now();
        // A literal IP in the URL skips the resolver, so it is checked here.
        if let Some(host) = request.url.host_str()
            && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
                && let Err(blocked) = self.guard.check(ip) {
                    return self.failure(blocked.to_string(), started);
                }
        let mut builder = self.client.post(request.url.clone()).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(*name, *value);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(err) => return self.failure(self.describe(&err), started),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut excerpt = Vec::new();
        let mut error = None;
        while excerpt.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES - excerpt.len())]),
                Ok(None) => break,
                Err(err) => {
                    // The status already arrived; a body cut short is noted, not a failure.
                    error = Some(format!("response body: {}", self.describe(&err)));
                    break;
                }
            }
        }
        SendResult {
            status: Some(status),
            retry_after,
            body_excerpt: (!excerpt.is_empty()).then(|| text_excerpt(&excerpt)),
            error: error.or_else(|| (!(200..300).contains(&status)).then(|| format!("HTTP {status}"))),
            duration: started.elapsed(),
        }
    }
}

/// Lossy UTF-8, without a character cut in half at the end.
fn text_excerpt(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(e) if e.error_len().is_none() => String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Resolves names with the system resolver and keeps only addresses the guard allows, so the
/// address connected to is one that was checked.
#[derive(Debug)]
struct GuardedResolver {
    guard: Arc<SsrfGuard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut first_blocked = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check(addr.ip()) {
                    Ok(()) => true,
                    Err(blocked) => {
                        first_blocked.get_or_insert(blocked);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), first_blocked) {
                (true, Some(blocked)) => Err(Box::new(blocked) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_do_not_split_characters() {
        let text = "é".repeat(600);
        let bytes = &text.as_bytes()[..EXCERPT_BYTES - 1];
        let excerpt = text_excerpt(bytes);
        assert_eq!(excerpt.chars().count(), 511);
        assert!(!excerpt.contains('\u{fffd}'));
    }
}
