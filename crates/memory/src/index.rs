use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::lock;
use relay_core::domain::{Event, EventId, EventType, Page, PageRequest, TenantId};
use relay_core::ports::{EventFilter, EventIndex};
use relay_core::{Result, Timestamp};

/// The event index in memory: what lists DynamoDB's events when there is no PostgreSQL
/// (relay-local on DynamoDB without `DATABASE_URL`, the tests). It knows the events this
/// process stored or dispatched.
#[derive(Debug, Default)]
pub struct MemoryEventIndex {
    entries: Mutex<BTreeMap<EventId, Entry>>,
}

#[derive(Debug)]
struct Entry {
    event_type: EventType,
    source: Option<String>,
    tenant: Option<TenantId>,
    dispatched: bool,
}

impl MemoryEventIndex {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventIndex for MemoryEventIndex {
    async fn add(&self, events: &[&Event], dispatched: bool) -> Result<()> {
        let mut entries = lock(&self.entries);
        for event in events {
            let entry = entries.entry(event.id).or_insert_with(|| Entry {
                event_type: event.event_type.clone(),
                source: event.source.clone(),
                tenant: event.tenant.clone(),
                dispatched: false,
            });
            entry.dispatched |= dispatched;
        }
        Ok(())
    }

    async fn dispatched(&self, ids: &[EventId]) -> Result<Vec<EventId>> {
        let entries = lock(&self.entries);
        Ok(ids.iter().filter(|id| entries.get(id).is_some_and(|e| e.dispatched)).copied().collect())
    }

    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<EventId>> {
        let entries = lock(&self.entries);
        let matching = entries
            .iter()
            .rev()
            .filter(|(_, e)| {
                filter.event_type.as_ref().is_none_or(|t| &e.event_type == t)
                    && filter.source.as_ref().is_none_or(|s| e.source.as_ref() == Some(s))
                    && filter.tenant.as_ref().is_none_or(|t| e.tenant.as_ref() == Some(t))
            })
            .map(|(id, _)| *id);
        Ok(page.apply(matching, EventId::as_uuid))
    }

    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>> {
        let entries = lock(&self.entries);
        let recent: Vec<&Entry> = entries.range(EventId::first_at(since)..).map(|(_, e)| e).collect();
        Ok(types.iter().map(|t| recent.iter().filter(|e| &e.event_type == t).count() as u64).collect())
    }

    async fn prune(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let mut entries = lock(&self.entries);
        let old: Vec<EventId> = entries.range(..EventId::first_at(before)).take(limit).map(|(id, _)| *id).collect();
        for id in &old {
            entries.remove(id);
        }
        Ok(old.len() as u64)
    }
}
