//! One typed configuration, read from the environment and validated once at start-up.
//! A bad value stops start-up with a message that names the variable.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::auth::{Credentials, digest as sha256};
use crate::backoff::{MAX_DELAY, RetryPolicy};
use crate::domain::{EventTypeRegistry, TenantId};
use crate::sealing::SecretKeys;
use ipnet::IpNet;

/// Where the configuration is used: the defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Lambda functions: every credential must be configured; webhook URLs must be https;
    /// no private address is reachable unless allow-listed.
    Production,
    /// relay-local: dev credentials when none are set, http allowed, loopback reachable.
    Local,
}

/// A value that must never be printed: credentials and connection strings.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self { var, message: message.into() }
    }
}

/// Dev credentials relay-local uses when none are configured.
pub const DEV_SERVICE_TOKEN: &str = "dev-service-token";
pub const DEV_TENANT: &str = "dev";
pub const DEV_API_KEY: &str = "dev-api-key";

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    /// `HOST` (127.0.0.1) and `PORT` (3000): where relay-local serves the API.
    pub host: IpAddr,
    pub port: u16,
    /// `WEBHOOK_TIMEOUT` (ms, 5000): the whole request, connect to last byte.
    pub webhook_timeout: Duration,
    /// `WEBHOOK_MAX_RETRIES` (3) and `WEBHOOK_RETRY_DELAY` (ms, 60000).
    pub retry: RetryPolicy,
    /// `EVENT_TYPES`: comma-separated; the seed's eleven when unset.
    pub event_types: EventTypeRegistry,
    /// `SERVICE_TOKENS` and `API_KEYS`.
    pub credentials: Credentials,
    /// True when the credentials are relay-local's built-in dev ones.
    pub dev_credentials: bool,
    /// `MAX_PAYLOAD_BYTES` (262144): the largest `POST /api/events` body.
    pub max_payload_bytes: usize,
    /// `WEBHOOK_REQUIRE_HTTPS`: true in production, false in relay-local.
    pub require_https: bool,
    /// `WEBHOOK_ALLOWED_CIDRS`: private ranges deliveries may reach anyway.
    /// relay-local allows loopback by default. 169.254.169.254 is refused whatever this says.
    pub allowed_cidrs: Vec<IpNet>,
    /// `QUEUE_VISIBILITY_TIMEOUT` (s, 30; longer than `WEBHOOK_TIMEOUT`) and
    /// `QUEUE_MAX_RECEIVE_COUNT` (the larger of 10 and `WEBHOOK_MAX_RETRIES` + 6; more than
    /// `WEBHOOK_MAX_RETRIES` + 1): the embedded queue's settings (the template sets the real queue's).
    pub queue_visibility_timeout: Duration,
    pub queue_max_receive_count: u32,
    /// `WORKER_CONCURRENCY` (4): pollers relay-local runs, each handling batches of up to 10.
    pub worker_concurrency: usize,
    /// `RELAY_BACKEND`: `memory` or `aws`; relay-local picks `aws` when any AWS name is set.
    pub backend: Backend,
    /// Where the AWS backends are.
    pub aws: AwsSettings,
    /// `EVENT_RETENTION_DAYS` (30): how long events are kept (DynamoDB TTL).
    pub event_retention: Duration,
    /// `DATABASE_URL`: the PostgreSQL delivery log; unset, relay-local keeps it in memory.
    pub database_url: Option<Redacted<String>>,
    /// `MAINTENANCE_INTERVAL` (s, 60): how often relay-local runs maintenance.
    pub maintenance_interval: Duration,
    /// `REDIS_URL`: delivery locks, rate limits and the webhook cache; unset, relay-local keeps
    /// locks and limits in memory and caches nothing.
    pub redis_url: Option<Redacted<String>>,
    /// `RATE_LIMIT_PER_MINUTE` (600; 0 turns it off): requests per credential per minute.
    pub rate_limit_per_minute: u32,
    /// `AUTH_FAILURE_LIMIT_PER_MINUTE` (20; 0 turns it off): failed credentials per client
    /// address per minute before the address is refused with 429 until the minute ends.
    pub auth_failure_limit_per_minute: u32,
    /// `SECRETS_ENCRYPTION_KEYS`: the keys webhook secrets are sealed with (`id:material`,
    /// comma-separated, the first sealing). Required by the functions that read webhooks and by
    /// relay-local on AWS; relay-local in memory makes a key at start when it is unset.
    pub secret_keys: Option<SecretKeys>,
    /// relay-local's HTTP server limits and graceful stop (not read by the Lambda functions).
    pub server: ServerSettings,
    /// `WEBHOOK_DISABLE_AFTER` (s, 432000 = 5 days): a webhook whose deliveries all failed for
    /// this long is disabled.
    pub disable_after: Duration,
    /// `WEBHOOK_SECRET_GRACE` (s, 86400): how long a rotated-out secret keeps signing.
    pub secret_grace: Duration,
    /// `CORS_ORIGINS`: browser origins allowed to call the API (none by default).
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// `DASHBOARD_SESSION_SECRET` (at least 32 characters): signs the dashboard's session
    /// cookies. Unset: relay-local makes a random one at start (sessions end with the process);
    /// relay-api serves no dashboard.
    pub dashboard_session_secret: Option<Redacted<String>>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(profile: Profile) -> Result<Self, ConfigError> {
        Self::from_lookup(profile, |name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map). Empty values count as unset.
    pub fn from_lookup(profile: Profile, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let local = profile == Profile::Local;

        let host = match get("HOST") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(h) => h.parse().map_err(|_| ConfigError::new("HOST", format!("must be an IP address, got {h:?}")))?,
        };
        let port = parse_num::<u16>("PORT", get("PORT"), 3000, 0..=u16::MAX)?;
        let webhook_timeout = millis("WEBHOOK_TIMEOUT", get("WEBHOOK_TIMEOUT"), 5000, 1..=900_000)?;
        let base_delay =
            millis("WEBHOOK_RETRY_DELAY", get("WEBHOOK_RETRY_DELAY"), 60_000, 1..=MAX_DELAY.as_millis() as u64)?;
        let max_retries = parse_num::<u32>("WEBHOOK_MAX_RETRIES", get("WEBHOOK_MAX_RETRIES"), 3, 0..=50)?;
        let retry = RetryPolicy { base_delay, max_retries, ..RetryPolicy::default() };

        let event_types = match get("EVENT_TYPES") {
            None => EventTypeRegistry::default(),
            Some(list) => EventTypeRegistry::from_list(&list).map_err(|m| ConfigError::new("EVENT_TYPES", m))?,
        };

        // relay-local falls back to dev credentials only when neither variable is set: setting
        // one means real credentials are wanted, and a dev key must not slip in beside them.
        let tokens = get("SERVICE_TOKENS");
        let keys = get("API_KEYS");
        let dev_credentials = local && tokens.is_none() && keys.is_none();
        // In production a function that takes requests says it needs them (`Config::require`).
        let service_tokens = match tokens {
            Some(list) => parse_service_tokens(&list)?,
            None if dev_credentials => vec![Redacted(sha256(DEV_SERVICE_TOKEN))],
            None if local => return Err(ConfigError::new("SERVICE_TOKENS", "is required when API_KEYS is set")),
            None => Vec::new(),
        };
        let api_keys = match keys {
            Some(list) => parse_api_keys(&list)?,
            None if dev_credentials => vec![(tenant(DEV_TENANT)?, Redacted(sha256(DEV_API_KEY)))],
            None if local => return Err(ConfigError::new("API_KEYS", "is required when SERVICE_TOKENS is set")),
            None => Vec::new(),
        };

        let max_payload_bytes =
            parse_num::<usize>("MAX_PAYLOAD_BYTES", get("MAX_PAYLOAD_BYTES"), 256 * 1024, 1024..=6 * 1024 * 1024)?;
        let require_https = parse_bool("WEBHOOK_REQUIRE_HTTPS", get("WEBHOOK_REQUIRE_HTTPS"), !local)?;
        // An empty value reads as unset (the default); `none` allows nothing, loopback included.
        let allowed_cidrs = match get("WEBHOOK_ALLOWED_CIDRS") {
            Some(list) if list.eq_ignore_ascii_case("none") => Vec::new(),
            Some(list) => parse_cidrs(&list)?,
            None if local => vec![net("127.0.0.0/8"), net("::1/128")],
            None => Vec::new(),
        };

        let queue_visibility_timeout = Duration::from_secs(parse_num::<u64>(
            "QUEUE_VISIBILITY_TIMEOUT",
            get("QUEUE_VISIBILITY_TIMEOUT"),
            30,
            1..=43_200,
        )?);
        if queue_visibility_timeout <= webhook_timeout {
            return Err(ConfigError::new(
                "QUEUE_VISIBILITY_TIMEOUT",
                format!(
                    "must be longer than WEBHOOK_TIMEOUT ({} ms), or a message comes back while its delivery is still in progress",
                    webhook_timeout.as_millis()
                ),
            ));
        }
        // Room for every scheduled attempt plus a few receives lost to crashes.
        let default_receive_count = (max_retries + 6).max(10);
        let queue_max_receive_count = parse_num::<u32>(
            "QUEUE_MAX_RECEIVE_COUNT",
            get("QUEUE_MAX_RECEIVE_COUNT"),
            default_receive_count,
            1..=1000,
        )?;
        if queue_max_receive_count <= max_retries + 1 {
            return Err(ConfigError::new(
                "QUEUE_MAX_RECEIVE_COUNT",
                format!(
                    "must be larger than WEBHOOK_MAX_RETRIES + 1 ({}), or messages reach the DLQ before their retries run out",
                    max_retries + 1
                ),
            ));
        }
        let worker_concurrency = parse_num::<usize>("WORKER_CONCURRENCY", get("WORKER_CONCURRENCY"), 4, 1..=64)?;

        let aws = AwsSettings {
            events_table: get("EVENTS_TABLE"),
            idempotency_table: get("IDEMPOTENCY_TABLE"),
            webhooks_table: get("WEBHOOKS_TABLE"),
            queue_url: get("QUEUE_URL"),
            dead_letter_queue_url: get("DLQ_URL"),
        };
        let backend = match get("RELAY_BACKEND").as_deref() {
            Some("aws") => Backend::Aws,
            Some("memory") if local => Backend::Memory,
            Some("memory") => return Err(ConfigError::new("RELAY_BACKEND", "memory is for relay-local only")),
            Some(other) => {
                return Err(ConfigError::new("RELAY_BACKEND", format!("must be aws or memory, got {other:?}")));
            }
            None if !local || aws.any_set() => Backend::Aws,
            None => Backend::Memory,
        };
        let event_retention = Duration::from_secs(
            86_400 * parse_num::<u64>("EVENT_RETENTION_DAYS", get("EVENT_RETENTION_DAYS"), 30, 1..=3650)?,
        );
        let database_url = get("DATABASE_URL").map(Redacted);
        let redis_url = get("REDIS_URL").map(Redacted);
        let rate_limit_per_minute =
            parse_num::<u32>("RATE_LIMIT_PER_MINUTE", get("RATE_LIMIT_PER_MINUTE"), 600, 0..=1_000_000)?;
        let auth_failure_limit_per_minute =
            parse_num::<u32>("AUTH_FAILURE_LIMIT_PER_MINUTE", get("AUTH_FAILURE_LIMIT_PER_MINUTE"), 20, 0..=1_000_000)?;
        let secret_keys = match get("SECRETS_ENCRYPTION_KEYS") {
            Some(list) => Some(SecretKeys::parse(&list).map_err(|m| ConfigError::new("SECRETS_ENCRYPTION_KEYS", m))?),
            None if local && backend == Backend::Aws => {
                return Err(ConfigError::new(
                    "SECRETS_ENCRYPTION_KEYS",
                    "is required on DynamoDB (webhook secrets are stored sealed with it): id:material, e.g. k1:$(openssl rand -base64 32)",
                ));
            }
            None => None,
        };
        let server = if local { ServerSettings::from_lookup(&get)? } else { ServerSettings::default() };
        let disable_after = Duration::from_secs(parse_num::<u64>(
            "WEBHOOK_DISABLE_AFTER",
            get("WEBHOOK_DISABLE_AFTER"),
            5 * 86_400,
            1..=365 * 86_400,
        )?);
        let secret_grace = Duration::from_secs(parse_num::<u64>(
            "WEBHOOK_SECRET_GRACE",
            get("WEBHOOK_SECRET_GRACE"),
            86_400,
            0..=30 * 86_400,
        )?);
        let cors_origins = match get("CORS_ORIGINS") {
            None => Vec::new(),
            Some(list) => parse_origins(&list)?,
        };
        let dashboard_session_secret = match get("DASHBOARD_SESSION_SECRET") {
            Some(secret) if secret.len() < 32 => {
                return Err(ConfigError::new("DASHBOARD_SESSION_SECRET", "must be at least 32 characters"));
            }
            secret => secret.map(Redacted),
        };
        let maintenance_interval =
            Duration::from_secs(parse_num::<u64>("MAINTENANCE_INTERVAL", get("MAINTENANCE_INTERVAL"), 60, 1..=86_400)?);

        Ok(Self {
            profile,
            host,
            port,
            webhook_timeout,
            retry,
            event_types,
            credentials: Credentials::new(service_tokens, api_keys),
            dev_credentials,
            max_payload_bytes,
            require_https,
            allowed_cidrs,
            queue_visibility_timeout,
            queue_max_receive_count,
            worker_concurrency,
            backend,
            aws,
            event_retention,
            database_url,
            maintenance_interval,
            redis_url,
            rate_limit_per_minute,
            auth_failure_limit_per_minute,
            secret_keys,
            server,
            secret_grace,
            dashboard_session_secret,
            disable_after,
            cors_origins,
        })
    }

    /// Checks that what a function needs is configured; the error names the first missing
    /// variable. Call it once at start-up, after loading.
    pub fn require(&self, needs: &[Need]) -> Result<(), ConfigError> {
        for need in needs {
            let (var, present, what) = match need {
                Need::ServiceTokens => {
                    ("SERVICE_TOKENS", self.credentials.has_service_tokens(), "comma-separated tokens")
                }
                Need::ApiKeys => ("API_KEYS", self.credentials.has_api_keys(), "comma-separated tenant:key"),
                Need::EventsTable => ("EVENTS_TABLE", self.aws.events_table.is_some(), "the events table's name"),
                Need::IdempotencyTable => {
                    ("IDEMPOTENCY_TABLE", self.aws.idempotency_table.is_some(), "the idempotency table's name")
                }
                Need::WebhooksTable => {
                    ("WEBHOOKS_TABLE", self.aws.webhooks_table.is_some(), "the webhooks table's name")
                }
                Need::QueueUrl => ("QUEUE_URL", self.aws.queue_url.is_some(), "the relay queue's URL"),
                Need::DeadLetterQueueUrl => {
                    ("DLQ_URL", self.aws.dead_letter_queue_url.is_some(), "the dead-letter queue's URL")
                }
                Need::DatabaseUrl => ("DATABASE_URL", self.database_url.is_some(), "a postgres:// URL"),
                Need::SecretKeys => {
                    ("SECRETS_ENCRYPTION_KEYS", self.secret_keys.is_some(), "id:material, comma-separated")
                }
            };
            if !present {
                return Err(ConfigError::new(var, format!("is required ({what})")));
            }
        }
        Ok(())
    }
}

/// Something a function cannot run without; see [`Config::require`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    ServiceTokens,
    ApiKeys,
    EventsTable,
    IdempotencyTable,
    WebhooksTable,
    QueueUrl,
    DeadLetterQueueUrl,
    DatabaseUrl,
    SecretKeys,
}

/// relay-local's HTTP server: how long a client may take, how many connections it may hold,
/// and how long a stop waits for work in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// `HTTP_HEADER_TIMEOUT` (s, 10): to send a request's head.
    pub header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT` (s, 30): to send a request's body.
    pub body_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT` (s, 60): a keep-alive connection without a request is closed.
    pub idle_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS` (4096): connections held at once; at the cap the longest idle one
    /// is closed for a newcomer.
    pub max_connections: usize,
    /// `SHUTDOWN_TIMEOUT` (s, 30): on SIGTERM or Ctrl-C, how long requests and deliveries in
    /// progress may take to finish.
    pub shutdown_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerSettings {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let secs = |var: &'static str, default: Duration, range| {
            parse_num::<u64>(var, get(var), default.as_secs(), range).map(Duration::from_secs)
        };
        Ok(Self {
            header_timeout: secs("HTTP_HEADER_TIMEOUT", defaults.header_timeout, 1..=3600)?,
            body_timeout: secs("HTTP_BODY_TIMEOUT", defaults.body_timeout, 1..=3600)?,
            idle_timeout: secs("HTTP_IDLE_TIMEOUT", defaults.idle_timeout, 1..=86_400)?,
            max_connections: parse_num::<usize>(
                "HTTP_MAX_CONNECTIONS",
                get("HTTP_MAX_CONNECTIONS"),
                defaults.max_connections,
                16..=1_000_000,
            )?,
            shutdown_timeout: secs("SHUTDOWN_TIMEOUT", defaults.shutdown_timeout, 0..=3600)?,
        })
    }
}

/// Which backends relay-local runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, in memory: relay-local's default.
    Memory,
    /// DynamoDB and SQS (real, or emulated through `AWS_ENDPOINT_URL*`).
    Aws,
}

/// `EVENTS_TABLE`, `IDEMPOTENCY_TABLE`, `WEBHOOKS_TABLE`, `QUEUE_URL`, `DLQ_URL`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub events_table: Option<String>,
    pub idempotency_table: Option<String>,
    pub webhooks_table: Option<String>,
    pub queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
}

impl AwsSettings {
    fn any_set(&self) -> bool {
        *self != Self::default()
    }
}

/// A tenant and the SHA-256 digest of one of its API keys.
type TenantKey = (TenantId, Redacted<[u8; 32]>);

fn tenant(value: &str) -> Result<TenantId, ConfigError> {
    TenantId::parse(value).map_err(|m| ConfigError::new("API_KEYS", m))
}

fn net(value: &str) -> IpNet {
    value.parse().unwrap_or_else(|_| IpNet::from(IpAddr::from([127, 0, 0, 1])))
}

fn parse_num<T>(
    var: &'static str,
    value: Option<String>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = value else { return Ok(default) };
    match raw.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!("must be a whole number from {} to {}, got {raw:?}", range.start(), range.end()),
        )),
    }
}

fn millis(
    var: &'static str,
    value: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    parse_num(var, value, default, range).map(Duration::from_millis)
}

fn parse_bool(var: &'static str, value: Option<String>, default: bool) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(var, format!("must be true or false, got {other:?}"))),
    }
}

fn parse_service_tokens(list: &str) -> Result<Vec<Redacted<[u8; 32]>>, ConfigError> {
    let tokens: Vec<_> = list.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() {
        return Err(ConfigError::new("SERVICE_TOKENS", "lists no token"));
    }
    tokens
        .into_iter()
        .map(|t| {
            if t.len() < 16 {
                Err(ConfigError::new("SERVICE_TOKENS", "every token must be at least 16 characters"))
            } else {
                Ok(Redacted(sha256(t)))
            }
        })
        .collect()
}

/// `tenant:key` or `tenant:sha256:<64 hex>`, comma-separated.
fn parse_api_keys(list: &str) -> Result<Vec<TenantKey>, ConfigError> {
    let mut keys = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (tenant_part, key) = entry
            .split_once(':')
            .ok_or_else(|| ConfigError::new("API_KEYS", "each entry must be tenant:key or tenant:sha256:<hex>"))?;
        let tenant = tenant(tenant_part)?;
        let digest = match key.strip_prefix("sha256:") {
            Some(hex_digest) => {
                hex::decode(hex_digest).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
                    ConfigError::new("API_KEYS", format!("tenant {tenant}: sha256: must be followed by 64 hex digits"))
                })?
            }
            None if key.len() < 16 => {
                return Err(ConfigError::new(
                    "API_KEYS",
                    format!("tenant {tenant}: keys must be at least 16 characters"),
                ));
            }
            None => sha256(key),
        };
        keys.push((tenant, Redacted(digest)));
    }
    if keys.is_empty() {
        return Err(ConfigError::new("API_KEYS", "lists no key"));
    }
    Ok(keys)
}

/// `scheme://host[:port]`, comma-separated.
fn parse_origins(list: &str) -> Result<Vec<axum::http::HeaderValue>, ConfigError> {
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
            axum::http::HeaderValue::from_str(&canonical).map_err(|_| bad())
        })
        .collect()
}

fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<IpNet>().or_else(|_| c.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                ConfigError::new("WEBHOOK_ALLOWED_CIDRS", format!("{c:?} is not a CIDR range like 10.0.0.0/8"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(profile: Profile, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(profile, |k| map.get(k).cloned())
    }

    const PROD: [(&str, &str); 2] =
        [("SERVICE_TOKENS", "a-service-token-0001"), ("API_KEYS", "acme:an-api-key-000001")];

    #[test]
    fn seed_defaults() {
        let c = load(Profile::Production, &PROD).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.webhook_timeout, Duration::from_millis(5000));
        assert_eq!(c.retry.max_retries, 3);
        assert_eq!(c.retry.base_delay, Duration::from_secs(60));
        assert_eq!(c.event_types.len(), 11);
        assert_eq!(c.max_payload_bytes, 262_144);
        assert!(c.require_https);
        assert!(c.allowed_cidrs.is_empty());
    }

    #[test]
    fn functions_require_what_they_need() {
        let bare = load(Profile::Production, &[]).unwrap();
        assert_eq!(bare.backend, Backend::Aws);
        assert_eq!(bare.require(&[Need::ServiceTokens]).unwrap_err().var, "SERVICE_TOKENS");
        let tokens_only = load(Profile::Production, &PROD[..1]).unwrap();
        assert!(tokens_only.require(&[Need::ServiceTokens]).is_ok());
        assert_eq!(tokens_only.require(&[Need::ServiceTokens, Need::ApiKeys]).unwrap_err().var, "API_KEYS");
        for (need, var) in [
            (Need::EventsTable, "EVENTS_TABLE"),
            (Need::IdempotencyTable, "IDEMPOTENCY_TABLE"),
            (Need::WebhooksTable, "WEBHOOKS_TABLE"),
            (Need::QueueUrl, "QUEUE_URL"),
            (Need::DeadLetterQueueUrl, "DLQ_URL"),
            (Need::DatabaseUrl, "DATABASE_URL"),
        ] {
            let err = bare.require(&[need]).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().starts_with(&format!("invalid {var}: is required")));
            let mut vars = PROD.to_vec();
            vars.push((var, "x"));
            assert!(load(Profile::Production, &vars).unwrap().require(&[need]).is_ok());
        }
    }

    #[test]
    fn secret_keys_are_required_where_webhooks_are_stored() {
        assert_eq!(
            load(Profile::Production, &PROD).unwrap().require(&[Need::SecretKeys]).unwrap_err().var,
            "SECRETS_ENCRYPTION_KEYS"
        );
        let mut vars = PROD.to_vec();
        vars.push(("SECRETS_ENCRYPTION_KEYS", "k1:0123456789abcdef0123456789abcdef"));
        assert!(load(Profile::Production, &vars).unwrap().require(&[Need::SecretKeys]).is_ok());
        // relay-local: a key made at start in memory; on DynamoDB the key must be given.
        assert!(load(Profile::Local, &[]).unwrap().secret_keys.is_none());
        assert_eq!(load(Profile::Local, &[("QUEUE_URL", "http://q")]).unwrap_err().var, "SECRETS_ENCRYPTION_KEYS");
        let keys = "k1:0123456789abcdef0123456789abcdef";
        assert!(
            load(Profile::Local, &[("QUEUE_URL", "http://q"), ("SECRETS_ENCRYPTION_KEYS", keys)])
                .unwrap()
                .secret_keys
                .is_some()
        );
    }

    /// relay-local's server settings are read in relay-local only: a Lambda function never
    /// validates them.
    #[test]
    fn server_settings_are_relay_locals() {
        let local = load(
            Profile::Local,
            &[("HTTP_HEADER_TIMEOUT", "3"), ("HTTP_MAX_CONNECTIONS", "100"), ("SHUTDOWN_TIMEOUT", "0")],
        )
        .unwrap();
        assert_eq!(local.server.header_timeout, Duration::from_secs(3));
        assert_eq!(local.server.max_connections, 100);
        assert_eq!(local.server.shutdown_timeout, Duration::ZERO);
        assert_eq!(local.server.idle_timeout, Duration::from_secs(60));
        for (var, value) in [
            ("HTTP_HEADER_TIMEOUT", "0"),
            ("HTTP_BODY_TIMEOUT", "x"),
            ("HTTP_IDLE_TIMEOUT", "-1"),
            ("HTTP_MAX_CONNECTIONS", "1"),
        ] {
            assert_eq!(load(Profile::Local, &[(var, value)]).unwrap_err().var, var);
            let mut vars = PROD.to_vec();
            vars.push((var, value));
            assert_eq!(
                load(Profile::Production, &vars).unwrap().server,
                ServerSettings::default(),
                "{var} read in Lambda"
            );
        }
    }

    #[test]
    fn relay_local_allows_loopback_unless_told_none() {
        let loopback: IpNet = "127.0.0.0/8".parse().unwrap();
        assert!(load(Profile::Local, &[]).unwrap().allowed_cidrs.contains(&loopback));
        assert!(load(Profile::Local, &[("WEBHOOK_ALLOWED_CIDRS", "")]).unwrap().allowed_cidrs.contains(&loopback));
        assert!(load(Profile::Local, &[("WEBHOOK_ALLOWED_CIDRS", "none")]).unwrap().allowed_cidrs.is_empty());
        assert!(load(Profile::Local, &[("WEBHOOK_ALLOWED_CIDRS", "NONE")]).unwrap().allowed_cidrs.is_empty());
    }

    #[test]
    fn relay_local_picks_aws_when_aws_names_are_set() {
        assert_eq!(load(Profile::Local, &[]).unwrap().backend, Backend::Memory);
        let keys = ("SECRETS_ENCRYPTION_KEYS", "k1:0123456789abcdef0123456789abcdef");
        assert_eq!(load(Profile::Local, &[("QUEUE_URL", "http://q"), keys]).unwrap().backend, Backend::Aws);
        assert_eq!(load(Profile::Local, &[("RELAY_BACKEND", "aws"), keys]).unwrap().backend, Backend::Aws);
        assert_eq!(load(Profile::Production, &[("RELAY_BACKEND", "memory")]).unwrap_err().var, "RELAY_BACKEND");
    }

    #[test]
    fn local_uses_dev_credentials_only_when_none_are_set() {
        let err = load(Profile::Local, &PROD[..1]).unwrap_err();
        assert_eq!(err.var, "API_KEYS");
        let err = load(Profile::Local, &PROD[1..]).unwrap_err();
        assert_eq!(err.var, "SERVICE_TOKENS");
        let c = load(Profile::Local, &PROD).unwrap();
        assert!(!c.dev_credentials);
        assert!(c.credentials.tenant(DEV_API_KEY).is_none());
    }

    #[test]
    fn receive_count_leaves_room_for_every_retry() {
        assert_eq!(load(Profile::Production, &PROD).unwrap().queue_max_receive_count, 10);
        let mut vars = PROD.to_vec();
        vars.push(("WEBHOOK_MAX_RETRIES", "12"));
        assert_eq!(load(Profile::Production, &vars).unwrap().queue_max_receive_count, 18);
        vars.push(("WEBHOOK_TIMEOUT", "30000"));
        assert_eq!(load(Profile::Production, &vars).unwrap_err().var, "QUEUE_VISIBILITY_TIMEOUT");
    }

    #[test]
    fn local_has_dev_defaults() {
        let c = load(Profile::Local, &[]).unwrap();
        assert!(c.dev_credentials);
        assert!(!c.require_https);
        assert!(c.credentials.service(DEV_SERVICE_TOKEN));
        assert_eq!(c.credentials.tenant(DEV_API_KEY).unwrap().as_str(), DEV_TENANT);
        assert_eq!(c.allowed_cidrs.len(), 2);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("WEBHOOK_TIMEOUT", "abc"),
            ("WEBHOOK_TIMEOUT", "0"),
            ("WEBHOOK_MAX_RETRIES", "-1"),
            ("WEBHOOK_RETRY_DELAY", "1.5"),
            ("PORT", "70000"),
            ("HOST", "localhost:1"),
            ("EVENT_TYPES", "Bad Type"),
            ("API_KEYS", "no-colon-here-at-all"),
            ("API_KEYS", "acme:sha256:zz"),
            ("SERVICE_TOKENS", "short"),
            ("WEBHOOK_ALLOWED_CIDRS", "10.0.0.0/99"),
            ("WEBHOOK_REQUIRE_HTTPS", "maybe"),
            ("QUEUE_MAX_RECEIVE_COUNT", "3"),
            ("RELAY_BACKEND", "dynamo"),
            ("EVENT_RETENTION_DAYS", "0"),
            ("RATE_LIMIT_PER_MINUTE", "lots"),
            ("CORS_ORIGINS", "https://app.example.com/path"),
            ("CORS_ORIGINS", "*"),
            ("WEBHOOK_SECRET_GRACE", "-5"),
            ("WEBHOOK_DISABLE_AFTER", "0"),
            ("AUTH_FAILURE_LIMIT_PER_MINUTE", "-1"),
            ("SECRETS_ENCRYPTION_KEYS", "k1:too-short"),
        ] {
            let mut vars = PROD.to_vec();
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            let err = load(Profile::Production, &vars).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}: {err}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }

    #[test]
    fn hashed_api_keys_and_several_tenants() {
        let digest = hex::encode(sha256("hashed-key-0000001"));
        let keys = format!("acme:plain-key-00000001, globex:sha256:{digest}");
        let c = load(
            Profile::Production,
            &[("SERVICE_TOKENS", "t-000000000000001,t-000000000000002"), ("API_KEYS", &keys)],
        )
        .unwrap();
        assert_eq!(c.credentials.tenant("plain-key-00000001").unwrap().as_str(), "acme");
        assert_eq!(c.credentials.tenant("hashed-key-0000001").unwrap().as_str(), "globex");
        assert!(c.credentials.tenant("nope-nope-nope-nope").is_none());
        assert!(c.credentials.service("t-000000000000002"));
        assert!(!c.credentials.service(DEV_SERVICE_TOKEN));
    }

    #[test]
    fn secrets_do_not_print() {
        let mut vars = PROD.to_vec();
        vars.push(("DATABASE_URL", "postgres://relay:hunter2@db/relay"));
        vars.push(("REDIS_URL", "rediss://:swordfish@cache:6379"));
        let c = load(Profile::Production, &vars).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("a-service-token-0001"));
        assert!(!printed.contains("an-api-key"));
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("swordfish"));
    }
}
