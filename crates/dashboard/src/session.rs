//! The dashboard's session: a cookie naming the tenant, when it expires, a random nonce and a
//! fingerprint of the API key it was opened with, signed with HMAC-SHA256 under a server
//! secret; and the CSRF token forms carry, derived from the nonce under the same secret. The
//! API key itself is never in the cookie.
//!
//! A session opened by a portal link carries the marker `portal` where the fingerprint goes
//! (the signature makes it unforgeable): it holds while its tenant is active.
//!
//! A valid signature is not enough for a request to pass: the key behind the fingerprint must
//! still be one of the tenant's keys (so removing or revoking a key ends its sessions), the
//! tenant must be active, and
//! the nonce must not be on the list of ended sessions (sign-out), which lives in the shared
//! cache (Redis when configured) so it holds on every process.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use relay_core::Timestamp;
use relay_core::auth::Directory;
use relay_core::domain::{Tenant, TenantId};
use relay_core::settings::Redacted;

pub const COOKIE: &str = "relay_session";
/// What a portal link's session carries instead of a key's fingerprint (16 characters, never 6).
const PORTAL: &str = "portal";
const VERSION: &str = "v2";

/// A signed-in operator of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub tenant: TenantId,
    pub expires_at: Timestamp,
    nonce: String,
    /// A keyed fingerprint of the SHA-256 of the API key the session was opened with.
    key: String,
}

impl Session {
    /// The name this session goes by on the list of ended sessions.
    pub fn ended_key(&self) -> String {
        format!("session-ended:{}", self.nonce)
    }
}

/// Issues and checks sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    secret: Redacted<Vec<u8>>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(secret: Vec<u8>, ttl: Duration) -> Self {
        Self { secret: Redacted(secret), ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret.0).unwrap_or_else(|_| unreachable!());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b".");
            }
            mac.update(part);
        }
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The fingerprint of a key's digest: keyed, so the cookie does not carry the digest.
    fn fingerprint(&self, key_digest: &[u8; 32]) -> String {
        let full = self.mac(&[b"api-key", key_digest]);
        full[..16].to_owned()
    }

    /// A new session for `tenant` from `now`, opened with the key whose SHA-256 is
    /// `key_digest`, and its cookie value.
    pub fn issue(&self, tenant: TenantId, key_digest: &[u8; 32], now: Timestamp) -> (Session, String) {
        self.sign(tenant, self.fingerprint(key_digest), now)
    }

    /// A new session for `tenant` from `now`, opened by a portal link.
    pub fn issue_portal(&self, tenant: TenantId, now: Timestamp) -> (Session, String) {
        self.sign(tenant, PORTAL.to_owned(), now)
    }

    fn sign(&self, tenant: TenantId, key: String, now: Timestamp) -> (Session, String) {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
        let expires_at = now + self.ttl;
        let expires = expires_at.as_millis().to_string();
        let signature = self.mac(&[
            VERSION.as_bytes(),
            tenant.as_str().as_bytes(),
            expires.as_bytes(),
            nonce.as_bytes(),
            key.as_bytes(),
        ]);
        let value = format!("{VERSION}.{}.{expires}.{nonce}.{key}.{signature}", tenant.as_str());
        (Session { tenant, expires_at, nonce, key }, value)
    }

    /// The session a cookie value stands for, if it is ours, intact and not expired at `now`.
    /// Whether its key still exists and it was not ended are checked apart ([`Self::key_exists`]).
    pub fn verify(&self, value: &str, now: Timestamp) -> Option<Session> {
        let mut parts = value.split('.');
        let (Some(VERSION), Some(tenant), Some(expires), Some(nonce), Some(key), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expected =
            self.mac(&[VERSION.as_bytes(), tenant.as_bytes(), expires.as_bytes(), nonce.as_bytes(), key.as_bytes()]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes())) {
            return None;
        }
        let expires_at = Timestamp::from_millis(expires.parse().ok()?);
        if expires_at <= now {
            return None;
        }
        Some(Session {
            tenant: TenantId::parse(tenant).ok()?,
            expires_at,
            nonce: nonce.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The session's tenant while the session holds: the tenant is active and, unless a portal
    /// link opened the session, the key it was opened with is still one of the tenant's keys.
    pub async fn tenant_of(&self, session: &Session, directory: &Directory) -> relay_core::Result<Option<Tenant>> {
        let Some(tenant) = directory.tenant(&session.tenant).await?.filter(|t| t.is_active) else { return Ok(None) };
        let holds = session.key == PORTAL
            || directory
                .tenant_has_key(&session.tenant, |digest| {
                    bool::from(subtle::ConstantTimeEq::ct_eq(
                        self.fingerprint(digest).as_bytes(),
                        session.key.as_bytes(),
                    ))
                })
                .await?;
        Ok(holds.then_some(tenant))
    }

    /// The token this session's forms must send back.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.mac(&[b"csrf", session.nonce.as_bytes()])
    }

    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(self.csrf_token(session).as_bytes(), token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::auth::{Credentials, digest};
    use relay_core::settings::Redacted as R;

    const KEY: &str = "acme-api-key-00000001";

    fn sessions() -> Sessions {
        Sessions::new(b"a-server-secret-for-tests-000000".to_vec(), Duration::from_secs(3600))
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn a_session_round_trips_until_it_expires() {
        let sessions = sessions();
        let now = Timestamp::now();
        let (session, cookie) = sessions.issue(acme(), &digest(KEY), now);
        assert_eq!(sessions.verify(&cookie, now).as_ref(), Some(&session));
        assert_eq!(sessions.verify(&cookie, now + Duration::from_secs(3599)).as_ref(), Some(&session));
        assert_eq!(sessions.verify(&cookie, now + Duration::from_secs(3600)), None);
        assert!(!cookie.contains(&hex::encode(digest(KEY))), "the key's digest is not in the cookie");
    }

    #[test]
    fn tampered_or_foreign_cookies_are_refused() {
        let sessions = sessions();
        let now = Timestamp::now();
        let (_, cookie) = sessions.issue(acme(), &digest(KEY), now);
        let other_tenant = cookie.replacen(".acme.", ".globex.", 1);
        let parts: Vec<&str> = cookie.split('.').collect();
        let later =
            format!("v2.acme.{}.{}.{}.{}", parts[2].parse::<i64>().unwrap() + 1_000_000, parts[3], parts[4], parts[5]);
        let other_key = format!("v2.acme.{}.{}.AAAAAAAAAAAAAAAA.{}", parts[2], parts[3], parts[5]);
        let foreign = Sessions::new(b"another-secret-000000000000000000".to_vec(), Duration::from_secs(3600));
        let (_, theirs) = foreign.issue(acme(), &digest(KEY), now);
        let old_version = cookie.replacen("v2.", "v1.", 1);
        for bad in [
            other_tenant.as_str(),
            later.as_str(),
            other_key.as_str(),
            theirs.as_str(),
            old_version.as_str(),
            "",
            "v2",
            "v2.acme.1.2.3.4.5",
            "garbage",
        ] {
            assert_eq!(sessions.verify(bad, now), None, "{bad}");
        }
    }

    /// A session lives only as long as the key it was opened with is one of its tenant's keys
    /// and its tenant is active; a portal session, as long as its tenant is active.
    #[tokio::test]
    async fn a_session_needs_its_key_and_an_active_tenant() {
        use relay_core::domain::{ApiKey, Tenant, TenantInput};
        use relay_core::ports::TenantStore;
        use std::sync::Arc;
        let sessions = sessions();
        let (session, _) = sessions.issue(acme(), &digest(KEY), Timestamp::now());
        let (portal, _) = sessions.issue_portal(acme(), Timestamp::now());
        let with = |keys: &[(&str, &str)]| {
            let credentials = Credentials::new(
                vec![],
                keys.iter().map(|(t, k)| (TenantId::parse(t).unwrap(), R(digest(k)))).collect(),
            );
            Directory::new(credentials, Arc::new(relay_memory::MemoryTenantStore::new()))
        };
        let valid = |directory: Directory, session: Session| {
            let sessions = sessions.clone();
            async move { sessions.tenant_of(&session, &directory).await.unwrap().is_some() }
        };
        assert!(valid(with(&[("acme", KEY), ("acme", "acme-second-key-000001")]), session.clone()).await);
        assert!(!valid(with(&[("acme", "acme-second-key-000001")]), session.clone()).await, "key removed");
        assert!(!valid(with(&[("globex", KEY), ("acme", "acme-second-key-000001")]), session.clone()).await);
        assert!(!valid(with(&[]), session.clone()).await, "no tenant");
        assert!(valid(with(&[("acme", "acme-second-key-000001")]), portal.clone()).await, "a portal session");
        assert!(!valid(with(&[("globex", KEY)]), portal.clone()).await, "a portal session of no tenant");

        // A stored key, and a stored tenant that is then disabled.
        let store = Arc::new(relay_memory::MemoryTenantStore::new());
        let input: TenantInput = serde_json::from_value(serde_json::json!({"id": "acme", "name": "Acme"})).unwrap();
        let mut tenant = Tenant::new(relay_core::domain::NewTenant::parse(input).unwrap(), Timestamp::now());
        store.insert(&tenant).await.unwrap();
        let issued = ApiKey::issue(acme(), "ci".into(), Timestamp::now());
        store.insert_key(&issued.key).await.unwrap();
        let (stored, _) = sessions.issue(acme(), &digest(&issued.secret), Timestamp::now());
        let directory = Directory::new(Credentials::new(vec![], vec![]), store.clone());
        assert!(sessions.tenant_of(&stored, &directory).await.unwrap().is_some());
        assert!(sessions.tenant_of(&portal, &directory).await.unwrap().is_some());
        tenant.is_active = false;
        store.update(&tenant).await.unwrap();
        directory.forget(&tenant.id);
        assert!(sessions.tenant_of(&stored, &directory).await.unwrap().is_none(), "tenant disabled");
        assert!(sessions.tenant_of(&portal, &directory).await.unwrap().is_none(), "tenant disabled");
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = sessions();
        let now = Timestamp::now();
        let (one, _) = sessions.issue(acme(), &digest(KEY), now);
        let (two, _) = sessions.issue(acme(), &digest(KEY), now);
        let token = sessions.csrf_token(&one);
        assert!(sessions.csrf_ok(&one, &token));
        assert!(!sessions.csrf_ok(&two, &token));
        assert!(!sessions.csrf_ok(&one, ""));
        assert_ne!(one.ended_key(), two.ended_key());
    }
}
