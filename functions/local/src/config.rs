//! relay-local's settings: everything the relay reads, since relay-local runs all of it, with
//! the defaults of a developer's machine (dev credentials, http and loopback allowed), plus
//! what only relay-local has: where it listens, its embedded queue, its pollers, its
//! maintenance timer and its HTTP server's limits. The Lambda functions read none of these.

use std::net::IpAddr;
use std::time::Duration;

use relay_aws::AwsSettings;
use relay_backends::MemorySettings;
use relay_core::auth::Credentials;
use relay_core::domain::EventTypeRegistry;
use relay_core::sealing::SecretKeys;
use relay_core::settings::{self, ConfigError, DeliverySettings, Profile, Redacted, Vars, WebhookSettings};
use relay_http_api::ApiSettings;
use relay_postgres::Database;

#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST` (127.0.0.1) and `PORT` (3000): where relay-local serves the API.
    pub host: IpAddr,
    pub port: u16,
    /// `SERVICE_TOKENS` and `API_KEYS`.
    pub credentials: Credentials,
    /// True when the credentials are relay-local's built-in dev ones.
    pub dev_credentials: bool,
    /// `EVENT_TYPES`: comma-separated; the seed's eleven when unset.
    pub event_types: EventTypeRegistry,
    /// `ALLOW_BROADCAST_EVENTS` (true here): an event without `tenant` goes to every tenant.
    pub allow_broadcast_events: bool,
    pub delivery: DeliverySettings,
    pub webhooks: WebhookSettings,
    pub api: ApiSettings,
    /// `PUBLIC_URL`: where portal links point (unset: the request's host).
    pub public_url: Option<String>,
    /// `SECRETS_ENCRYPTION_KEYS`: required on DynamoDB; in memory a key is made at start
    /// when it is unset.
    pub secret_keys: Option<SecretKeys>,
    /// `DASHBOARD_SESSION_SECRET`: unset, a random one is made at start (sessions end with the
    /// process).
    pub dashboard_session_secret: Option<Redacted<String>>,
    /// `QUEUE_VISIBILITY_TIMEOUT` (s, 30; longer than `WEBHOOK_TIMEOUT`) and
    /// `QUEUE_MAX_RECEIVE_COUNT` (the larger of 10 and `WEBHOOK_MAX_RETRIES` + 6; more than
    /// `WEBHOOK_MAX_RETRIES` + 1): the embedded queue's settings.
    /// The embedded backends: queue, backlog and event limits.
    pub memory: MemorySettings,
    /// `WORKER_CONCURRENCY` (4): pollers, each handling batches of up to 10.
    pub worker_concurrency: usize,
    /// `MAINTENANCE_INTERVAL` (s, 60): how often maintenance runs.
    pub maintenance_interval: Duration,
    /// `RELAY_BACKEND`: `memory` or `aws`; `aws` when any AWS name is set.
    pub backend: Backend,
    /// Where the AWS backends are.
    pub aws: AwsSettings,
    /// `EVENT_RETENTION_DAYS` (30): how long DynamoDB keeps events.
    pub event_retention: Duration,
    /// `DATABASE_URL`: the PostgreSQL delivery log; unset, the log is in memory.
    /// `DATABASE_POOL_SIZE`: its connections, by default one per poller of each lane plus two
    /// for the API and maintenance.
    pub database: Option<Database>,
    /// `REDIS_URL`: locks, rate limits, ended sessions and the webhook cache; unset, in memory.
    pub redis_url: Option<Redacted<String>>,
    /// The HTTP server's limits and graceful stop.
    pub server: ServerSettings,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::from_env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let (credentials, dev_credentials) = Credentials::from_vars(vars, Profile::Local)?;
        let delivery = DeliverySettings::from_vars(vars)?;
        let aws = AwsSettings::from_vars(vars);
        let backend = match vars.get("RELAY_BACKEND").as_deref() {
            Some("aws") => Backend::Aws,
            Some("memory") => Backend::Memory,
            Some(other) => {
                return Err(ConfigError::new("RELAY_BACKEND", format!("must be aws or memory, got {other:?}")));
            }
            None if aws.any_set() => Backend::Aws,
            None => Backend::Memory,
        };
        let secret_keys = match settings::secret_keys(vars)? {
            None if backend == Backend::Aws => {
                return Err(ConfigError::new(
                    "SECRETS_ENCRYPTION_KEYS",
                    "is required on DynamoDB (webhook secrets are stored sealed with it): id:material, e.g. k1:$(openssl rand -base64 32)",
                ));
            }
            keys => keys,
        };
        let worker_concurrency = vars.num::<usize>("WORKER_CONCURRENCY", 4, 1..=64)?;
        Ok(Self {
            host: match vars.get("HOST") {
                None => IpAddr::from([127, 0, 0, 1]),
                Some(h) => {
                    h.parse().map_err(|_| ConfigError::new("HOST", format!("must be an IP address, got {h:?}")))?
                }
            },
            port: vars.num::<u16>("PORT", 3000, 0..=u16::MAX)?,
            credentials,
            dev_credentials,
            event_types: settings::event_types(vars)?,
            allow_broadcast_events: settings::allow_broadcast_events(vars, Profile::Local)?,
            webhooks: WebhookSettings::from_vars(vars, Profile::Local)?,
            api: ApiSettings::from_vars(vars)?,
            public_url: relay_http_api::public_url(vars)?,
            secret_keys,
            dashboard_session_secret: relay_dashboard::session_secret(vars)?,
            memory: memory_settings(vars, &delivery)?,
            worker_concurrency,
            maintenance_interval: vars.secs("MAINTENANCE_INTERVAL", 60, 1..=86_400)?,
            backend,
            aws,
            event_retention: relay_aws::event_retention(vars)?,
            database: Database::optional(vars, pool_size(worker_concurrency))?,
            redis_url: relay_redis::redis_url(vars),
            server: ServerSettings::from_vars(vars)?,
            delivery,
        })
    }
}

/// The delivery log's default connections: every poller of both lanes holds at most one at a
/// time, and the API and maintenance share two more.
fn pool_size(worker_concurrency: usize) -> u32 {
    u32::try_from(worker_concurrency).unwrap_or(64).saturating_mul(2).saturating_add(2)
}

/// The embedded backends' settings. The queue's are checked against the delivery settings: a
/// message must stay invisible longer than an attempt takes, and the queue must not give up on
/// a message before its retries run out.
fn memory_settings(vars: &Vars, delivery: &DeliverySettings) -> Result<MemorySettings, ConfigError> {
    let visibility_timeout = vars.secs("QUEUE_VISIBILITY_TIMEOUT", 30, 1..=43_200)?;
    if visibility_timeout <= delivery.webhook_timeout {
        return Err(ConfigError::new(
            "QUEUE_VISIBILITY_TIMEOUT",
            format!(
                "must be longer than WEBHOOK_TIMEOUT ({} ms), or a message comes back while its delivery is still in progress",
                delivery.webhook_timeout.as_millis()
            ),
        ));
    }
    let max_retries = delivery.retry.max_retries;
    // Room for every scheduled attempt plus a few receives lost to crashes.
    let max_receive_count = vars.num::<u32>("QUEUE_MAX_RECEIVE_COUNT", (max_retries + 6).max(10), 1..=1000)?;
    if max_receive_count <= max_retries + 1 {
        return Err(ConfigError::new(
            "QUEUE_MAX_RECEIVE_COUNT",
            format!(
                "must be larger than WEBHOOK_MAX_RETRIES + 1 ({}), or messages reach the DLQ before their retries run out",
                max_retries + 1
            ),
        ));
    }
    Ok(MemorySettings {
        visibility_timeout,
        max_receive_count,
        max_backlog: vars.num::<usize>("QUEUE_MAX_BACKLOG", 50_000, 100..=100_000_000)?,
        max_events: vars.num::<usize>("MEMORY_MAX_EVENTS", 100_000, 100..=100_000_000)?,
        event_retention: relay_aws::event_retention(vars)?,
    })
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
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let secs = |var: &'static str, default: Duration, range| vars.secs(var, default.as_secs(), range);
        Ok(Self {
            header_timeout: secs("HTTP_HEADER_TIMEOUT", defaults.header_timeout, 1..=3600)?,
            body_timeout: secs("HTTP_BODY_TIMEOUT", defaults.body_timeout, 1..=3600)?,
            idle_timeout: secs("HTTP_IDLE_TIMEOUT", defaults.idle_timeout, 1..=86_400)?,
            max_connections: vars.num::<usize>("HTTP_MAX_CONNECTIONS", defaults.max_connections, 16..=1_000_000)?,
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

#[cfg(test)]
mod tests {
    use ipnet::IpNet;
    use relay_core::auth::{DEV_API_KEY, DEV_SERVICE_TOKEN, DEV_TENANT, digest};

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(&Vars::from_pairs(vars))
    }

    const CREDENTIALS: [(&str, &str); 2] =
        [("SERVICE_TOKENS", "a-service-token-0001"), ("API_KEYS", "acme:an-api-key-000001")];
    const KEYS: (&str, &str) = ("SECRETS_ENCRYPTION_KEYS", "k1:0123456789abcdef0123456789abcdef");

    #[test]
    fn seed_defaults() {
        let c = load(&CREDENTIALS).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.delivery.webhook_timeout, Duration::from_millis(5000));
        assert_eq!(c.delivery.retry.max_retries, 3);
        assert_eq!(c.delivery.retry.base_delay, Duration::from_secs(60));
        assert_eq!(c.event_types.len(), 11);
        assert_eq!(c.api.max_payload_bytes, 262_144);
        assert!(!c.webhooks.require_https);
    }

    #[test]
    fn secret_keys_are_required_on_dynamodb() {
        // In memory a key is made at start; on DynamoDB the key must be given.
        assert!(load(&[]).unwrap().secret_keys.is_none());
        assert_eq!(load(&[("QUEUE_URL", "http://q")]).unwrap_err().var, "SECRETS_ENCRYPTION_KEYS");
        assert!(load(&[("QUEUE_URL", "http://q"), KEYS]).unwrap().secret_keys.is_some());
    }

    #[test]
    fn the_pool_follows_the_pollers_unless_told() {
        assert!(load(&[]).unwrap().database.is_none());
        let url = ("DATABASE_URL", "postgres://postgres@127.0.0.1/postgres");
        assert_eq!(load(&[url]).unwrap().database.unwrap().pool_size, 10);
        assert_eq!(load(&[url, ("WORKER_CONCURRENCY", "16")]).unwrap().database.unwrap().pool_size, 34);
        assert_eq!(load(&[url, ("DATABASE_POOL_SIZE", "3")]).unwrap().database.unwrap().pool_size, 3);
        assert_eq!(load(&[url, ("DATABASE_POOL_SIZE", "0")]).unwrap_err().var, "DATABASE_POOL_SIZE");
    }

    #[test]
    fn server_settings() {
        let local =
            load(&[("HTTP_HEADER_TIMEOUT", "3"), ("HTTP_MAX_CONNECTIONS", "100"), ("SHUTDOWN_TIMEOUT", "0")]).unwrap();
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
            assert_eq!(load(&[(var, value)]).unwrap_err().var, var);
        }
    }

    #[test]
    fn loopback_is_allowed_unless_told_none() {
        let loopback: IpNet = "127.0.0.0/8".parse().unwrap();
        assert!(load(&[]).unwrap().webhooks.allowed_cidrs.contains(&loopback));
        assert!(load(&[("WEBHOOK_ALLOWED_CIDRS", "")]).unwrap().webhooks.allowed_cidrs.contains(&loopback));
        assert!(load(&[("WEBHOOK_ALLOWED_CIDRS", "none")]).unwrap().webhooks.allowed_cidrs.is_empty());
        assert!(load(&[("WEBHOOK_ALLOWED_CIDRS", "NONE")]).unwrap().webhooks.allowed_cidrs.is_empty());
    }

    #[test]
    fn picks_aws_when_aws_names_are_set() {
        assert_eq!(load(&[]).unwrap().backend, Backend::Memory);
        assert_eq!(load(&[("QUEUE_URL", "http://q"), KEYS]).unwrap().backend, Backend::Aws);
        assert_eq!(load(&[("RELAY_BACKEND", "aws"), KEYS]).unwrap().backend, Backend::Aws);
        assert_eq!(load(&[("RELAY_BACKEND", "memory"), ("QUEUE_URL", "http://q")]).unwrap().backend, Backend::Memory);
    }

    #[test]
    fn uses_dev_credentials_only_when_none_are_set() {
        // Service tokens alone: no static key, and no dev key (tenants' keys come from the API).
        let tokens_only = load(&CREDENTIALS[..1]).unwrap();
        assert!(!tokens_only.dev_credentials);
        assert!(tokens_only.credentials.tenant(DEV_API_KEY).is_none());
        assert!(!tokens_only.credentials.service(DEV_SERVICE_TOKEN));
        assert_eq!(load(&CREDENTIALS[1..]).unwrap_err().var, "SERVICE_TOKENS");
        let c = load(&CREDENTIALS).unwrap();
        assert!(!c.dev_credentials);
        assert!(c.credentials.tenant(DEV_API_KEY).is_none());
    }

    /// The embedded queue's settings are checked against the delivery settings here, in
    /// relay-local, the only place that has that queue.
    #[test]
    fn the_embedded_queue_leaves_room_for_every_retry_and_every_attempt() {
        assert_eq!(load(&[]).unwrap().memory.max_receive_count, 10);
        assert_eq!(load(&[("WEBHOOK_MAX_RETRIES", "12")]).unwrap().memory.max_receive_count, 18);
        let err = load(&[("WEBHOOK_TIMEOUT", "30000")]).unwrap_err();
        assert_eq!(err.var, "QUEUE_VISIBILITY_TIMEOUT");
        let longer = load(&[("WEBHOOK_TIMEOUT", "30000"), ("QUEUE_VISIBILITY_TIMEOUT", "31")]).unwrap();
        assert_eq!(longer.memory.visibility_timeout, Duration::from_secs(31));
        assert_eq!(load(&[("QUEUE_MAX_RECEIVE_COUNT", "4")]).unwrap_err().var, "QUEUE_MAX_RECEIVE_COUNT");
    }

    #[test]
    fn dev_defaults() {
        let c = load(&[]).unwrap();
        assert!(c.dev_credentials);
        assert!(!c.webhooks.require_https);
        assert!(c.credentials.service(DEV_SERVICE_TOKEN));
        assert_eq!(c.credentials.tenant(DEV_API_KEY).unwrap().as_str(), DEV_TENANT);
        assert_eq!(c.webhooks.allowed_cidrs.len(), 2);
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
            ("DASHBOARD_SESSION_SECRET", "too-short"),
        ] {
            let mut vars = CREDENTIALS.to_vec();
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            let err = load(&vars).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}: {err}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }

    #[test]
    fn hashed_api_keys_and_several_tenants() {
        let hashed = hex_digest("hashed-key-0000001");
        let keys = format!("acme:plain-key-00000001, globex:sha256:{hashed}");
        let c = load(&[("SERVICE_TOKENS", "t-000000000000001,t-000000000000002"), ("API_KEYS", &keys)]).unwrap();
        assert_eq!(c.credentials.tenant("plain-key-00000001").unwrap().as_str(), "acme");
        assert_eq!(c.credentials.tenant("hashed-key-0000001").unwrap().as_str(), "globex");
        assert!(c.credentials.tenant("nope-nope-nope-nope").is_none());
        assert!(c.credentials.service("t-000000000000002"));
        assert!(!c.credentials.service(DEV_SERVICE_TOKEN));
    }

    fn hex_digest(value: &str) -> String {
        digest(value).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn secrets_do_not_print() {
        let mut vars = CREDENTIALS.to_vec();
        vars.push(("DATABASE_URL", "postgres://relay:hunter2@db/relay"));
        vars.push(("REDIS_URL", "rediss://:swordfish@cache:6379"));
        vars.push(("DASHBOARD_SESSION_SECRET", "a-dashboard-secret-of-32-characters"));
        let printed = format!("{:?}", load(&vars).unwrap());
        for secret in ["a-service-token-0001", "an-api-key", "hunter2", "swordfish", "a-dashboard-secret"] {
            assert!(!printed.contains(secret), "{secret} printed");
        }
    }
}
