use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::lock;
use relay_core::domain::{DeliveryKey, Event, EventId, EventType, Page, PageRequest, WebhookId};
use relay_core::ports::{DeliveryLog, EventFilter, EventStore, IdempotencyRecord, Insert};
use relay_core::{Result, Timestamp};

/// The most events one [`MemoryEventStore::evict`] looks at, so a sweep holds the lock briefly
/// and its read of the delivery log stays one bounded batch.
const SWEEP: usize = 10_000;

/// Events in memory, kept for their retention and at most `max_events` of them: past either,
/// [`MemoryEventStore::evict`] removes the oldest events whose deliveries are all final. An
/// event not yet dispatched, or with a delivery pending or retrying, is never evicted.
#[derive(Debug)]
pub struct MemoryEventStore {
    state: Mutex<State>,
    max_events: usize,
    retention: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// By id: event ids are UUIDv7, so the first is the oldest.
    events: BTreeMap<EventId, Event>,
    idempotency: HashMap<String, IdempotencyRecord>,
    /// The idempotency key each event was created with, to forget it with the event.
    keys: HashMap<EventId, String>,
    /// The webhooks each dispatched event was dispatched to.
    dispatched: HashMap<EventId, Vec<WebhookId>>,
    /// Events whose dispatch message the queue refused.
    undispatched: BTreeSet<EventId>,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::with_limits(usize::MAX, Duration::MAX)
    }
}

impl MemoryEventStore {
    /// Unbounded (tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `max_events`, each for at most `retention`, as far as [`MemoryEventStore::evict`]
    /// can go without losing an unfinished delivery.
    pub fn with_limits(max_events: usize, retention: Duration) -> Self {
        Self { state: Mutex::default(), max_events, retention }
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        lock(&self.state).events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes up to [`SWEEP`] of the oldest events past the limits whose deliveries `log` has
    /// as final (or has lost), and returns the keys of their deliveries, for a log in memory to
    /// forget them too. Run it again while it returns something.
    pub async fn evict(&self, log: &dyn DeliveryLog) -> Result<Vec<DeliveryKey>> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<DeliveryKey> = candidates
            .iter()
            .flat_map(|(event_id, webhooks)| {
                webhooks.iter().map(|webhook_id| DeliveryKey { event_id: *event_id, webhook_id: *webhook_id })
            })
            .collect();
        let deliveries = log.get_many(&keys).await?;
        let pinned: std::collections::HashSet<EventId> =
            deliveries.values().filter(|d| !d.status.is_final()).map(|d| d.event_id).collect();
        let mut state = lock(&self.state);
        let mut forgotten = Vec::new();
        for (event_id, webhooks) in candidates {
            if pinned.contains(&event_id) {
                continue;
            }
            state.events.remove(&event_id);
            state.dispatched.remove(&event_id);
            state.undispatched.remove(&event_id);
            if let Some(key) = state.keys.remove(&event_id) {
                state.idempotency.remove(&key);
            }
            forgotten.extend(webhooks.into_iter().map(|webhook_id| DeliveryKey { event_id, webhook_id }));
        }
        crate::shrink_if_sparse(&mut state.dispatched);
        crate::shrink_if_sparse(&mut state.keys);
        crate::shrink_if_sparse(&mut state.idempotency);
        Ok(forgotten)
    }

    /// The oldest dispatched events past the count or the age limit, with their webhooks.
    fn candidates(&self) -> Vec<(EventId, Vec<WebhookId>)> {
        let state = lock(&self.state);
        let excess = state.events.len().saturating_sub(self.max_events);
        let expired_before = Timestamp::now() - self.retention;
        state
            .events
            .values()
            .take(SWEEP.saturating_mul(4))
            .enumerate()
            .take_while(|(seen, event)| *seen < excess || event.created_at < expired_before)
            .filter_map(|(_, event)| Some((event.id, state.dispatched.get(&event.id)?.clone())))
            .take(SWEEP)
            .collect()
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn insert(&self, event: &Event, idempotency: Option<&IdempotencyRecord>) -> Result<Insert> {
        let mut state = lock(&self.state);
        if let Some(record) = idempotency {
            if let Some(existing) = state.idempotency.get(&record.key)
                && existing.expires_at > Timestamp::now()
            {
                return Ok(Insert::Duplicate(existing.clone()));
            }
            state.idempotency.insert(record.key.clone(), record.clone());
            state.keys.insert(event.id, record.key.clone());
        }
        state.events.insert(event.id, event.clone());
        Ok(Insert::Created)
    }

    async fn get(&self, id: EventId) -> Result<Option<Event>> {
        Ok(lock(&self.state).events.get(&id).cloned())
    }

    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>> {
        let state = lock(&self.state);
        let matching = state.events.values().rev().filter(|e| {
            filter.event_type.as_ref().is_none_or(|t| &e.event_type == t)
                && filter.source.as_ref().is_none_or(|s| e.source.as_ref() == Some(s))
                && filter.tenant.as_ref().is_none_or(|t| e.tenant.as_ref() == Some(t))
        });
        Ok(page.apply(matching, |e| e.id.as_uuid()).map(Event::clone))
    }

    async fn undispatched(&self, created_before: Timestamp, limit: usize) -> Result<Vec<EventId>> {
        let state = lock(&self.state);
        let bound = EventId::first_at(created_before);
        Ok(state.undispatched.range(..bound).take(limit).copied().collect())
    }

    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>> {
        let state = lock(&self.state);
        Ok(types
            .iter()
            .map(|t| state.events.values().filter(|e| &e.event_type == t && e.created_at >= since).count() as u64)
            .collect())
    }

    async fn mark_undispatched(&self, id: EventId) -> Result<()> {
        let mut state = lock(&self.state);
        if state.events.contains_key(&id) {
            state.undispatched.insert(id);
        }
        Ok(())
    }

    async fn mark_enqueued(&self, id: EventId) -> Result<()> {
        lock(&self.state).undispatched.remove(&id);
        Ok(())
    }

    async fn mark_dispatched(&self, dispatched: &[(&Event, Vec<WebhookId>)]) -> Result<()> {
        let mut state = lock(&self.state);
        for (event, webhooks) in dispatched {
            if state.events.contains_key(&event.id) {
                state.dispatched.insert(event.id, webhooks.clone());
            }
        }
        Ok(())
    }

    async fn dispatched_before(&self, ids: &[EventId]) -> Result<Vec<EventId>> {
        let state = lock(&self.state);
        Ok(ids.iter().filter(|id| state.dispatched.contains_key(id)).copied().collect())
    }
}
