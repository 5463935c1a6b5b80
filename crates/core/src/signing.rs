//! Signing deliveries, as DESIGN.md section 3 fixes it.
//!
//! Every delivery carries two signatures over the same body:
//! - `X-Relay-Signature`: hex HMAC-SHA256 of the body, keyed with the whole secret string
//!   (`whsec_...`), which is what the seed's verification snippet computes;
//! - `webhook-signature`: the Standard Webhooks form, `v1,<base64 HMAC-SHA256>` over
//!   `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64-decoded bytes after
//!   `whsec_`, so any Standard Webhooks library verifies it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::WebhookSecret;

type HmacSha256 = Hmac<Sha256>;

pub const USER_AGENT: &str = "Webhook-Relay/1.0";

/// The signature headers of one attempt, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub relay_signature: String,
    pub relay_timestamp: String,
    pub webhook_id: String,
    pub webhook_timestamp: String,
    pub webhook_signature: String,
}

impl SignatureHeaders {
    /// Signs `body` for delivery. `message_id` is the event id, stable across retries;
    /// `secrets` are the active secrets, newest first (the newest signs `X-Relay-Signature`).
    pub fn sign(secrets: &[&WebhookSecret], message_id: &str, timestamp: i64, body: &[u8]) -> Self {
        let newest = secrets.first().map_or("", |s| s.expose());
        Self {
            relay_signature: relay_signature(newest.as_bytes(), body),
            relay_timestamp: timestamp.to_string(),
            webhook_id: message_id.to_owned(),
            webhook_timestamp: timestamp.to_string(),
            webhook_signature: secrets
                .iter()
                .map(|s| standard_signature(s.key(), message_id, timestamp, body))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The headers as name/value pairs, with the content type and user agent.
    pub fn to_pairs(&self) -> [(&'static str, &str); 7] {
        [
            ("content-type", "application/json"),
            ("user-agent", USER_AGENT),
            ("x-relay-signature", &self.relay_signature),
            ("x-relay-timestamp", &self.relay_timestamp),
            ("webhook-id", &self.webhook_id),
            ("webhook-timestamp", &self.webhook_timestamp),
            ("webhook-signature", &self.webhook_signature),
        ]
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Hex HMAC-SHA256 of `body` keyed with `key` (the seed's `X-Relay-Signature`).
pub fn relay_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One Standard Webhooks signature entry: `v1,<base64>`.
pub fn standard_signature(key: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// How a receiver checks a delivery: true when any `v1` entry of `signature_header` matches
/// and the timestamp is within `tolerance_secs` of `now`. Used by the demo and the tests.
pub fn verify_standard(
    secret: &WebhookSecret,
    message_id: &str,
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else { return false };
    if (now - ts).abs() > tolerance_secs {
        return false;
    }
    let expected = standard_signature(secret.key(), message_id, ts, body);
    signature_header
        .split(' ')
        .filter(|entry| entry.starts_with("v1,"))
        .any(|entry| bool::from(entry.as_bytes().ct_eq(expected.as_bytes())))
}

/// How a receiver checks `X-Relay-Signature` (the seed's snippet, in Rust).
pub fn verify_relay(secret: &WebhookSecret, body: &[u8], signature_hex: &str) -> bool {
    let expected = relay_signature(secret.expose().as_bytes(), body);
    bool::from(expected.as_bytes().ct_eq(signature_hex.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        assert_eq!(standard_signature(secret().key(), MSG_ID, TIMESTAMP, BODY), SIGNATURE);
        let headers = SignatureHeaders::sign(&[&secret()], MSG_ID, TIMESTAMP, BODY);
        assert_eq!(headers.webhook_signature, SIGNATURE);
        assert_eq!(headers.webhook_id, MSG_ID);
        assert_eq!(headers.webhook_timestamp, "1614265330");
        assert!(verify_standard(&secret(), MSG_ID, "1614265330", BODY, SIGNATURE, TIMESTAMP + 10, 300));
    }

    #[test]
    fn relay_signature_is_the_seeds_hmac_over_the_body() {
        // crypto.createHmac('sha256', secret).update(JSON.stringify(payload)).digest('hex'),
        // with the secret string as the key: RFC 4231-style check against a known value.
        assert_eq!(
            relay_signature(b"key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let headers = SignatureHeaders::sign(&[&secret()], MSG_ID, TIMESTAMP, BODY);
        assert_eq!(headers.relay_signature, relay_signature(SECRET.as_bytes(), BODY));
        assert!(verify_relay(&secret(), BODY, &headers.relay_signature));
        assert!(!verify_relay(&secret(), b"{}", &headers.relay_signature));
    }

    #[test]
    fn tampering_and_stale_timestamps_fail() {
        assert!(!verify_standard(&secret(), MSG_ID, "1614265330", b"{\"test\": 1}", SIGNATURE, TIMESTAMP, 300));
        assert!(!verify_standard(&secret(), "msg_other", "1614265330", BODY, SIGNATURE, TIMESTAMP, 300));
        assert!(!verify_standard(&secret(), MSG_ID, "1614265330", BODY, SIGNATURE, TIMESTAMP + 301, 300));
        assert!(!verify_standard(&WebhookSecret::generate(), MSG_ID, "1614265330", BODY, SIGNATURE, TIMESTAMP, 300));
    }

    #[test]
    fn several_secrets_give_several_entries() {
        let other = WebhookSecret::generate();
        let headers = SignatureHeaders::sign(&[&other, &secret()], MSG_ID, TIMESTAMP, BODY);
        let entries: Vec<&str> = headers.webhook_signature.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1], SIGNATURE);
        assert!(verify_standard(&secret(), MSG_ID, "1614265330", BODY, &headers.webhook_signature, TIMESTAMP, 300));
        assert!(verify_relay(&other, BODY, &headers.relay_signature), "newest secret signs X-Relay-Signature");
    }
}
