use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::lock;
use relay_core::Result;
use relay_core::domain::{EventType, Page, PageRequest, TenantId, Webhook, WebhookId};
use relay_core::ports::WebhookStore;

#[derive(Debug, Default)]
pub struct MemoryWebhookStore {
    webhooks: Mutex<BTreeMap<WebhookId, Webhook>>,
}

impl MemoryWebhookStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn insert(&self, webhook: &Webhook) -> Result<()> {
        lock(&self.webhooks).insert(webhook.id, webhook.clone());
        Ok(())
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>> {
        Ok(lock(&self.webhooks).get(&id).cloned())
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>> {
        let webhooks = lock(&self.webhooks);
        let owned = webhooks.values().rev().filter(|w| &w.tenant == tenant);
        Ok(page.apply(owned, |w| w.id.as_uuid()).map(Webhook::clone))
    }

    async fn update(&self, webhook: &Webhook) -> Result<bool> {
        let mut webhooks = lock(&self.webhooks);
        match webhooks.get_mut(&webhook.id) {
            Some(stored) if stored.revision != webhook.revision => Err(relay_core::Error::webhook_changed()),
            Some(stored) => {
                *stored = Webhook { revision: webhook.revision + 1, ..webhook.clone() };
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete(&self, id: WebhookId) -> Result<bool> {
        Ok(lock(&self.webhooks).remove(&id).is_some())
    }

    async fn subscribed(&self, event_type: &EventType) -> Result<Vec<Webhook>> {
        Ok(lock(&self.webhooks).values().filter(|w| w.wants(event_type)).cloned().collect())
    }
}
