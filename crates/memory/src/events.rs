use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::lock;
use relay_core::domain::{Event, EventId, EventType, Page, PageRequest};
use relay_core::ports::{EventFilter, EventStore, IdempotencyRecord, Insert};
use relay_core::{Result, Timestamp};

#[derive(Debug, Default)]
pub struct MemoryEventStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    events: BTreeMap<EventId, Event>,
    idempotency: HashMap<String, IdempotencyRecord>,
}

impl MemoryEventStore {
    pub fn new() -> Self {
        Self::default()
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
        });
        Ok(page.apply(matching, |e| e.id.as_uuid()).map(Event::clone))
    }

    async fn undispatched(&self, created_before: Timestamp, limit: usize) -> Result<Vec<EventId>> {
        let state = lock(&self.state);
        Ok(state
            .events
            .values()
            .filter(|e| e.enqueued_at.is_none() && e.created_at < created_before)
            .take(limit)
            .map(|e| e.id)
            .collect())
    }

    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>> {
        let state = lock(&self.state);
        Ok(types
            .iter()
            .map(|t| state.events.values().filter(|e| &e.event_type == t && e.created_at >= since).count() as u64)
            .collect())
    }

    async fn mark_enqueued(&self, id: EventId, at: Timestamp) -> Result<()> {
        if let Some(event) = lock(&self.state).events.get_mut(&id) {
            event.enqueued_at = Some(at);
        }
        Ok(())
    }
}
