use std::collections::HashMap;

use async_trait::async_trait;

use crate::domain::{
    ApiKey, ApiKeyId, Attempt, Delivery, DeliveryKey, DeliveryStatus, Event, EventId, EventType, Page, PageRequest,
    PortalLink, Tenant, TenantId, Webhook, WebhookId,
};
use crate::{Result, Timestamp};

/// Whose deliveries a statistic covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsScope {
    Webhook(WebhookId),
    Tenant(TenantId),
}

/// A tenant's deliveries created in one time bucket, by their status now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineBucket {
    pub start: Timestamp,
    pub pending: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl TimelineBucket {
    pub fn empty(start: Timestamp) -> Self {
        Self { start, pending: 0, retrying: 0, succeeded: 0, failed: 0 }
    }

    pub fn count(&mut self, status: DeliveryStatus, n: u64) {
        match status {
            DeliveryStatus::Pending => self.pending += n,
            DeliveryStatus::Retrying => self.retrying += n,
            DeliveryStatus::Succeeded => self.succeeded += n,
            DeliveryStatus::Failed => self.failed += n,
        }
    }

    pub fn total(&self) -> u64 {
        self.pending + self.retrying + self.succeeded + self.failed
    }
}

/// Deliveries created since some time, and their attempts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStats {
    pub deliveries: u64,
    /// Distinct events among them.
    pub events: u64,
    pub pending: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// succeeded / (succeeded + failed); `None` before any delivery is final.
    pub success_rate: Option<f64>,
    pub attempts: u64,
    pub avg_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
}

impl DeliveryStats {
    /// Fills `success_rate` from the counts.
    pub fn with_rate(mut self) -> Self {
        let done = self.succeeded + self.failed;
        self.success_rate = (done > 0).then(|| self.succeeded as f64 / done as f64);
        self
    }
}

/// An ingest idempotency record: the caller's key, what the request meant, and the event it
/// created. Written atomically with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    pub fingerprint: String,
    pub event_id: EventId,
    pub expires_at: Timestamp,
}

/// The result of [`EventStore::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    Created,
    /// The idempotency key was taken by a live record: nothing was written.
    Duplicate(IdempotencyRecord),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    pub source: Option<String>,
    /// Only the events scoped to this tenant.
    pub tenant: Option<TenantId>,
}

#[async_trait]
pub trait EventStore: std::fmt::Debug + Send + Sync + 'static {
    /// Stores a new event and, if given, its idempotency record: when the key is held by an
    /// unexpired record, nothing is written and that record is returned. The record may be
    /// written before the event (DynamoDB writes them one after the other, not in a
    /// transaction): a record whose event is missing is mended by [`crate::app::Ingest`].
    async fn insert(&self, event: &Event, idempotency: Option<&IdempotencyRecord>) -> Result<Insert>;
    async fn get(&self, id: EventId) -> Result<Option<Event>>;
    /// The events of `ids` that exist, in any order (DynamoDB: one BatchGetItem per 100).
    async fn get_many(&self, ids: &[EventId]) -> Result<Vec<Event>> {
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        let found = futures_util::future::join_all(unique.iter().map(|id| self.get(*id))).await;
        Ok(found.into_iter().collect::<Result<Vec<_>>>()?.into_iter().flatten().collect())
    }
    /// Newest first.
    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>>;
    /// Records that the event's dispatch message could not be sent (the queue refused it):
    /// [`EventStore::undispatched`] lists it until [`EventStore::mark_enqueued`].
    async fn mark_undispatched(&self, id: EventId) -> Result<()>;
    /// Records that the dispatch message of an event marked undispatched is on the queue now.
    async fn mark_enqueued(&self, id: EventId) -> Result<()>;
    /// Records that each event was dispatched, to these webhooks (its deliveries are in the log
    /// and their messages on the queue). A store that evicts events to stay within a bound
    /// (the embedded one) evicts only dispatched events whose deliveries are all final; an
    /// indexed store marks them dispatched in its index.
    async fn mark_dispatched(&self, dispatched: &[(&Event, Vec<WebhookId>)]) -> Result<()> {
        let _ = dispatched;
        Ok(())
    }
    /// Which of `ids` were dispatched before ([`EventStore::mark_dispatched`]): a second
    /// dispatch of one of them (an idempotent replay, maintenance) fans it out to no webhook
    /// it has no delivery for. A store that does not know says none.
    async fn dispatched_before(&self, ids: &[EventId]) -> Result<Vec<EventId>> {
        let _ = ids;
        Ok(Vec::new())
    }
    /// Up to `limit` events created before `created_before` and marked undispatched, oldest
    /// first.
    async fn undispatched(&self, created_before: Timestamp, limit: usize) -> Result<Vec<EventId>>;
    /// How many events of each of `types` were created since `since` (a count per type, in order).
    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>>;
    /// Forgets up to `limit` entries the store keeps of events created before `before` that
    /// nothing else expires (an index beside a store that expires events by TTL); how many.
    async fn prune(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let _ = (before, limit);
        Ok(0)
    }
}

#[async_trait]
pub trait WebhookStore: std::fmt::Debug + Send + Sync + 'static {
    async fn insert(&self, webhook: &Webhook) -> Result<()>;
    /// Any tenant's webhook: callers check the tenant.
    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>>;
    /// One tenant's webhooks, newest first.
    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>>;
    /// Replaces a stored webhook that is still at `webhook.revision`, storing it at the next
    /// revision; false when it no longer exists, [`crate::Error::Conflict`] when it was changed
    /// since it was read (read it again and redo the change: [`crate::app::modify_webhook`]).
    async fn update(&self, webhook: &Webhook) -> Result<bool>;
    /// False when it did not exist.
    async fn delete(&self, id: WebhookId) -> Result<bool>;
    /// Every active webhook subscribed to `event_type`: `tenant`'s only, or every tenant's
    /// when `None` (a broadcast). One indexed lookup, never a scan: the webhooks are indexed
    /// by event type, then tenant. Channels are not looked at (the caller narrows by them).
    async fn subscribed(&self, event_type: &EventType, tenant: Option<&TenantId>) -> Result<Vec<Webhook>>;
    /// How many webhooks `tenant` has.
    async fn count(&self, tenant: &TenantId) -> Result<u64>;
}

/// Tenants, their API keys and their portal links.
#[async_trait]
pub trait TenantStore: std::fmt::Debug + Send + Sync + 'static {
    /// False (and nothing written) when a tenant with this id exists.
    async fn insert(&self, tenant: &Tenant) -> Result<bool>;
    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>>;
    /// Newest first (by [`Tenant::order`]).
    async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>>;
    /// Replaces a stored tenant; false when it does not exist.
    async fn update(&self, tenant: &Tenant) -> Result<bool>;
    /// Removes the tenant and every key of it; false when it did not exist.
    async fn delete(&self, id: &TenantId) -> Result<bool>;

    async fn insert_key(&self, key: &ApiKey) -> Result<()>;
    /// The tenant's keys, oldest first.
    async fn keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>>;
    /// The key whose SHA-256 is `digest`.
    async fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>>;
    /// False when the tenant has no such key.
    async fn delete_key(&self, tenant: &TenantId, id: ApiKeyId) -> Result<bool>;
    /// Records that the key was used at `at`.
    async fn touch_key(&self, tenant: &TenantId, id: ApiKeyId, at: Timestamp) -> Result<()>;

    async fn insert_portal_link(&self, link: &PortalLink) -> Result<()>;
    /// Removes and returns the link whose token has SHA-256 `digest`, atomically: of two
    /// concurrent takes, one gets it. Expired links may be returned; the caller checks.
    async fn take_portal_link(&self, digest: &[u8; 32]) -> Result<Option<PortalLink>>;
}

/// A delivery's new state and, when an attempt led to it, that attempt: one entry of
/// [`DeliveryLog::record_many`].
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub delivery: &'a Delivery,
    pub attempt: Option<&'a Attempt>,
}

#[async_trait]
pub trait DeliveryLog: std::fmt::Debug + Send + Sync + 'static {
    /// Inserts the deliveries not yet recorded and returns the stored state of each, in order.
    async fn ensure(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>>;
    async fn get(&self, key: DeliveryKey) -> Result<Option<Delivery>>;
    /// The stored state of each key that has one (a worker's batch: one read).
    async fn get_many(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Delivery>>;
    /// Saves each delivery's new state and appends the attempts, all or nothing (a worker's
    /// batch: one write). When a delivery appears more than once, its last state is kept.
    async fn record_many(&self, records: &[Record<'_>]) -> Result<()>;

    /// Saves a delivery's new state and, if given, appends the attempt that led to it.
    async fn record(&self, delivery: &Delivery, attempt: Option<&Attempt>) -> Result<()> {
        self.record_many(&[Record { delivery, attempt }]).await
    }
    /// The oldest event before `before` (event ids are time-ordered) whose delivery to
    /// `webhook` is not final: what an ordered webhook must be delivered first.
    async fn unfinished_before(&self, webhook: WebhookId, before: EventId) -> Result<Option<EventId>>;
    /// One webhook's deliveries, newest event first, optionally of one status.
    async fn list(
        &self,
        webhook: WebhookId,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>>;
    /// The attempts of each delivery, oldest first.
    async fn attempts(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Vec<Attempt>>>;
    /// Up to `limit` of one webhook's `failed` deliveries created in `[since, until)`, oldest
    /// event first.
    async fn failed_between(
        &self,
        webhook: WebhookId,
        since: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    /// Counts and latencies of the deliveries in `scope` created since `since`.
    async fn stats(&self, scope: &StatsScope, since: Timestamp) -> Result<DeliveryStats>;
    /// A tenant's most recently created deliveries, newest first.
    async fn recent(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Delivery>>;
    /// A tenant's deliveries created since `since`, counted by status in buckets of `bucket`
    /// (aligned to the Unix epoch); only buckets with deliveries, oldest first.
    async fn timeline(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket: std::time::Duration,
    ) -> Result<Vec<TimelineBucket>>;
    /// The events the tenant's webhooks have deliveries of, optionally of one type, newest first.
    async fn events(
        &self,
        tenant: &TenantId,
        event_type: Option<&EventType>,
        page: &PageRequest,
    ) -> Result<Page<EventId>>;
    /// The tenant's deliveries of one event, one per webhook.
    async fn of_event(&self, tenant: &TenantId, event: EventId) -> Result<Vec<Delivery>>;
    /// Marks every `pending` and `retrying` delivery `failed` with `reason` and no next
    /// attempt, and returns how many: for a durable log whose queue was lost (relay-local
    /// restarted with its queue in memory), so no delivery waits for a message that is gone.
    async fn close_unfinished(&self, reason: &str, now: Timestamp) -> Result<u64>;
}
