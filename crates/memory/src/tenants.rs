use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::lock;
use relay_core::domain::{ApiKey, ApiKeyId, Page, PageRequest, PortalLink, Tenant, TenantId};
use relay_core::ports::TenantStore;
use relay_core::{Result, Timestamp};

/// Portal links kept at most; past it the expired ones go (links are short-lived).
const MAX_LINKS: usize = 10_000;

#[derive(Debug, Default)]
pub struct MemoryTenantStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<TenantId, Tenant>,
    /// Every key, by its SHA-256.
    keys: HashMap<[u8; 32], ApiKey>,
    links: HashMap<[u8; 32], PortalLink>,
}

impl MemoryTenantStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TenantStore for MemoryTenantStore {
    async fn insert(&self, tenant: &Tenant) -> Result<bool> {
        let mut state = lock(&self.state);
        if state.tenants.contains_key(&tenant.id) {
            return Ok(false);
        }
        state.tenants.insert(tenant.id.clone(), tenant.clone());
        Ok(true)
    }

    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>> {
        Ok(lock(&self.state).tenants.get(id).cloned())
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        let state = lock(&self.state);
        let newest_first: BTreeMap<_, _> = state.tenants.values().map(|t| (std::cmp::Reverse(t.order), t)).collect();
        Ok(page.apply(newest_first.into_values(), |t| t.order).map(Tenant::clone))
    }

    async fn update(&self, tenant: &Tenant) -> Result<bool> {
        let mut state = lock(&self.state);
        match state.tenants.get_mut(&tenant.id) {
            Some(stored) => {
                *stored = tenant.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete(&self, id: &TenantId) -> Result<bool> {
        let mut state = lock(&self.state);
        state.keys.retain(|_, key| &key.tenant != id);
        Ok(state.tenants.remove(id).is_some())
    }

    async fn insert_key(&self, key: &ApiKey) -> Result<()> {
        lock(&self.state).keys.insert(key.digest, key.clone());
        Ok(())
    }

    async fn keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        let state = lock(&self.state);
        let mut keys: Vec<ApiKey> = state.keys.values().filter(|k| &k.tenant == tenant).cloned().collect();
        keys.sort_by_key(|k| k.id);
        Ok(keys)
    }

    async fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>> {
        Ok(lock(&self.state).keys.get(digest).cloned())
    }

    async fn delete_key(&self, tenant: &TenantId, id: ApiKeyId) -> Result<bool> {
        let mut state = lock(&self.state);
        let before = state.keys.len();
        state.keys.retain(|_, key| !(&key.tenant == tenant && key.id == id));
        Ok(state.keys.len() < before)
    }

    async fn touch_key(&self, tenant: &TenantId, id: ApiKeyId, at: Timestamp) -> Result<()> {
        let mut state = lock(&self.state);
        if let Some(key) = state.keys.values_mut().find(|k| &k.tenant == tenant && k.id == id) {
            key.last_used_at = Some(at);
        }
        Ok(())
    }

    async fn insert_portal_link(&self, link: &PortalLink) -> Result<()> {
        let mut state = lock(&self.state);
        if state.links.len() >= MAX_LINKS {
            let now = Timestamp::now();
            state.links.retain(|_, l| l.expires_at > now);
        }
        state.links.insert(link.digest, link.clone());
        Ok(())
    }

    async fn take_portal_link(&self, digest: &[u8; 32]) -> Result<Option<PortalLink>> {
        Ok(lock(&self.state).links.remove(digest))
    }
}
