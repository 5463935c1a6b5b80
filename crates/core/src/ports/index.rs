//! Lists of events kept apart from the events: the event store keeps each event under its id
//! (DynamoDB: one item, no secondary index, so no partition takes more than its share of the
//! writes), and an [`EventIndex`] (PostgreSQL, which the delivery side writes anyway) lists
//! and counts them by time, type, source and tenant. [`IndexedEvents`] puts the two together
//! behind [`EventStore`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::stores::{EventFilter, EventStore, IdempotencyRecord, Insert};
use crate::domain::{Event, EventId, EventType, Page, PageRequest, WebhookId};
use crate::{Result, Timestamp};

/// What lists events: one entry per event (its id, type, source and tenant), and whether it
/// was dispatched.
#[async_trait]
pub trait EventIndex: std::fmt::Debug + Send + Sync + 'static {
    /// Adds the events not indexed yet, and marks them all dispatched if `dispatched`.
    async fn add(&self, events: &[&Event], dispatched: bool) -> Result<()>;
    /// Which of `ids` are marked dispatched.
    async fn dispatched(&self, ids: &[EventId]) -> Result<Vec<EventId>>;
    /// The ids of the events `filter` matches, newest first.
    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<EventId>>;
    /// How many events of each of `types` were created since `since`, in order.
    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>>;
    /// Removes up to `limit` entries of events created before `before`; how many.
    async fn prune(&self, before: Timestamp, limit: usize) -> Result<u64>;
}

/// An [`EventStore`] that keeps events in `store` and lists them through `index`.
///
/// An event is indexed when it is inserted here (relay-local, where the index is at hand) and
/// again, marked dispatched, when it is dispatched (relay-delivery, for the events relay-ingest
/// stored without the index); adding is idempotent. An event the index lists whose item has
/// expired is left out of the page.
#[derive(Debug, Clone)]
pub struct IndexedEvents {
    store: Arc<dyn EventStore>,
    index: Arc<dyn EventIndex>,
    /// How long the store keeps an event (its TTL): index entries older than that are pruned.
    retention: Duration,
}

impl IndexedEvents {
    pub fn new(store: Arc<dyn EventStore>, index: Arc<dyn EventIndex>, retention: Duration) -> Self {
        Self { store, index, retention }
    }
}

#[async_trait]
impl EventStore for IndexedEvents {
    async fn insert(&self, event: &Event, idempotency: Option<&IdempotencyRecord>) -> Result<Insert> {
        let inserted = self.store.insert(event, idempotency).await?;
        if inserted == Insert::Created
            && let Err(err) = self.index.add(&[event], false).await
        {
            // Stored is accepted: the dispatcher indexes it again.
            tracing::warn!(event_id = %event.id, error = %err, "could not index the event; its dispatch will");
        }
        Ok(inserted)
    }

    async fn get(&self, id: EventId) -> Result<Option<Event>> {
        self.store.get(id).await
    }

    async fn get_many(&self, ids: &[EventId]) -> Result<Vec<Event>> {
        self.store.get_many(ids).await
    }

    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>> {
        let ids = self.index.list(filter, page).await?;
        let mut found: HashMap<EventId, Event> =
            self.store.get_many(&ids.items).await?.into_iter().map(|e| (e.id, e)).collect();
        let items = ids.items.iter().filter_map(|id| found.remove(id)).collect();
        Ok(Page { items, next_cursor: ids.next_cursor })
    }

    async fn mark_undispatched(&self, id: EventId) -> Result<()> {
        self.store.mark_undispatched(id).await
    }

    async fn mark_enqueued(&self, id: EventId) -> Result<()> {
        self.store.mark_enqueued(id).await
    }

    async fn mark_dispatched(&self, dispatched: &[(&Event, Vec<WebhookId>)]) -> Result<()> {
        self.store.mark_dispatched(dispatched).await?;
        let events: Vec<&Event> = dispatched.iter().map(|(event, _)| *event).collect();
        self.index.add(&events, true).await
    }

    async fn dispatched_before(&self, ids: &[EventId]) -> Result<Vec<EventId>> {
        self.index.dispatched(ids).await
    }

    async fn undispatched(&self, created_before: Timestamp, limit: usize) -> Result<Vec<EventId>> {
        self.store.undispatched(created_before, limit).await
    }

    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>> {
        self.index.count_by_type(types, since).await
    }

    async fn prune(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let kept_since = Timestamp::now() - self.retention;
        self.index.prune(before.min(kept_since), limit).await
    }
}
