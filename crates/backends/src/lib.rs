//! The ports a function runs on, built once per process from its settings: everything in
//! memory (relay-local's default), or DynamoDB and SQS, with the delivery log and the event
//! index (what lists DynamoDB's events) in PostgreSQL
//! and locks, rate limits, ended sessions and the webhook cache in Redis when those are
//! configured. relay-api, relay-delivery, relay-maintenance and relay-local build their use
//! cases over a [`Backends`]; relay-ingest, which needs only the event store and the queue,
//! does not link this crate (nor PostgreSQL, nor Redis).

use std::sync::Arc;
use std::time::Duration;

use relay_aws::{AwsClients, AwsSettings, DynamoEventStore, DynamoTenantStore, DynamoWebhookStore};
use relay_core::app::{Dashboard, Deliverer, DelivererPorts, Maintenance, QueuePorts};
use relay_core::auth::Directory;
use relay_core::ports::{
    Cache, DeliveryLog, EventStore, Gates, IndexedEvents, Locks, Probe, Queue, RateLimiter, TenantStore, WebhookSender,
    WebhookStore,
};
use relay_core::sealing::SecretKeys;
use relay_core::settings::{DeliverySettings, Redacted};
use relay_core::{Result, Timestamp};
use relay_memory::{
    Backlog, MemoryCache, MemoryDeliveryLog, MemoryEventIndex, MemoryEventStore, MemoryGates, MemoryLocks, MemoryQueue,
    MemoryRateLimiter, MemoryTenantStore, MemoryWebhookStore,
};
use relay_postgres::{Database, PostgresDeliveryLog};
use relay_redis::{CachedWebhookStore, RedisStore, WEBHOOK_CACHE_TTL};

/// The stores and queues a function runs on.
#[derive(Clone, Debug)]
pub struct Backends {
    pub events: Arc<dyn EventStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    /// Tenants, their API keys and portal links.
    pub tenants: Arc<dyn TenantStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    /// The dispatch lane: ingest's `dispatch` messages.
    pub queue: Arc<dyn Queue>,
    /// The delivery lane: one `deliver` message per (event, webhook), apart from the dispatch
    /// lane so that deliveries never wait behind a backlog of dispatches.
    pub delivery_queue: Arc<dyn Queue>,
    /// The ordered lane (FIFO, a message group per webhook): the `deliver` messages of webhooks
    /// whose `ordering` is `"ordered"`.
    pub ordered_queue: Arc<dyn Queue>,
    /// Where the lanes move poison messages.
    pub dead_letter: Arc<dyn Queue>,
    /// Where the ordered lane moves them, when not to `dead_letter` (SQS: a FIFO queue's
    /// dead-letter queue must be FIFO too). In memory every lane shares `dead_letter`.
    pub ordered_dead_letter: Option<Arc<dyn Queue>>,
    pub locks: Arc<dyn Locks>,
    /// Admission of deliveries: breakers, caps in flight, rate limits.
    pub gates: Arc<dyn Gates>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Shared short-lived state: the dashboard's ended sessions.
    pub cache: Arc<dyn Cache>,
    /// The dependencies that only degrade the relay when down (the delivery log, Redis): what
    /// `/health` reports besides the event store and the queue.
    pub probes: Vec<Arc<dyn Probe>>,
    /// With the events in memory: what keeps them (and a delivery log in memory) within
    /// `MEMORY_MAX_EVENTS` and `EVENT_RETENTION_DAYS`.
    pub evictor: Option<Evictor>,
    /// With the events in DynamoDB: that store and its retention, which `events` lists
    /// through an event index (in memory until [`Backends::with_database`] puts it in
    /// PostgreSQL).
    pub dynamo_events: Option<(Arc<dyn EventStore>, Duration)>,
}

/// The embedded backends' settings (the template sets the real queues').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySettings {
    /// How long a received message stays invisible.
    pub visibility_timeout: Duration,
    /// Receives after which a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    /// `QUEUE_MAX_BACKLOG`: messages both lanes may hold before ingest answers 503.
    pub max_backlog: usize,
    /// `MEMORY_MAX_EVENTS`: events kept at most (the oldest finished ones go first).
    pub max_events: usize,
    /// `EVENT_RETENTION_DAYS`: how long an event is kept at most (once finished).
    pub event_retention: Duration,
}

/// Evicts the embedded event store's oldest finished events past its limits, and their
/// deliveries from a delivery log in memory (a durable log keeps them: its own retention).
#[derive(Debug, Clone)]
pub struct Evictor {
    events: Arc<MemoryEventStore>,
    /// The log to forget the evicted deliveries in, while it is in memory.
    memory_log: Option<Arc<MemoryDeliveryLog>>,
}

impl Evictor {
    /// One sweep (up to 10,000 events); returns how many events it evicted.
    pub async fn sweep(&self, log: &dyn DeliveryLog) -> Result<usize> {
        let before = self.events.len();
        let forgotten = self.events.evict(log).await?;
        if let Some(memory_log) = &self.memory_log {
            memory_log.forget(&forgotten);
        }
        Ok(before.saturating_sub(self.events.len()))
    }
}

impl Backends {
    /// Everything in memory: the relay-local default.
    pub fn in_memory(settings: MemorySettings) -> Self {
        let dead_letter = Arc::new(MemoryQueue::new(settings.visibility_timeout));
        // Both lanes count against one backlog.
        let backlog = Backlog::new(settings.max_backlog);
        let lane = || {
            MemoryQueue::new(settings.visibility_timeout)
                .with_dead_letter(dead_letter.clone(), settings.max_receive_count)
                .with_backlog(backlog.clone())
        };
        let events = Arc::new(MemoryEventStore::with_limits(settings.max_events, settings.event_retention));
        let deliveries = Arc::new(MemoryDeliveryLog::new());
        Self {
            evictor: Some(Evictor { events: events.clone(), memory_log: Some(deliveries.clone()) }),
            dynamo_events: None,
            events,
            webhooks: Arc::new(MemoryWebhookStore::new()),
            tenants: Arc::new(MemoryTenantStore::new()),
            deliveries,
            queue: Arc::new(lane()),
            delivery_queue: Arc::new(lane()),
            ordered_queue: Arc::new(lane().ordered()),
            dead_letter,
            ordered_dead_letter: None,
            locks: Arc::new(MemoryLocks::new()),
            gates: Arc::new(MemoryGates::new()),
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
        let events: Arc<dyn EventStore> =
            Arc::new(DynamoEventStore::new(clients.dynamodb.clone(), &tables, event_retention));
        Self {
            events: Arc::new(IndexedEvents::new(events.clone(), Arc::new(MemoryEventIndex::new()), event_retention)),
            dynamo_events: Some((events, event_retention)),
            webhooks: Arc::new(DynamoWebhookStore::new(clients.dynamodb.clone(), &tables)),
            tenants: Arc::new(DynamoTenantStore::new(clients.dynamodb.clone(), &tables)),
            queue: Arc::new(clients.queue(aws.queue_url())),
            delivery_queue: Arc::new(clients.queue(aws.delivery_queue_url())),
            ordered_queue: Arc::new(clients.queue(aws.ordered_queue_url())),
            dead_letter: Arc::new(clients.queue(aws.dead_letter_queue_url())),
            ordered_dead_letter: aws
                .ordered_dead_letter_queue_url
                .as_deref()
                .map(|url| Arc::new(clients.queue(url)) as Arc<dyn Queue>),
            deliveries: Arc::new(MemoryDeliveryLog::new()),
            locks: Arc::new(MemoryLocks::new()),
            gates: Arc::new(MemoryGates::new()),
            limiter: Arc::new(MemoryRateLimiter::new()),
            cache: Arc::new(MemoryCache::new()),
            probes: Vec::new(),
            evictor: None,
        }
    }

    /// Keeps the delivery log in PostgreSQL (migrated first), if given.
    pub async fn with_database(mut self, database: Option<&Database>) -> Result<Self> {
        if let Some(database) = database {
            let log = Arc::new(PostgresDeliveryLog::open(database).await?);
            if let Some((events, retention)) = &self.dynamo_events {
                let index = Arc::new(log.event_index());
                self.events = Arc::new(IndexedEvents::new(events.clone(), index, *retention));
            }
            self.probes.push(log.clone());
            self.deliveries = log;
            if let Some(evictor) = &mut self.evictor {
                evictor.memory_log = None;
            }
        }
        Ok(self)
    }

    /// Puts locks, rate limits, ended sessions and the webhook cache in Redis at `url`, if
    /// given. It connects on first use, so an unreachable Redis does not stop start-up.
    pub fn with_redis(mut self, url: Option<&Redacted<String>>) -> Result<Self> {
        if let Some(url) = url {
            let redis = Arc::new(RedisStore::new(&url.0, "relay")?);
            self.locks = redis.clone();
            self.gates = redis.clone();
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

    /// Dispatch and delivery over these backends, sending with `sender`, reading tenants
    /// through the process's `directory`.
    pub fn deliverer(
        &self,
        sender: Arc<dyn WebhookSender>,
        settings: &DeliverySettings,
        keys: SecretKeys,
        directory: Arc<Directory>,
    ) -> Deliverer {
        let ports = DelivererPorts {
            events: self.events.clone(),
            webhooks: self.webhooks.clone(),
            deliveries: self.deliveries.clone(),
            queue: self.delivery_queue.clone(),
            ordered_queue: self.ordered_queue.clone(),
            sender,
            locks: self.locks.clone(),
            gates: self.gates.clone(),
            tenants: directory,
        };
        Deliverer::new(ports, settings, keys)
    }

    pub fn maintenance(&self) -> Maintenance {
        let mut dead_letters = vec![self.dead_letter.clone()];
        dead_letters.extend(self.ordered_dead_letter.clone());
        Maintenance::new(
            self.events.clone(),
            self.webhooks.clone(),
            self.deliveries.clone(),
            self.queue.clone(),
            dead_letters,
        )
    }

    pub fn dashboard(&self) -> Dashboard {
        let queues = QueuePorts {
            queue: self.queue.clone(),
            delivery_queue: self.delivery_queue.clone(),
            dead_letter: self.dead_letter.clone(),
        };
        Dashboard::new(self.deliveries.clone(), self.webhooks.clone(), queues)
    }
}
