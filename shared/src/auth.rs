//! Credentials: service tokens for internal callers, API keys that each belong to a tenant.
//! Only SHA-256 digests are held, and they are compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Redacted;
use crate::domain::TenantId;

#[derive(Debug, Clone)]
pub struct Credentials {
    service_tokens: Vec<Redacted<[u8; 32]>>,
    api_keys: Vec<(TenantId, Redacted<[u8; 32]>)>,
}

impl Credentials {
    pub fn new(service_tokens: Vec<Redacted<[u8; 32]>>, api_keys: Vec<(TenantId, Redacted<[u8; 32]>)>) -> Self {
        Self { service_tokens, api_keys }
    }

    pub fn has_service_tokens(&self) -> bool {
        !self.service_tokens.is_empty()
    }

    pub fn has_api_keys(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// Whether `token` is one of the service tokens. Every digest is compared, so the time
    /// taken does not tell which one matched.
    pub fn service(&self, token: &str) -> bool {
        let digest = digest(token);
        self.service_tokens.iter().fold(false, |found, known| found | bool::from(known.0.ct_eq(&digest)))
    }

    /// The tenant `key` belongs to.
    pub fn tenant(&self, key: &str) -> Option<TenantId> {
        let digest = digest(key);
        let mut found = None;
        for (tenant, known) in &self.api_keys {
            if bool::from(known.0.ct_eq(&digest)) && found.is_none() {
                found = Some(tenant.clone());
            }
        }
        found
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}
