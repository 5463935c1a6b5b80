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

    /// Whether `tenant` has a key for which `matches` holds (given the key's digest): how a
    /// dashboard session checks that the key it was opened with still exists.
    pub fn tenant_has_key(&self, tenant: &TenantId, matches: impl Fn(&[u8; 32]) -> bool) -> bool {
        self.api_keys
            .iter()
            .filter(|(owner, _)| owner == tenant)
            .fold(false, |found, (_, known)| found | matches(&known.0))
    }
}

/// The SHA-256 digest of a credential: the only form in which credentials are held.
pub fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
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
