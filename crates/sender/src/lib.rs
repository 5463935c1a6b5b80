//! Outbound webhook requests: reqwest on rustls, no redirects, a whole-request timeout, and
//! the SSRF guard (`relay_core::ssrf`) applied to the address actually connected to.

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;

use relay_core::ports::{OutboundRequest, SendResult, WebhookSender};
use relay_core::ssrf::{Blocked, SsrfGuard};
use relay_core::{Error, Result};

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
    /// A sender resolving host names with the system resolver.
    pub fn new(timeout: Duration, guard: SsrfGuard) -> Result<Self> {
        Self::with_lookup(timeout, guard, Arc::new(SystemLookup))
    }

    /// A sender resolving with the system resolver, reaching the private ranges in `allowed`
    /// (`WEBHOOK_ALLOWED_CIDRS`) and no other.
    pub fn for_rules(timeout: Duration, allowed: &[ipnet::IpNet]) -> Result<Self> {
        Self::new(timeout, SsrfGuard::new(allowed.to_vec()))
    }

    /// A sender resolving host names with `lookup` (tests map names to chosen addresses);
    /// whatever it answers still goes through the guard.
    pub fn with_lookup(timeout: Duration, guard: SsrfGuard, lookup: Arc<dyn Lookup>) -> Result<Self> {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(GuardedResolver { guard: guard.clone(), lookup })
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, guard, timeout })
    }

    fn failure(&self, error: String, started: Instant) -> SendResult {
        SendResult {
            status: None,
            retry_after: None,
            body_excerpt: None,
            error: Some(error),
            duration: started.elapsed(),
        }
    }

    /// What went wrong, for the attempt log: never the URL (its query may hold a token).
    fn describe(&self, err: &reqwest::Error, tls: bool, timeout: Duration) -> String {
        let mut source = err.source();
        while let Some(inner) = source {
            if let Some(blocked) = inner.downcast_ref::<Blocked>() {
                return blocked.to_string();
            }
            source = inner.source();
        }
        if err.is_timeout() {
            format!("timed out after {} ms", timeout.as_millis())
        } else if tls && err.is_connect() && is_tls_failure(err) {
            format!("TLS handshake failed: {}", root_cause(err))
        } else if err.is_connect() {
            format!("connection failed: {}", root_cause(err))
        } else {
            format!("request failed: {}", root_cause(err))
        }
    }
}

/// Connecting (TCP, then TLS) failed in the TLS handshake: TLS reports its errors (a
/// certificate not trusted, a peer not speaking TLS, a fatal alert, a cut handshake) as I/O
/// errors of these kinds wrapping the TLS error, which TCP connects and the resolver do not
/// produce. (An `io::Error`'s `source()` skips the error it wraps, hence `get_ref`.)
fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = err.source();
    while let Some(inner) = source {
        let mut io = inner.downcast_ref::<std::io::Error>();
        while let Some(error) = io {
            if error.get_ref().is_some()
                && matches!(error.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
            {
                return true;
            }
            io = error.get_ref().and_then(|wrapped| wrapped.downcast_ref::<std::io::Error>());
        }
        source = inner.source();
    }
    false
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
        if let Err(blocked) = self.guard.check_literal(request.url) {
            return self.failure(blocked.to_string(), started);
        }
        let tls = request.url.scheme() == "https";
        let timeout = request.timeout.map_or(self.timeout, |t| t.min(self.timeout));
        let mut builder = self.client.post(request.url.clone()).body(request.body).timeout(timeout);
        for (name, value) in request.headers {
            builder = builder.header(*name, *value);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(err) => return self.failure(self.describe(&err.without_url(), tls, timeout), started),
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Only the excerpt is read; dropping the response then closes the connection, so an
        // endless or huge body costs at most EXCERPT_BYTES and the rest of the timeout.
        let mut excerpt = Vec::new();
        let mut body_error = None;
        while excerpt.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES - excerpt.len())]),
                Ok(None) => break,
                Err(err) => {
                    // The status already arrived; a body cut short is noted, not a failure.
                    body_error = Some(format!("response body: {}", self.describe(&err.without_url(), tls, timeout)));
                    break;
                }
            }
        }
        let error = match body_error {
            _ if (200..300).contains(&status) => body_error,
            Some(body_error) => Some(format!("HTTP {status} ({body_error})")),
            None => Some(format!("HTTP {status}")),
        };
        SendResult {
            status: Some(status),
            retry_after,
            body_excerpt: (!excerpt.is_empty()).then(|| text_excerpt(&excerpt)),
            error,
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

/// Finds the addresses of a host name. [`SystemLookup`] in production.
#[async_trait]
pub trait Lookup: std::fmt::Debug + Send + Sync + 'static {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0)).await?.map(|addr| addr.ip()).collect())
    }
}

/// Resolves names through a [`Lookup`] and keeps only addresses the guard allows, so the
/// address connected to is one that was checked.
#[derive(Debug)]
struct GuardedResolver {
    guard: Arc<SsrfGuard>,
    lookup: Arc<dyn Lookup>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let lookup = self.lookup.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = lookup.lookup(&host).await?;
            let mut first_blocked = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|ip| match guard.check(*ip) {
                    Ok(()) => true,
                    Err(blocked) => {
                        first_blocked.get_or_insert(blocked);
                        false
                    }
                })
                .map(|ip| SocketAddr::new(ip, 0))
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

    /// An error with `source` as its cause, as reqwest and hyper wrap them.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn tls_failures_are_told_from_tcp_and_dns_failures() {
        use std::io::{Error as IoError, ErrorKind};
        let tls = Wrapped(IoError::new(ErrorKind::InvalidData, "invalid peer certificate: UnknownIssuer"));
        assert!(is_tls_failure(&tls));
        assert_eq!(root_cause(&tls), "invalid peer certificate: UnknownIssuer");
        assert!(is_tls_failure(&Wrapped(IoError::new(ErrorKind::UnexpectedEof, "tls handshake eof"))));
        // What hyper-rustls hands reqwest: the TLS error inside two I/O errors.
        let nested = Wrapped(IoError::other(IoError::new(ErrorKind::InvalidData, "received corrupt message")));
        assert!(is_tls_failure(&nested));
        assert_eq!(root_cause(&nested), "received corrupt message");
        assert!(!is_tls_failure(&Wrapped(IoError::from_raw_os_error(111))));
        assert!(!is_tls_failure(&Wrapped(IoError::from(ErrorKind::InvalidData))));
        assert!(!is_tls_failure(&Wrapped(IoError::other("failed to lookup address information"))));
    }
}
