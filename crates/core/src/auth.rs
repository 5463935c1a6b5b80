//! Credentials: service tokens for internal callers, API keys that each belong to a tenant.
//! Only SHA-256 digests are held, and they are compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::TenantId;
use crate::settings::{ConfigError, Profile, Redacted, Vars};

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
    /// credentials are wanted, and a dev key must not slip in beside them. A Lambda function
    /// that serves tenants requires their keys ([`Credentials::require_api_keys`]); one that
    /// only internal services call reads [`Credentials::service_only`].
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
            None if local => return Err(ConfigError::new("API_KEYS", "is required when SERVICE_TOKENS is set")),
            None => Vec::new(),
        };
        Ok((Self::new(service_tokens, api_keys), dev))
    }

    /// `SERVICE_TOKENS` alone, required: for a function only internal services call (its API
    /// keys, if any are configured, are not read).
    pub fn service_only(vars: &Vars) -> Result<Self, ConfigError> {
        let list = vars.required("SERVICE_TOKENS", "comma-separated tokens")?;
        Ok(Self::new(parse_service_tokens(&list)?, Vec::new()))
    }

    pub fn require_api_keys(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() {
            return Err(ConfigError::new("API_KEYS", "is required (comma-separated tenant:key)"));
        }
        Ok(())
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
