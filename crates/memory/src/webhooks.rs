use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::lock;
use relay_core::Result;
use relay_core::domain::{EventType, Page, PageRequest, TenantId, Webhook, WebhookId};
use relay_core::ports::WebhookStore;

/// The webhooks, and the index dispatch reads: the active webhooks of each (event type,
/// tenant), so a lookup never walks webhooks of other types or tenants.
#[derive(Debug, Default)]
pub struct MemoryWebhookStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    webhooks: BTreeMap<WebhookId, Webhook>,
    subscriptions: BTreeSet<(EventType, TenantId, WebhookId)>,
}

impl State {
    fn index(&mut self, webhook: &Webhook, add: bool) {
        if !webhook.is_active {
            return;
        }
        for event_type in &webhook.event_types {
            let entry = (event_type.clone(), webhook.tenant.clone(), webhook.id);
            if add {
                self.subscriptions.insert(entry);
            } else {
                self.subscriptions.remove(&entry);
            }
        }
    }

    fn put(&mut self, webhook: Webhook) {
        if let Some(old) = self.webhooks.remove(&webhook.id) {
            self.index(&old, false);
        }
        self.index(&webhook, true);
        self.webhooks.insert(webhook.id, webhook);
    }
}

impl MemoryWebhookStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn insert(&self, webhook: &Webhook) -> Result<()> {
        lock(&self.state).put(webhook.clone());
        Ok(())
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>> {
        Ok(lock(&self.state).webhooks.get(&id).cloned())
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>> {
        let state = lock(&self.state);
        let owned = state.webhooks.values().rev().filter(|w| &w.tenant == tenant);
        Ok(page.apply(owned, |w| w.id.as_uuid()).map(Webhook::clone))
    }

    async fn update(&self, webhook: &Webhook) -> Result<bool> {
        let mut state = lock(&self.state);
        match state.webhooks.get(&webhook.id) {
            Some(stored) if stored.revision != webhook.revision => Err(relay_core::Error::webhook_changed()),
            Some(_) => {
                state.put(Webhook { revision: webhook.revision + 1, ..webhook.clone() });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete(&self, id: WebhookId) -> Result<bool> {
        let mut state = lock(&self.state);
        match state.webhooks.remove(&id) {
            Some(old) => {
                state.index(&old, false);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn subscribed(&self, event_type: &EventType, tenant: Option<&TenantId>) -> Result<Vec<Webhook>> {
        let state = lock(&self.state);
        let in_range = |(t, owner, _): &&(EventType, TenantId, WebhookId)| {
            t == event_type && tenant.is_none_or(|tenant| owner == tenant)
        };
        let start =
            (event_type.clone(), tenant.cloned().unwrap_or_else(min_tenant), WebhookId::from(uuid::Uuid::nil()));
        Ok(state
            .subscriptions
            .range(start..)
            .take_while(in_range)
            .filter_map(|(_, _, id)| state.webhooks.get(id))
            .filter(|w| w.wants(event_type))
            .cloned()
            .collect())
    }

    async fn count(&self, tenant: &TenantId) -> Result<u64> {
        Ok(lock(&self.state).webhooks.values().filter(|w| &w.tenant == tenant).count() as u64)
    }
}

/// The smallest tenant id, where a broadcast's range starts.
fn min_tenant() -> TenantId {
    TenantId::parse("-").unwrap_or_else(|_| unreachable!("'-' is a tenant id"))
}
