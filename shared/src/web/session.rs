//! The dashboard's session: a cookie naming the tenant, when it expires and a random nonce,
//! signed with HMAC-SHA256 under a server secret; and the CSRF token forms carry, derived from
//! the nonce under the same secret. The API key itself is never in the cookie.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Timestamp;
use crate::config::Redacted;
use crate::domain::TenantId;

pub const COOKIE: &str = "relay_session";
const VERSION: &str = "v1";

/// A signed-in operator of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub tenant: TenantId,
    pub expires_at: Timestamp,
    nonce: String,
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

    fn mac(&self, parts: &[&str]) -> String {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret.0).unwrap_or_else(|_| unreachable!());
        mac.update(parts.join(".").as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A new session for `tenant` from `now`, and its cookie value.
    pub fn issue(&self, tenant: TenantId, now: Timestamp) -> (Session, String) {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
        let expires_at = now + self.ttl;
        let expires = expires_at.as_millis().to_string();
        let signature = self.mac(&[VERSION, tenant.as_str(), &expires, &nonce]);
        let value = format!("{VERSION}.{}.{expires}.{nonce}.{signature}", tenant.as_str());
        (Session { tenant, expires_at, nonce }, value)
    }

    /// The session a cookie value stands for, if it is ours, intact and not expired at `now`.
    pub fn verify(&self, value: &str, now: Timestamp) -> Option<Session> {
        let mut parts = value.split('.');
        let (Some(VERSION), Some(tenant), Some(expires), Some(nonce), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expected = self.mac(&[VERSION, tenant, expires, nonce]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes())) {
            return None;
        }
        let expires_at = Timestamp::from_millis(expires.parse().ok()?);
        if expires_at <= now {
            return None;
        }
        Some(Session { tenant: TenantId::parse(tenant).ok()?, expires_at, nonce: nonce.to_owned() })
    }

    /// The token this session's forms must send back.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.mac(&["csrf", &session.nonce])
    }

    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(self.csrf_token(session).as_bytes(), token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(b"a-server-secret-for-tests-000000".to_vec(), Duration::from_secs(3600))
    }

    #[test]
    fn a_session_round_trips_until_it_expires() {
        let sessions = sessions();
        let now = Timestamp::now();
        let (session, cookie) = sessions.issue(TenantId::parse("acme").unwrap(), now);
        assert_eq!(sessions.verify(&cookie, now).as_ref(), Some(&session));
        assert_eq!(sessions.verify(&cookie, now + Duration::from_secs(3599)).as_ref(), Some(&session));
        assert_eq!(sessions.verify(&cookie, now + Duration::from_secs(3600)), None);
    }

    #[test]
    fn tampered_or_foreign_cookies_are_refused() {
        let sessions = sessions();
        let now = Timestamp::now();
        let (_, cookie) = sessions.issue(TenantId::parse("acme").unwrap(), now);
        let other_tenant = cookie.replacen(".acme.", ".globex.", 1);
        let parts: Vec<&str> = cookie.split('.').collect();
        let later = format!("v1.acme.{}.{}.{}", parts[2].parse::<i64>().unwrap() + 1_000_000, parts[3], parts[4]);
        let foreign = Sessions::new(b"another-secret-000000000000000000".to_vec(), Duration::from_secs(3600));
        let (_, theirs) = foreign.issue(TenantId::parse("acme").unwrap(), now);
        for bad in [other_tenant.as_str(), later.as_str(), theirs.as_str(), "", "v1", "v1.acme.1.2.3.4", "garbage"] {
            assert_eq!(sessions.verify(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = sessions();
        let now = Timestamp::now();
        let (one, _) = sessions.issue(TenantId::parse("acme").unwrap(), now);
        let (two, _) = sessions.issue(TenantId::parse("acme").unwrap(), now);
        let token = sessions.csrf_token(&one);
        assert!(sessions.csrf_ok(&one, &token));
        assert!(!sessions.csrf_ok(&two, &token));
        assert!(!sessions.csrf_ok(&one, ""));
    }
}
