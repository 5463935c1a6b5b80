//! Building the relay from its configuration, once per process: the backends (in memory, or
//! DynamoDB, SQS and PostgreSQL) and the use cases over them. relay-local and every Lambda
//! function start through here, so they run the very same code.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::Result;
use crate::adapters::cached::CachedWebhookStore;
use crate::adapters::dynamodb::{DynamoEventStore, DynamoWebhookStore, TableNames};
use crate::adapters::http::{HttpSender, SsrfGuard};
use crate::adapters::memory::{
    MemoryCache, MemoryDeliveryLog, MemoryEventStore, MemoryLocks, MemoryQueue, MemoryRateLimiter, MemoryWebhookStore,
};
use crate::adapters::postgres::PostgresDeliveryLog;
use crate::adapters::redis::RedisStore;
use crate::adapters::sqs::SqsQueue;
use crate::api::{self, Access, Common, EventStoreProbe, EventsState, Health, ManagementState, QueueProbe};
use crate::app::{AdminPolicy, Dashboard, Deliverer, DelivererPorts, Ingest, Maintenance, WebhookAdmin};
use crate::config::{Backend, Config, ConfigError, Need, Profile};
use crate::ports::{Cache, DeliveryLog, EventStore, Locks, Probe, Queue, RateLimiter, WebhookStore};
use crate::sealing::SecretKeys;
use crate::web::{self, Sessions, WebState};
use crate::worker::BatchHandler;

/// Connections per process: a Lambda handles one request at a time; relay-local a few.
const DATABASE_POOL_SIZE: u32 = 5;
/// How long a dashboard session lasts before signing in again.
const DASHBOARD_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// How long a cached list of subscribed webhooks may live (changes invalidate it at once).
const WEBHOOK_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Bounds on every DynamoDB and SQS request. The SDK's defaults bound only connecting: a
/// service that takes the connection and then never answers (a frozen host, a lost network)
/// would hold the request, and the caller of `POST /api/events`, until TCP gives up. A request
/// without an answer in 4 s is tried again (the standard retry mode), and the call gives up
/// after 8 s with `503`: within the ingest function's 10 s and API Gateway's 29 s. DynamoDB
/// and SQS answer in milliseconds. An SQS long poll adds its wait (`SqsQueue::receive`).
pub fn aws_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_millis(3100))
        .operation_attempt_timeout(std::time::Duration::from_secs(4))
        .operation_timeout(std::time::Duration::from_secs(8))
        .build()
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dependency(#[from] crate::Error),
}

/// The Lambda functions' configuration: the environment, completed at cold start from Secrets
/// Manager: `CREDENTIALS_SECRET` (a JSON secret with `SERVICE_TOKENS` and `API_KEYS`),
/// `DASHBOARD_SECRET` (a JSON secret with `DASHBOARD_SESSION_SECRET`) and `ENCRYPTION_SECRET`
/// (a JSON secret with `SECRETS_ENCRYPTION_KEYS`), where a variable set in the environment
/// wins, and `DATABASE_SECRET` (RDS's JSON secret with
/// `username` and `password`), which with `DATABASE_HOST` becomes `DATABASE_URL` (TLS required).
pub async fn production_config(sdk: &SdkConfig) -> Result<Config, StartupError> {
    config_with_secrets(sdk, std::env::vars().collect()).await
}

/// [`production_config`] over the given variables.
pub async fn config_with_secrets(sdk: &SdkConfig, mut vars: HashMap<String, String>) -> Result<Config, StartupError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let json_secrets = [
        ("CREDENTIALS_SECRET", &["SERVICE_TOKENS", "API_KEYS"][..]),
        ("DASHBOARD_SECRET", &["DASHBOARD_SESSION_SECRET"][..]),
        ("ENCRYPTION_SECRET", &["SECRETS_ENCRYPTION_KEYS"][..]),
    ];
    for (variable, names) in json_secrets {
        let Some(id) = vars.get(variable).filter(|v| !v.is_empty()).cloned() else { continue };
        let secret: HashMap<String, String> = secret_json(&client, &id, variable).await?;
        for name in names {
            if let Some(value) = secret.get(*name) {
                vars.entry((*name).to_owned()).or_insert_with(|| value.clone());
            }
        }
    }
    if let Some(id) = vars.get("DATABASE_SECRET").filter(|v| !v.is_empty()).cloned() {
        #[derive(serde::Deserialize)]
        struct DatabaseSecret {
            username: String,
            password: String,
            #[serde(default)]
            dbname: Option<String>,
        }
        let secret: DatabaseSecret = secret_json(&client, &id, "DATABASE_SECRET").await?;
        let host = vars
            .get("DATABASE_HOST")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ConfigError::new("DATABASE_HOST", "is required with DATABASE_SECRET"))?;
        let database = secret.dbname.as_deref().unwrap_or("relay");
        let mut url = url::Url::parse(&format!("postgres://{host}:5432/{database}?sslmode=require"))
            .map_err(|e| ConfigError::new("DATABASE_HOST", format!("is not a host name: {e}")))?;
        // The setters percent-encode whatever the generated credentials contain.
        let bad = |_| ConfigError::new("DATABASE_SECRET", "holds credentials that do not fit a URL");
        url.set_username(&secret.username).map_err(bad)?;
        url.set_password(Some(&secret.password)).map_err(bad)?;
        vars.insert("DATABASE_URL".to_owned(), url.into());
    }
    Ok(Config::from_lookup(Profile::Production, |name| vars.get(name).cloned())?)
}

async fn secret_json<T: serde::de::DeserializeOwned>(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    var: &'static str,
) -> Result<T, StartupError> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| crate::Error::unavailable("secrets", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))?;
    let text = output.secret_string().ok_or_else(|| ConfigError::new(var, "names a secret without a string value"))?;
    Ok(serde_json::from_str(text)
        .map_err(|e| ConfigError::new(var, format!("names a secret that is not the expected JSON: {e}")))?)
}

/// The stores and queues the relay runs on.
#[derive(Clone, Debug)]
pub struct Backends {
    pub events: Arc<dyn EventStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub queue: Arc<dyn Queue>,
    /// Where the queue moves poison messages.
    pub dead_letter: Arc<dyn Queue>,
    pub locks: Arc<dyn Locks>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Shared short-lived state: the dashboard's ended sessions.
    pub cache: Arc<dyn Cache>,
    /// What the health endpoint checks.
    pub probes: Vec<Arc<dyn Probe>>,
}

impl Backends {
    /// Everything in memory: the relay-local default.
    pub fn in_memory(config: &Config) -> Self {
        let dead_letter = Arc::new(MemoryQueue::new(config.queue_visibility_timeout));
        let queue = MemoryQueue::new(config.queue_visibility_timeout)
            .with_dead_letter(dead_letter.clone(), config.queue_max_receive_count);
        Self {
            events: Arc::new(MemoryEventStore::new()),
            webhooks: Arc::new(MemoryWebhookStore::new()),
            deliveries: Arc::new(MemoryDeliveryLog::new()),
            queue: Arc::new(queue),
            dead_letter,
            locks: Arc::new(MemoryLocks::new()),
            limiter: Arc::new(MemoryRateLimiter::new()),
            cache: Arc::new(MemoryCache::new()),
            probes: Vec::new(),
        }
    }

    /// DynamoDB and SQS as configured (`EVENTS_TABLE`, `IDEMPOTENCY_TABLE`, `WEBHOOKS_TABLE`,
    /// `QUEUE_URL`, `DLQ_URL`), with the delivery log in memory; see [`Backends::with_database`].
    ///
    /// Names left unset are left empty: each function first requires what it uses
    /// ([`Config::require`]), so relay-ingest runs without a webhooks table. Every request is
    /// bounded by [`aws_timeouts`].
    pub fn aws(config: &Config, sdk: &SdkConfig) -> Self {
        let aws = &config.aws;
        let tables = TableNames {
            events: aws.events_table.clone().unwrap_or_default(),
            idempotency: aws.idempotency_table.clone().unwrap_or_default(),
            webhooks: aws.webhooks_table.clone().unwrap_or_default(),
        };
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk).timeout_config(aws_timeouts()).build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk).timeout_config(aws_timeouts()).build(),
        );
        Self {
            events: Arc::new(DynamoEventStore::new(dynamodb.clone(), &tables, config.event_retention)),
            webhooks: Arc::new(DynamoWebhookStore::new(dynamodb, &tables)),
            deliveries: Arc::new(MemoryDeliveryLog::new()),
            queue: Arc::new(SqsQueue::new(sqs.clone(), aws.queue_url.clone().unwrap_or_default())),
            dead_letter: Arc::new(SqsQueue::new(sqs, aws.dead_letter_queue_url.clone().unwrap_or_default())),
            locks: Arc::new(MemoryLocks::new()),
            limiter: Arc::new(MemoryRateLimiter::new()),
            cache: Arc::new(MemoryCache::new()),
            probes: Vec::new(),
        }
    }

    /// Keeps the delivery log in PostgreSQL at `DATABASE_URL` (migrated first), if it is set.
    pub async fn with_database(mut self, config: &Config) -> Result<Self, StartupError> {
        if let Some(url) = &config.database_url {
            let log = PostgresDeliveryLog::connect(&url.0, DATABASE_POOL_SIZE).await?;
            log.migrate().await?;
            let log = Arc::new(log);
            self.probes.push(log.clone());
            self.deliveries = log;
        }
        Ok(self)
    }

    /// Puts locks, rate limits, ended sessions and the webhook cache in Redis at `REDIS_URL`,
    /// if it is set.
    /// It connects on first use, so an unreachable Redis does not stop start-up.
    pub fn with_redis(mut self, config: &Config) -> Result<Self, StartupError> {
        if let Some(url) = &config.redis_url {
            let redis = Arc::new(RedisStore::new(&url.0, "relay")?);
            self.locks = redis.clone();
            self.limiter = redis.clone();
            self.cache = redis.clone();
            self.webhooks = Arc::new(CachedWebhookStore::new(self.webhooks.clone(), redis.clone(), WEBHOOK_CACHE_TTL));
            self.probes.push(redis);
        }
        Ok(self)
    }

    /// The backends `config.backend` names (the SDK's standard configuration for AWS), with
    /// the PostgreSQL delivery log when `DATABASE_URL` is set.
    pub async fn from_config(config: &Config) -> Result<Self, StartupError> {
        let backends = match config.backend {
            Backend::Memory => Self::in_memory(config),
            Backend::Aws => {
                config.require(&[
                    Need::EventsTable,
                    Need::IdempotencyTable,
                    Need::WebhooksTable,
                    Need::QueueUrl,
                    Need::DeadLetterQueueUrl,
                ])?;
                Self::aws(config, &aws_config::defaults(BehaviorVersion::latest()).load().await)
            }
        };
        let backends = backends.with_database(config).await?.with_redis(config)?;
        if config.backend == Backend::Memory && config.database_url.is_some() {
            backends.close_orphans().await?;
        }
        Ok(backends)
    }

    /// With the queue in memory and the log in PostgreSQL, a delivery a previous run left
    /// `pending` or `retrying` waits for a message that died with that run: close it as
    /// `failed`, with a reason, so it can be retried by hand instead of waiting forever.
    async fn close_orphans(&self) -> Result<(), StartupError> {
        const REASON: &str =
            "relay-local restarted: its queue was in memory, so this delivery's message was lost; retry it by hand";
        let closed = self.deliveries.close_unfinished(REASON, crate::Timestamp::now()).await?;
        if closed > 0 {
            tracing::warn!(closed, "closed deliveries a previous run left unfinished (their queue was in memory)");
        }
        Ok(())
    }
}

/// The use cases, built once over the backends.
#[derive(Clone, Debug)]
pub struct Relay {
    pub ingest: Ingest,
    pub admin: WebhookAdmin,
    pub handler: BatchHandler,
    pub maintenance: Maintenance,
    pub dashboard: Dashboard,
    pub backends: Backends,
    /// Who may call, shared by every router (one count of failed credentials per process).
    access: Access,
    /// The dependency report, shared by `/health` and the dashboards.
    health: Health,
    config: Arc<Config>,
}

impl Relay {
    pub fn new(config: &Config, backends: Backends) -> Result<Self> {
        let guard = SsrfGuard::new(config.allowed_cidrs.clone());
        let sender = Arc::new(HttpSender::new(config.webhook_timeout, guard.clone())?);
        let registry = Arc::new(config.event_types.clone());
        // Functions that read webhooks require the keys (`Need::SecretKeys`), and relay-local on
        // DynamoDB too; only in memory (or where webhooks are never read) is a fresh key right.
        let keys = match &config.secret_keys {
            Some(keys) => keys.clone(),
            None => SecretKeys::random()?,
        };
        let b = &backends;
        let ports = DelivererPorts {
            events: b.events.clone(),
            webhooks: b.webhooks.clone(),
            deliveries: b.deliveries.clone(),
            queue: b.queue.clone(),
            sender,
            locks: b.locks.clone(),
        };
        let deliverer = Deliverer::new(ports, config.retry, config.webhook_timeout, config.disable_after, keys.clone());
        let policy = AdminPolicy {
            registry: registry.clone(),
            require_https: config.require_https,
            guard: Arc::new(guard),
            secret_grace: config.secret_grace,
            keys,
        };
        let admin =
            WebhookAdmin::new(b.webhooks.clone(), b.deliveries.clone(), b.events.clone(), deliverer.clone(), policy);
        let ingest = Ingest::new(b.events.clone(), b.queue.clone(), registry);
        let handler = BatchHandler::new(deliverer.clone(), b.queue.clone());
        let maintenance = Maintenance::new(
            b.events.clone(),
            b.webhooks.clone(),
            b.deliveries.clone(),
            b.queue.clone(),
            b.dead_letter.clone(),
            deliverer,
        );
        let dashboard =
            Dashboard::new(b.deliveries.clone(), b.webhooks.clone(), b.queue.clone(), b.dead_letter.clone());
        let access = Access::new(
            Arc::new(config.credentials.clone()),
            b.limiter.clone(),
            config.rate_limit_per_minute,
            config.auth_failure_limit_per_minute,
        );
        let critical: Vec<Arc<dyn Probe>> =
            vec![Arc::new(EventStoreProbe(b.events.clone())), Arc::new(QueueProbe(b.queue.clone()))];
        let health = Health::new(critical, b.probes.clone());
        Ok(Self {
            ingest,
            admin,
            handler,
            maintenance,
            dashboard,
            backends,
            access,
            health,
            config: Arc::new(config.clone()),
        })
    }

    pub fn events_state(&self) -> EventsState {
        EventsState {
            ingest: self.ingest.clone(),
            access: self.access.clone(),
            max_payload_bytes: self.config.max_payload_bytes,
        }
    }

    pub fn management_state(&self) -> ManagementState {
        ManagementState {
            admin: self.admin.clone(),
            dashboard: self.dashboard.clone(),
            access: self.access.clone(),
            health: self.health.clone(),
        }
    }

    /// `/health` and CORS, for every app.
    pub fn common(&self) -> Common {
        Common {
            health: self.health.clone(),
            access: Some(self.access.clone()),
            cors_origins: self.config.cors_origins.clone(),
        }
    }

    /// The dashboard's routes, signed with `DASHBOARD_SESSION_SECRET`; without it relay-local
    /// makes a random secret now (sessions end with the process) and relay-api serves none.
    pub fn dashboard_routes(&self) -> axum::Router {
        let secret = match &self.config.dashboard_session_secret {
            Some(secret) => secret.0.as_bytes().to_vec(),
            None if self.config.profile == Profile::Local => rand::random::<[u8; 32]>().to_vec(),
            None => return axum::Router::new(),
        };
        web::routes(WebState {
            management: self.management_state(),
            sessions: Sessions::new(secret, DASHBOARD_SESSION_TTL),
            ended: self.backends.cache.clone(),
            always_secure: self.config.profile == Profile::Production,
        })
    }

    /// The whole API as one router (relay-local).
    pub fn router(&self) -> axum::Router {
        api::local_app(self.events_state(), self.management_state(), self.dashboard_routes(), self.common())
    }
}
