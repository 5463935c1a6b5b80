//! The ports a function runs on, built once per process from its settings: everything in
//! memory (relay-local's default), or DynamoDB and SQS, with the delivery log in PostgreSQL
//! and locks, rate limits, ended sessions and the webhook cache in Redis when those are
//! configured. relay-api, relay-delivery, relay-maintenance and relay-local build their use
//! cases over a [`Backends`]; relay-ingest, which needs only the event store and the queue,
//! does not link this crate (nor PostgreSQL, nor Redis).

use std::sync::Arc;
use std::time::Duration;

use relay_aws::{AwsClients, AwsSettings, DynamoEventStore, DynamoWebhookStore};
use relay_core::app::{Dashboard, Deliverer, DelivererPorts, Maintenance};
use relay_core::ports::{
    Cache, DeliveryLog, EventStore, Locks, Probe, Queue, RateLimiter, WebhookSender, WebhookStore,
};
use relay_core::sealing::SecretKeys;
use relay_core::settings::{DeliverySettings, Redacted};
use relay_core::{Result, Timestamp};
use relay_memory::{
    MemoryCache, MemoryDeliveryLog, MemoryEventStore, MemoryLocks, MemoryQueue, MemoryRateLimiter, MemoryWebhookStore,
};
use relay_postgres::PostgresDeliveryLog;
use relay_redis::{CachedWebhookStore, RedisStore, WEBHOOK_CACHE_TTL};

/// The stores and queues a function runs on.
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
    /// The dependencies that only degrade the relay when down (the delivery log, Redis): what
    /// `/health` reports besides the event store and the queue.
    pub probes: Vec<Arc<dyn Probe>>,
}

/// The embedded queue's settings (the template sets the real queue's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryQueueSettings {
    /// How long a received message stays invisible.
    pub visibility_timeout: Duration,
    /// Receives after which a message moves to the dead-letter queue.
    pub max_receive_count: u32,
}

impl Backends {
    /// Everything in memory: the relay-local default.
    pub fn in_memory(queue: MemoryQueueSettings) -> Self {
        let dead_letter = Arc::new(MemoryQueue::new(queue.visibility_timeout));
        let relay_queue =
            MemoryQueue::new(queue.visibility_timeout).with_dead_letter(dead_letter.clone(), queue.max_receive_count);
        Self {
            events: Arc::new(MemoryEventStore::new()),
            webhooks: Arc::new(MemoryWebhookStore::new()),
            deliveries: Arc::new(MemoryDeliveryLog::new()),
            queue: Arc::new(relay_queue),
            dead_letter,
            locks: Arc::new(MemoryLocks::new()),
            limiter: Arc::new(MemoryRateLimiter::new()),
            cache: Arc::new(MemoryCache::new()),
            probes: Vec::new(),
        }
    }

    /// DynamoDB and SQS as `aws` names them, with the delivery log, locks, limits and cache
    /// in memory until [`Backends::with_database`] and [`Backends::with_redis`] say otherwise.
    /// Names left unset are empty: each function first requires what it uses
    /// ([`AwsSettings::require`]). Every request is bounded by [`relay_aws::aws_timeouts`].
    pub fn aws(aws: &AwsSettings, event_retention: Duration, clients: &AwsClients) -> Self {
        let tables = aws.tables();
        Self {
            events: Arc::new(DynamoEventStore::new(clients.dynamodb.clone(), &tables, event_retention)),
            webhooks: Arc::new(DynamoWebhookStore::new(clients.dynamodb.clone(), &tables)),
            queue: Arc::new(clients.queue(aws.queue_url())),
            dead_letter: Arc::new(clients.queue(aws.dead_letter_queue_url())),
            deliveries: Arc::new(MemoryDeliveryLog::new()),
            locks: Arc::new(MemoryLocks::new()),
            limiter: Arc::new(MemoryRateLimiter::new()),
            cache: Arc::new(MemoryCache::new()),
            probes: Vec::new(),
        }
    }

    /// Keeps the delivery log in PostgreSQL at `url` (migrated first), if given.
    pub async fn with_database(mut self, url: Option<&Redacted<String>>) -> Result<Self> {
        if let Some(url) = url {
            let log = Arc::new(PostgresDeliveryLog::open(url).await?);
            self.probes.push(log.clone());
            self.deliveries = log;
        }
        Ok(self)
    }

    /// Puts locks, rate limits, ended sessions and the webhook cache in Redis at `url`, if
    /// given. It connects on first use, so an unreachable Redis does not stop start-up.
    pub fn with_redis(mut self, url: Option<&Redacted<String>>) -> Result<Self> {
        if let Some(url) = url {
            let redis = Arc::new(RedisStore::new(&url.0, "relay")?);
            self.locks = redis.clone();
            self.limiter = redis.clone();
            self.cache = redis.clone();
            self.webhooks = Arc::new(CachedWebhookStore::new(self.webhooks.clone(), redis.clone(), WEBHOOK_CACHE_TTL));
            self.probes.push(redis);
        }
        Ok(self)
    }

    /// With the queue in memory and the log in PostgreSQL, a delivery a previous run left
    /// `pending` or `retrying` waits for a message that died with that run: close it as
    /// `failed`, with a reason, so it can be retried by hand instead of waiting forever.
    pub async fn close_orphans(&self) -> Result<()> {
        const REASON: &str =
            "relay-local restarted: its queue was in memory, so this delivery's message was lost; retry it by hand";
        let closed = self.deliveries.close_unfinished(REASON, Timestamp::now()).await?;
        if closed > 0 {
            tracing::warn!(closed, "closed deliveries a previous run left unfinished (their queue was in memory)");
        }
        Ok(())
    }

    /// Dispatch and delivery over these backends, sending with `sender`.
    pub fn deliverer(
        &self,
        sender: Arc<dyn WebhookSender>,
        settings: &DeliverySettings,
        keys: SecretKeys,
    ) -> Deliverer {
        let ports = DelivererPorts {
            events: self.events.clone(),
            webhooks: self.webhooks.clone(),
            deliveries: self.deliveries.clone(),
            queue: self.queue.clone(),
            sender,
            locks: self.locks.clone(),
        };
        Deliverer::new(ports, settings, keys)
    }

    pub fn maintenance(&self) -> Maintenance {
        Maintenance::new(
            self.events.clone(),
            self.webhooks.clone(),
            self.deliveries.clone(),
            self.queue.clone(),
            self.dead_letter.clone(),
        )
    }

    pub fn dashboard(&self) -> Dashboard {
        Dashboard::new(self.deliveries.clone(), self.webhooks.clone(), self.queue.clone(), self.dead_letter.clone())
    }
}
