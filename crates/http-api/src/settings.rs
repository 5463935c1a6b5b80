//! The API's own settings: request limits, rate limits and CORS.

use axum::http::HeaderValue;

use relay_core::settings::{ConfigError, Vars};

/// What every app serving the API reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// `MAX_PAYLOAD_BYTES` (262144): the largest `POST /api/events` body.
    pub max_payload_bytes: usize,
    /// `RATE_LIMIT_PER_MINUTE` (600; 0 turns it off): requests per credential per minute.
    pub rate_limit_per_minute: u32,
    /// `AUTH_FAILURE_LIMIT_PER_MINUTE` (20; 0 turns it off): failed credentials per client
    /// address per minute before the address is refused with 429 until the minute ends.
    pub auth_failure_limit_per_minute: u32,
    /// `CORS_ORIGINS`: browser origins allowed to call the API (none by default).
    pub cors_origins: Vec<HeaderValue>,
}

impl ApiSettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            max_payload_bytes: vars.num::<usize>("MAX_PAYLOAD_BYTES", 256 * 1024, 1024..=6 * 1024 * 1024)?,
            rate_limit_per_minute: vars.num::<u32>("RATE_LIMIT_PER_MINUTE", 600, 0..=1_000_000)?,
            auth_failure_limit_per_minute: vars.num::<u32>("AUTH_FAILURE_LIMIT_PER_MINUTE", 20, 0..=1_000_000)?,
            cors_origins: vars.get("CORS_ORIGINS").map(|list| parse_origins(&list)).transpose()?.unwrap_or_default(),
        })
    }
}

/// `PUBLIC_URL`: the relay's address as its users reach it (`https://relay.example.com`), which
/// portal links start with; unset, the address the request came to. Read by the apps that
/// serve the tenants API (relay-api, relay-local).
pub fn public_url(vars: &Vars) -> Result<Option<String>, ConfigError> {
    vars.get("PUBLIC_URL").map(|url| parse_public_url(&url)).transpose()
}

/// An absolute http(s) URL, kept without its trailing slash.
fn parse_public_url(value: &str) -> Result<String, ConfigError> {
    match url::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() && url.query().is_none() => {
            Ok(url.as_str().trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError::new("PUBLIC_URL", "must be an http(s) URL like https://relay.example.com")),
    }
}

/// `scheme://host[:port]`, comma-separated.
fn parse_origins(list: &str) -> Result<Vec<HeaderValue>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let bad = || {
                ConfigError::new("CORS_ORIGINS", format!("{origin:?} is not an origin like https://app.example.com"))
            };
            let url = url::Url::parse(origin).map_err(|_| bad())?;
            let canonical = url.origin().ascii_serialization();
            if !matches!(url.scheme(), "http" | "https") || canonical != origin.trim_end_matches('/') {
                return Err(bad());
            }
            HeaderValue::from_str(&canonical).map_err(|_| bad())
        })
        .collect()
}
