//! Tenants: the platform's customers. Each owns webhooks and API keys, and receives the events
//! scoped to it. A tenant is stored ([`Tenant`], managed through `/api/tenants`) or implicit: a
//! name in `API_KEYS`, whose keys keep working as static keys.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiKeyId, TenantId, nullable, required_text};
use crate::{Error, FieldError, Result, Timestamp};

/// How many webhooks a tenant may have unless it says otherwise.
pub const DEFAULT_MAX_WEBHOOKS: u32 = 100;
/// The most `maxWebhooks` may be.
pub const MAX_MAX_WEBHOOKS: u32 = 10_000;
/// The most keys one tenant may hold at once.
pub const MAX_API_KEYS: usize = 50;

/// A stored tenant (its serde form is the API's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub is_active: bool,
    /// Requests per minute for the tenant's keys and dashboard sessions; `None`: the relay's
    /// `RATE_LIMIT_PER_MINUTE`.
    pub rate_limit_per_minute: Option<u32>,
    pub max_webhooks: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A UUIDv7 taken at creation: the order tenants are listed in, and their paging cursor.
    #[serde(skip_serializing)]
    pub order: Uuid,
}

impl Tenant {
    pub fn new(new: NewTenant, now: Timestamp) -> Self {
        Self {
            id: new.id,
            name: new.name,
            is_active: new.is_active,
            rate_limit_per_minute: new.rate_limit_per_minute,
            max_webhooks: new.max_webhooks.unwrap_or(DEFAULT_MAX_WEBHOOKS),
            created_at: now,
            updated_at: now,
            order: Uuid::now_v7(),
        }
    }

    /// A tenant named in `API_KEYS` and not stored: active, with the relay's limits.
    pub fn implicit(id: TenantId) -> Self {
        Self {
            name: id.as_str().to_owned(),
            id,
            is_active: true,
            rate_limit_per_minute: None,
            max_webhooks: DEFAULT_MAX_WEBHOOKS,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            order: Uuid::nil(),
        }
    }

    pub fn apply(&mut self, patch: TenantPatch, now: Timestamp) {
        if let Some(name) = patch.name {
            self.name = name;
        }
        if let Some(active) = patch.is_active {
            self.is_active = active;
        }
        if let Some(limit) = patch.rate_limit_per_minute {
            self.rate_limit_per_minute = limit;
        }
        if let Some(max) = patch.max_webhooks {
            self.max_webhooks = max;
        }
        self.updated_at = now;
    }
}

/// The body of `POST /api/tenants` and `PUT /api/tenants/{id}`, as sent.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantInput {
    /// Create only: `[a-z0-9][a-z0-9_-]{0,62}`.
    pub id: Option<String>,
    pub name: Option<String>,
    pub is_active: Option<bool>,
    /// Overrides `RATE_LIMIT_PER_MINUTE` for this tenant's keys; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// The most webhooks the tenant may have (default 100).
    pub max_webhooks: Option<u32>,
}

/// A checked `POST /api/tenants`.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub is_active: bool,
    pub rate_limit_per_minute: Option<u32>,
    pub max_webhooks: Option<u32>,
}

/// A checked `PUT /api/tenants/{id}`: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub is_active: Option<bool>,
    pub rate_limit_per_minute: Option<Option<u32>>,
    pub max_webhooks: Option<u32>,
}

/// A new tenant's id: stricter than the ids `API_KEYS` may name (lower case, starting with a
/// letter or digit, at most 63 characters).
pub fn parse_new_tenant_id(value: &str) -> Result<TenantId, String> {
    let bytes = value.as_bytes();
    let ok = (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_');
    if ok { TenantId::parse(value) } else { Err("must match [a-z0-9][a-z0-9_-]{0,62}".into()) }
}

impl TenantPatch {
    pub fn parse(input: TenantInput) -> Result<Self> {
        let mut problems = Vec::new();
        if input.id.is_some() {
            problems.push(FieldError::new("id", "is set on create only"));
        }
        let patch = Self::fields(input, &mut problems);
        if problems.is_empty() { Ok(patch) } else { Err(Error::invalid(problems)) }
    }

    fn fields(input: TenantInput, problems: &mut Vec<FieldError>) -> Self {
        let name = input.name.and_then(|n| required_text("name", &n, 255).map_err(|e| problems.push(e)).ok());
        if let Some(Some(0)) = input.rate_limit_per_minute {
            problems.push(FieldError::new("rateLimitPerMinute", "must be at least 1 (null: the relay's limit)"));
        }
        if let Some(max) = input.max_webhooks
            && !(1..=MAX_MAX_WEBHOOKS).contains(&max)
        {
            problems.push(FieldError::new("maxWebhooks", format!("must be from 1 to {MAX_MAX_WEBHOOKS}")));
        }
        Self {
            name,
            is_active: input.is_active,
            rate_limit_per_minute: input.rate_limit_per_minute,
            max_webhooks: input.max_webhooks,
        }
    }
}

impl NewTenant {
    pub fn parse(mut input: TenantInput) -> Result<Self> {
        let mut problems = Vec::new();
        let id = match input.id.take() {
            None => {
                problems.push(FieldError::new("id", "is required"));
                None
            }
            Some(id) => parse_new_tenant_id(&id).map_err(|m| problems.push(FieldError::new("id", m))).ok(),
        };
        if input.name.is_none() {
            problems.push(FieldError::new("name", "is required"));
        }
        let patch = TenantPatch::fields(input, &mut problems);
        match (id, patch.name) {
            (Some(id), Some(name)) if problems.is_empty() => Ok(Self {
                id,
                name,
                is_active: patch.is_active.unwrap_or(true),
                rate_limit_per_minute: patch.rate_limit_per_minute.flatten(),
                max_webhooks: patch.max_webhooks,
            }),
            _ => Err(Error::invalid(problems)),
        }
    }
}

/// A tenant's API key as stored: its SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub digest: [u8; 32],
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A key as issued: the only time the key itself exists outside its holder.
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: String,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey").field("key", &self.key).field("secret", &"[redacted]").finish()
    }
}

/// What an issued key starts with.
pub const API_KEY_PREFIX: &str = "rk_";
/// How many of its characters a key's `prefix` shows (`rk_` and six more).
const SHOWN: usize = 9;

impl ApiKey {
    /// A new key for `tenant`: `rk_` and 32 random bytes, base64url.
    pub fn issue(tenant: TenantId, name: String, now: Timestamp) -> IssuedKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let key = Self {
            id: ApiKeyId::new(),
            tenant,
            name,
            prefix: secret[..SHOWN].to_owned(),
            digest: crate::auth::digest(&secret),
            created_at: now,
            last_used_at: None,
        };
        IssuedKey { key, secret }
    }
}

/// The body of `POST /api/tenants/{id}/api-keys`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyInput {
    pub name: Option<String>,
}

impl ApiKeyInput {
    pub fn parse(self) -> Result<String> {
        match self.name {
            None => Err(Error::validation("name", "is required")),
            Some(name) => required_text("name", &name, 255).map_err(|e| Error::invalid(vec![e])),
        }
    }
}

/// A portal link as stored: the SHA-256 of its token, the tenant it signs in as, and when it
/// stops working. Taken (deleted) by its first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalLink {
    pub digest: [u8; 32],
    pub tenant: TenantId,
    pub expires_at: Timestamp,
}

/// The shortest and longest life of a portal link.
pub const PORTAL_TTL_SECONDS: std::ops::RangeInclusive<u64> = 60..=86_400;
/// A portal link's life unless asked otherwise.
pub const DEFAULT_PORTAL_TTL_SECONDS: u64 = 900;

impl PortalLink {
    /// A new link for `tenant` living `ttl` from `now`, and its token.
    pub fn issue(tenant: TenantId, ttl: std::time::Duration, now: Timestamp) -> (Self, String) {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        (Self { digest: crate::auth::digest(&token), tenant, expires_at: now + ttl }, token)
    }
}

/// The body of `POST /api/tenants/{id}/portal-links`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortalLinkInput {
    /// How long the link works: 60 to 86400 seconds (default 900).
    pub ttl_seconds: Option<u64>,
}

impl PortalLinkInput {
    pub fn parse(self) -> Result<std::time::Duration> {
        let seconds = self.ttl_seconds.unwrap_or(DEFAULT_PORTAL_TTL_SECONDS);
        if !PORTAL_TTL_SECONDS.contains(&seconds) {
            return Err(Error::validation(
                "ttlSeconds",
                format!("must be from {} to {}", PORTAL_TTL_SECONDS.start(), PORTAL_TTL_SECONDS.end()),
            ));
        }
        Ok(std::time::Duration::from_secs(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: serde_json::Value) -> TenantInput {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn new_tenant_ids_follow_the_rule() {
        for good in ["acme", "0", "a-b_c", &"a".repeat(63)] {
            assert!(parse_new_tenant_id(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-acme", "_a", "a b", "a.b", "a:b", &"a".repeat(64)] {
            assert!(parse_new_tenant_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_new_tenant_needs_id_and_name() {
        let Error::Validation { details, .. } = NewTenant::parse(input(json!({}))).unwrap_err() else { panic!() };
        let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["id", "name"]);
        let new = NewTenant::parse(input(json!({"id": "acme", "name": " Acme Inc. "}))).unwrap();
        assert_eq!((new.id.as_str(), new.name.as_str(), new.is_active), ("acme", "Acme Inc.", true));
        assert_eq!(Tenant::new(new, Timestamp::now()).max_webhooks, DEFAULT_MAX_WEBHOOKS);
    }

    #[test]
    fn a_patch_clears_the_rate_limit_with_null_and_refuses_an_id() {
        let patch = TenantPatch::parse(input(json!({"rateLimitPerMinute": null}))).unwrap();
        assert_eq!(patch.rate_limit_per_minute, Some(None));
        let patch = TenantPatch::parse(input(json!({"name": "x"}))).unwrap();
        assert_eq!(patch.rate_limit_per_minute, None);
        assert!(TenantPatch::parse(input(json!({"id": "other"}))).is_err());
        assert!(TenantPatch::parse(input(json!({"maxWebhooks": 0}))).is_err());
    }

    #[test]
    fn an_issued_key_is_held_as_its_digest() {
        let issued = ApiKey::issue(TenantId::parse("acme").unwrap(), "ci".into(), Timestamp::now());
        assert!(issued.secret.starts_with(API_KEY_PREFIX) && issued.secret.len() > 40);
        assert!(issued.secret.starts_with(&issued.key.prefix));
        assert_eq!(issued.key.digest, crate::auth::digest(&issued.secret));
        assert!(!format!("{issued:?}").contains(&issued.secret));
    }
}
