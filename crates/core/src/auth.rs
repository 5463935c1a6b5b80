//! Credentials: service tokens for internal callers, API keys that each belong to a tenant.
//! Only SHA-256 digests are held, and they are compared in constant time. The [`Directory`]
//! adds the tenants and keys managed through the API.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{ApiKey, Tenant, TenantId};
use crate::ports::TenantStore;
use crate::settings::{ConfigError, Profile, Redacted, Vars};
use crate::{Result, Timestamp};

/// Dev credentials relay-local uses when none are configured.
pub const DEV_SERVICE_TOKEN: &str = "dev-service-token";
pub const DEV_TENANT: &str = "dev";
pub const DEV_API_KEY: &str = "dev-api-key";

/// A tenant and the SHA-256 digest of one of its API keys.
type TenantKey = (TenantId, Redacted<[u8; 32]>);

#[derive(Debug, Clone)]
pub struct Credentials {
    service_tokens: Vec<Redacted<[u8; 32]>>,
    api_keys: Vec<TenantKey>,
}

impl Credentials {
    pub fn new(service_tokens: Vec<Redacted<[u8; 32]>>, api_keys: Vec<TenantKey>) -> Self {
        Self { service_tokens, api_keys }
    }

    /// `SERVICE_TOKENS` (comma-separated, 16 characters or more) and `API_KEYS`
    /// (`tenant:key` or `tenant:sha256:<64 hex>`, comma-separated). relay-local falls back to the
    /// dev credentials only when neither is set (the `bool` says so): setting one means real
    /// credentials are wanted, and a dev key must not slip in beside them. In production both
    /// are optional here: tenants' keys may all be issued through the API, and a function that
    /// internal services call requires its tokens ([`Credentials::for_services`]).
    pub fn from_vars(vars: &Vars, profile: Profile) -> Result<(Self, bool), ConfigError> {
        let local = profile == Profile::Local;
        let tokens = vars.get("SERVICE_TOKENS");
        let keys = vars.get("API_KEYS");
        let dev = local && tokens.is_none() && keys.is_none();
        let service_tokens = match tokens {
            Some(list) => parse_service_tokens(&list)?,
            None if dev => vec![Redacted(digest(DEV_SERVICE_TOKEN))],
            None if local => return Err(ConfigError::new("SERVICE_TOKENS", "is required when API_KEYS is set")),
            None => Vec::new(),
        };
        let api_keys = match keys {
            Some(list) => parse_api_keys(&list)?,
            None if dev => vec![(tenant(DEV_TENANT)?, Redacted(digest(DEV_API_KEY)))],
            // Tenants' keys may all be issued through the API.
            None => Vec::new(),
        };
        Ok((Self::new(service_tokens, api_keys), dev))
    }

    /// `SERVICE_TOKENS`, required, and `API_KEYS` if set (its tenants exist implicitly): for a
    /// function only internal services call.
    pub fn for_services(vars: &Vars) -> Result<Self, ConfigError> {
        let list = vars.required("SERVICE_TOKENS", "comma-separated tokens")?;
        let api_keys = vars.get("API_KEYS").map(|keys| parse_api_keys(&keys)).transpose()?.unwrap_or_default();
        Ok(Self::new(parse_service_tokens(&list)?, api_keys))
    }

    /// Whether `token` is one of the service tokens. Every digest is compared, so the time
    /// taken does not tell which one matched.
    pub fn service(&self, token: &str) -> bool {
        let digest = digest(token);
        self.service_tokens.iter().fold(false, |found, known| found | bool::from(known.0.ct_eq(&digest)))
    }

    /// The tenant `key` belongs to.
    pub fn tenant(&self, key: &str) -> Option<TenantId> {
        self.tenant_of_digest(&digest(key))
    }

    /// The tenant of the key whose SHA-256 is `digest`.
    pub fn tenant_of_digest(&self, digest: &[u8; 32]) -> Option<TenantId> {
        let mut found = None;
        for (tenant, known) in &self.api_keys {
            if bool::from(known.0.ct_eq(digest)) && found.is_none() {
                found = Some(tenant.clone());
            }
        }
        found
    }

    /// Whether `tenant` has a key for which `matches` holds (given the key's digest): how a
    /// dashboard session checks that the key it was opened with still exists.
    pub fn tenant_has_key(&self, tenant: &TenantId, matches: impl Fn(&[u8; 32]) -> bool) -> bool {
        self.api_keys
            .iter()
            .filter(|(owner, _)| owner == tenant)
            .fold(false, |found, (_, known)| found | matches(&known.0))
    }

    /// Whether `API_KEYS` names `tenant` (which then exists implicitly).
    pub fn names(&self, tenant: &TenantId) -> bool {
        self.api_keys.iter().any(|(owner, _)| owner == tenant)
    }
}

/// How long the [`Directory`] trusts what it read of a tenant or a key: a revoked key, a
/// disabled tenant or a changed limit takes effect on every process within this (and at once
/// on the process that made the change).
pub const DIRECTORY_TTL: Duration = Duration::from_secs(4);
/// Entries each of the directory's caches holds at most (past it, the cache starts over).
const DIRECTORY_ENTRIES: usize = 10_000;

/// What an API key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    /// A key of an active tenant: the tenant as stored (or implicit), and the key's digest.
    Active(Tenant, [u8; 32]),
    /// A key of a disabled tenant: refused with 403.
    Disabled(TenantId),
}

type Cached<K, V> = Mutex<HashMap<K, (Instant, Option<V>)>>;

/// Who a credential is, and which tenants exist: the static credentials of the settings
/// (`SERVICE_TOKENS`, `API_KEYS`), then the tenants and keys of the [`TenantStore`], read
/// through a cache of [`DIRECTORY_TTL`] so a request costs no store read most of the time.
#[derive(Debug)]
pub struct Directory {
    credentials: Credentials,
    store: Arc<dyn TenantStore>,
    tenants: Cached<TenantId, Tenant>,
    keys: Cached<[u8; 32], ApiKey>,
    tenant_keys: Cached<TenantId, Vec<[u8; 32]>>,
}

/// A key's `lastUsedAt` is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl Directory {
    pub fn new(credentials: Credentials, store: Arc<dyn TenantStore>) -> Self {
        Self { credentials, store, tenants: Mutex::default(), keys: Mutex::default(), tenant_keys: Mutex::default() }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn store(&self) -> &Arc<dyn TenantStore> {
        &self.store
    }

    /// Whether `token` is one of the service tokens.
    pub fn service(&self, token: &str) -> bool {
        self.credentials.service(token)
    }

    /// The tenant `id`: as stored, else implicit when `API_KEYS` names it, else `None`.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        if let Some(hit) = fresh(&self.tenants, id) {
            return Ok(hit);
        }
        let found = self.read_tenant(id).await?;
        remember(&self.tenants, id.clone(), found.clone());
        Ok(found)
    }

    /// [`Directory::tenant`] read from the store now, past the cache (what an administrator
    /// reads back after a change).
    pub async fn read_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        Ok(match self.store.get(id).await? {
            Some(tenant) => Some(tenant),
            None => self.credentials.names(id).then(|| Tenant::implicit(id.clone())),
        })
    }

    /// What `key` stands for; `None` when it is no key. Static keys are checked first, then
    /// the stored ones by SHA-256.
    pub async fn key(&self, key: &str) -> Result<Option<KeyOwner>> {
        let digest = digest(key);
        let (tenant, stored) = match self.credentials.tenant_of_digest(&digest) {
            Some(tenant) => (tenant, None),
            None => {
                let stored = match fresh(&self.keys, &digest) {
                    Some(hit) => hit,
                    None => {
                        let found = self.store.key_by_digest(&digest).await?;
                        remember(&self.keys, digest, found.clone());
                        found
                    }
                };
                match stored {
                    Some(key) => (key.tenant.clone(), Some(key)),
                    None => return Ok(None),
                }
            }
        };
        let Some(owner) = self.tenant(&tenant).await? else { return Ok(None) };
        if let Some(key) = stored {
            self.touch(key).await;
        }
        Ok(Some(if owner.is_active { KeyOwner::Active(owner, digest) } else { KeyOwner::Disabled(tenant) }))
    }

    /// Notes that a stored key is in use, at most once a [`TOUCH_EVERY`] per process.
    async fn touch(&self, key: ApiKey) {
        let now = Timestamp::now();
        if key.last_used_at.is_some_and(|at| now.as_millis() - at.as_millis() < TOUCH_EVERY.as_millis() as i64) {
            return;
        }
        if let Err(err) = self.store.touch_key(&key.tenant, key.id, now).await {
            tracing::debug!(error = %err, "could not note a key's last use");
        }
        // Noted in the cached copy, which keeps the time it was read: a touch must not make
        // a revoked key live longer here.
        if let Some((_, Some(cached))) = lock(&self.keys).get_mut(&key.digest) {
            cached.last_used_at = Some(now);
        }
    }

    /// Whether `tenant` has a key (static or stored) for which `matches` holds, given its
    /// digest: how a dashboard session checks that the key it was opened with still exists.
    pub async fn tenant_has_key(&self, tenant: &TenantId, matches: impl Fn(&[u8; 32]) -> bool) -> Result<bool> {
        if self.credentials.tenant_has_key(tenant, &matches) {
            return Ok(true);
        }
        let digests = match fresh(&self.tenant_keys, tenant) {
            Some(hit) => hit.unwrap_or_default(),
            None => {
                let digests: Vec<[u8; 32]> = self.store.keys(tenant).await?.into_iter().map(|k| k.digest).collect();
                remember(&self.tenant_keys, tenant.clone(), Some(digests.clone()));
                digests
            }
        };
        Ok(digests.iter().fold(false, |found, d| found | matches(d)))
    }

    /// Forgets what this process read of `tenant` and its keys: after a change made here, so
    /// it takes effect here at once (other processes follow within [`DIRECTORY_TTL`]).
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.tenants).remove(tenant);
        lock(&self.tenant_keys).remove(tenant);
        lock(&self.keys).retain(|_, (_, key)| key.as_ref().is_none_or(|k| &k.tenant != tenant));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cached value of `key` if read less than [`DIRECTORY_TTL`] ago.
fn fresh<K: Eq + Hash, V: Clone>(cache: &Cached<K, V>, key: &K) -> Option<Option<V>> {
    let cache = lock(cache);
    let (read_at, value) = cache.get(key)?;
    (read_at.elapsed() < DIRECTORY_TTL).then(|| value.clone())
}

fn remember<K: Eq + Hash, V>(cache: &Cached<K, V>, key: K, value: Option<V>) {
    let mut cache = lock(cache);
    if cache.len() >= DIRECTORY_ENTRIES {
        cache.clear();
    }
    cache.insert(key, (Instant::now(), value));
}

/// The SHA-256 digest of a credential: the only form in which credentials are held.
pub fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

fn tenant(value: &str) -> Result<TenantId, ConfigError> {
    TenantId::parse(value).map_err(|m| ConfigError::new("API_KEYS", m))
}

fn parse_service_tokens(list: &str) -> Result<Vec<Redacted<[u8; 32]>>, ConfigError> {
    let tokens: Vec<_> = list.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() {
        return Err(ConfigError::new("SERVICE_TOKENS", "lists no token"));
    }
    tokens
        .into_iter()
        .map(|t| {
            if t.len() < 16 {
                Err(ConfigError::new("SERVICE_TOKENS", "every token must be at least 16 characters"))
            } else {
                Ok(Redacted(digest(t)))
            }
        })
        .collect()
}

/// `tenant:key` or `tenant:sha256:<64 hex>`, comma-separated.
fn parse_api_keys(list: &str) -> Result<Vec<TenantKey>, ConfigError> {
    let mut keys = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (tenant_part, key) = entry
            .split_once(':')
            .ok_or_else(|| ConfigError::new("API_KEYS", "each entry must be tenant:key or tenant:sha256:<hex>"))?;
        let tenant = tenant(tenant_part)?;
        let digest = match key.strip_prefix("sha256:") {
            Some(hex_digest) => {
                hex::decode(hex_digest).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
                    ConfigError::new("API_KEYS", format!("tenant {tenant}: sha256: must be followed by 64 hex digits"))
                })?
            }
            None if key.len() < 16 => {
                return Err(ConfigError::new(
                    "API_KEYS",
                    format!("tenant {tenant}: keys must be at least 16 characters"),
                ));
            }
            None => digest(key),
        };
        keys.push((tenant, Redacted(digest)));
    }
    if keys.is_empty() {
        return Err(ConfigError::new("API_KEYS", "lists no key"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [(&str, &str); 3] =
        [("acme", "acme-api-key-00000001"), ("globex", "globex-api-key-000001"), ("initech", "initech-api-key-00001")];

    fn credentials() -> Credentials {
        Credentials::new(
            vec![Redacted(digest("service-token-000001"))],
            KEYS.iter().map(|(t, k)| (TenantId::parse(t).unwrap(), Redacted(digest(k)))).collect(),
        )
    }

    /// What makes the comparison timing-safe: only digests are held, so how long a comparison
    /// takes can depend only on the digest of the guess, never on how much of a real key it
    /// shares; and every digest is compared, so neither does the position of the match.
    #[test]
    fn only_digests_are_held_and_every_key_is_found_wherever_it_is() {
        let credentials = credentials();
        let shown = format!("{credentials:?}");
        for (tenant, key) in KEYS {
            assert!(!shown.contains(key), "{shown}");
            assert_eq!(credentials.tenant(key).map(|t| t.as_str().to_owned()), Some(tenant.to_owned()));
        }
        assert!(credentials.service("service-token-000001"));
    }

    #[test]
    fn near_misses_are_refused() {
        let credentials = credentials();
        let key = KEYS[0].1;
        let near = [
            format!("{}2", &key[..key.len() - 1]),
            format!("b{}", &key[1..]),
            key[..key.len() - 1].to_owned(),
            format!("{key}0"),
            key.to_uppercase(),
            format!(" {key}"),
            String::new(),
        ];
        for guess in &near {
            assert_eq!(credentials.tenant(guess), None, "{guess:?}");
            assert!(!credentials.service(guess), "{guess:?}");
        }
        assert!(!credentials.service(key), "an API key is not a service token");
    }
}
