//! The webhook store behind a shared cache: dispatch reads the active webhooks of an event type
//! from the cache; every create, update or delete bumps a generation number that is part of
//! every cache key, so the next dispatch reads the store again. A cache that fails is skipped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Result;
use crate::domain::{EventType, Page, PageRequest, TenantId, Webhook, WebhookId};
use crate::ports::{Cache, WebhookStore};

const GENERATION: &str = "webhooks:generation";

#[derive(Debug, Clone)]
pub struct CachedWebhookStore {
    inner: Arc<dyn WebhookStore>,
    cache: Arc<dyn Cache>,
    ttl: Duration,
}

impl CachedWebhookStore {
    pub fn new(inner: Arc<dyn WebhookStore>, cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        Self { inner, cache, ttl }
    }

    async fn invalidate(&self) {
        if let Err(err) = self.cache.bump(GENERATION).await {
            // Entries of the old generation live at most `ttl` longer.
            tracing::warn!(error = %err, "could not invalidate the webhook cache");
        }
    }

    async fn cached(&self, key: &str) -> Option<Vec<Webhook>> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "webhook cache unavailable; reading the store");
                None
            }
        }
    }
}

#[async_trait]
impl WebhookStore for CachedWebhookStore {
    async fn insert(&self, webhook: &Webhook) -> Result<()> {
        self.inner.insert(webhook).await?;
        self.invalidate().await;
        Ok(())
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>> {
        self.inner.get(id).await
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>> {
        self.inner.list(tenant, page).await
    }

    async fn update(&self, webhook: &Webhook) -> Result<bool> {
        let updated = self.inner.update(webhook).await?;
        self.invalidate().await;
        Ok(updated)
    }

    async fn delete(&self, id: WebhookId) -> Result<bool> {
        let deleted = self.inner.delete(id).await?;
        self.invalidate().await;
        Ok(deleted)
    }

    async fn subscribed(&self, event_type: &EventType) -> Result<Vec<Webhook>> {
        let Ok(generation) = self.cache.generation(GENERATION).await else {
            return self.inner.subscribed(event_type).await;
        };
        let key = format!("subscribed:{generation}:{event_type}");
        if let Some(webhooks) = self.cached(&key).await {
            return Ok(webhooks);
        }
        let webhooks = self.inner.subscribed(event_type).await?;
        if let Ok(bytes) = serde_json::to_vec(&webhooks)
            && let Err(err) = self.cache.put(&key, &bytes, self.ttl).await {
                tracing::debug!(error = %err, "could not fill the webhook cache");
            }
        Ok(webhooks)
    }
}
