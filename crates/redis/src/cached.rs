//! The webhook store behind a shared cache: dispatch reads the active webhooks of an event type
//! (one tenant's, or every tenant's for a broadcast) from the cache; every create, update or delete bumps a generation number that is part of
//! every cache key, so the next dispatch reads the store again. A cache that fails is skipped.
//!
//! Two ways an entry could outlive the change it misses, both closed here:
//! - a change made while the cache is unreachable cannot bump the generation; until a later
//!   bump succeeds, this process reads the store and tries the bump again on every call, so the
//!   entries cached before the outage are not served once the cache is back (other processes
//!   may serve them until this one bumps, at most `ttl`);
//! - the cache losing everything (a flush, a restart without persistence) restarts the
//!   generation from 0, and a dispatch in flight across it could cache its list under the old
//!   number, which the counter reaches again: an entry is dropped at once if the generation
//!   moved while it was being filled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use relay_core::Result;
use relay_core::domain::{EventType, Page, PageRequest, TenantId, Webhook, WebhookId};
use relay_core::ports::{Cache, WebhookStore};

const GENERATION: &str = "webhooks:generation";
/// An entry that must not be read: overwritten to expire at once (the port has no delete).
const DROP_AT_ONCE: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct CachedWebhookStore {
    inner: Arc<dyn WebhookStore>,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    /// Changes made by this process whose generation bump failed (0: none pending).
    unbumped: Arc<AtomicU64>,
}

impl CachedWebhookStore {
    pub fn new(inner: Arc<dyn WebhookStore>, cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        Self { inner, cache, ttl, unbumped: Arc::default() }
    }

    /// Bumps the generation; a success covers every change made before it, a failure is
    /// remembered until a later bump succeeds.
    async fn invalidate(&self) -> bool {
        let pending = self.unbumped.load(Ordering::Acquire);
        match self.cache.bump(GENERATION).await {
            Ok(_) => {
                // Only the failures seen before this bump are covered by it.
                let _ = self.unbumped.compare_exchange(pending, 0, Ordering::AcqRel, Ordering::Acquire);
                true
            }
            Err(err) => {
                self.unbumped.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(error = %err, "could not invalidate the webhook cache; bypassing it until it can be");
                false
            }
        }
    }

    /// Retries a bump that failed, if there is one: a process that changed webhooks while the
    /// cache was away (relay-api) invalidates it on its next call, not only on its next change.
    async fn settle(&self) -> bool {
        self.unbumped.load(Ordering::Acquire) == 0 || self.invalidate().await
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
        self.settle().await;
        self.inner.get(id).await
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>> {
        self.settle().await;
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

    /// Cached per (event type, tenant): `*` stands for every tenant (a broadcast), which no
    /// tenant id can be.
    async fn subscribed(&self, event_type: &EventType, tenant: Option<&TenantId>) -> Result<Vec<Webhook>> {
        if !self.settle().await {
            return self.inner.subscribed(event_type, tenant).await;
        }
        let Ok(generation) = self.cache.generation(GENERATION).await else {
            return self.inner.subscribed(event_type, tenant).await;
        };
        let key = format!("subscribed:{generation}:{event_type}:{}", tenant.map_or("*", TenantId::as_str));
        if let Some(webhooks) = self.cached(&key).await {
            return Ok(webhooks);
        }
        let webhooks = self.inner.subscribed(event_type, tenant).await?;
        let Ok(bytes) = serde_json::to_vec(&webhooks) else { return Ok(webhooks) };
        if let Err(err) = self.cache.put(&key, &bytes, self.ttl).await {
            tracing::debug!(error = %err, "could not fill the webhook cache");
            return Ok(webhooks);
        }
        // Filled after a change or a flush moved the generation: the entry may be stale, and
        // after a flush its number comes round again. Drop it.
        if self.cache.generation(GENERATION).await.ok() != Some(generation)
            && let Err(err) = self.cache.put(&key, &[], DROP_AT_ONCE).await
        {
            tracing::warn!(error = %err, "could not drop a webhook cache entry filled across a change");
        }
        Ok(webhooks)
    }

    /// Not cached: it checks a tenant's webhook limit, so it reads the store.
    async fn count(&self, tenant: &TenantId) -> Result<u64> {
        self.settle().await;
        self.inner.count(tenant).await
    }
}
