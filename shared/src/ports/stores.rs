use std::collections::HashMap;

use async_trait::async_trait;

use crate::domain::{
    Attempt, Delivery, DeliveryKey, DeliveryStatus, Event, EventId, EventType, Page, PageRequest, TenantId, Webhook,
    WebhookId,
};
use crate::{Result, Timestamp};

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
}

#[async_trait]
pub trait EventStore: std::fmt::Debug + Send + Sync + 'static {
    /// Stores a new event and, if given, its idempotency record, atomically: when the key is
    /// held by an unexpired record, nothing is written and that record is returned.
    async fn insert(&self, event: &Event, idempotency: Option<&IdempotencyRecord>) -> Result<Insert>;
    async fn get(&self, id: EventId) -> Result<Option<Event>>;
    /// Newest first.
    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>>;
    /// Records that the event's dispatch message is on the queue.
    async fn mark_enqueued(&self, id: EventId, at: Timestamp) -> Result<()>;
    /// Up to `limit` events created before `created_before` and never marked enqueued,
    /// oldest first.
    async fn undispatched(&self, created_before: Timestamp, limit: usize) -> Result<Vec<EventId>>;
}

#[async_trait]
pub trait WebhookStore: std::fmt::Debug + Send + Sync + 'static {
    async fn insert(&self, webhook: &Webhook) -> Result<()>;
    /// Any tenant's webhook: callers check the tenant.
    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>>;
    /// One tenant's webhooks, newest first.
    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>>;
    /// Replaces a stored webhook; false when it no longer exists.
    async fn update(&self, webhook: &Webhook) -> Result<bool>;
    /// False when it did not exist.
    async fn delete(&self, id: WebhookId) -> Result<bool>;
    /// Every active webhook subscribed to `event_type`, across tenants.
    async fn subscribed(&self, event_type: &EventType) -> Result<Vec<Webhook>>;
}

#[async_trait]
pub trait DeliveryLog: std::fmt::Debug + Send + Sync + 'static {
    /// Inserts the deliveries not yet recorded and returns the stored state of each, in order.
    async fn ensure(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>>;
    async fn get(&self, key: DeliveryKey) -> Result<Option<Delivery>>;
    /// Saves a delivery's new state and, if given, appends the attempt that led to it.
    async fn record(&self, delivery: &Delivery, attempt: Option<&Attempt>) -> Result<()>;
    /// One webhook's deliveries, newest event first, optionally of one status.
    async fn list(&self, webhook: WebhookId, status: Option<DeliveryStatus>, page: &PageRequest) -> Result<Page<Delivery>>;
    /// The attempts of each delivery, oldest first.
    async fn attempts(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Vec<Attempt>>>;
    /// Up to `limit` of one webhook's `failed` deliveries created in `[since, until)`, oldest
    /// event first.
    async fn failed_between(&self, webhook: WebhookId, since: Timestamp, until: Timestamp, limit: usize) -> Result<Vec<Delivery>>;
}
