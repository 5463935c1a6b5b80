//! Webhook secrets sealed with AES-256-GCM wherever they are kept: in the webhook a store
//! holds (DynamoDB, memory), in the Redis cache, and in the process between uses. A secret is
//! opened only to sign a delivery or to show it to its tenant.
//!
//! A sealed secret is `enc:v1:<key id>:<base64url of nonce, ciphertext and tag>`, with the
//! webhook's id as associated data, so a sealed value copied onto another webhook does not
//! open. The key ring comes from `SECRETS_ENCRYPTION_KEYS`: `id:material` entries,
//! comma-separated, the first sealing and all of them opening, so a key can be rotated by
//! putting a new one first and keeping the old one until nothing sealed with it is left (every
//! write of a webhook seals its secrets again with the first key). Each AES key is the SHA-256
//! digest of its material (at least 32 characters of high-entropy text, e.g. a generated
//! password or `openssl rand -base64 32`).
//!
//! A stored value that is a plain `whsec_` secret (written before sealing existed) still
//! opens, and is sealed on the webhook's next write.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{WebhookId, WebhookSecret};
use crate::{Error, Result};

const PREFIX: &str = "enc:v1:";
/// The id of a key given without one (a generated secret holds bare material).
const DEFAULT_ID: &str = "k0";
const MIN_MATERIAL: usize = 32;

/// A webhook secret as it is kept: sealed, or (written before sealing existed) plain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl SealedSecret {
    /// A value read back from a store or cache, as it was written.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the key that sealed it; `None` for a plain secret.
    pub fn key_id(&self) -> Option<&str> {
        self.0.strip_prefix(PREFIX).and_then(|rest| rest.split_once(':')).map(|(id, _)| id)
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key_id() {
            Some(id) => write!(f, "sealed({id})"),
            None => f.write_str("plain([redacted])"),
        }
    }
}

/// The key ring that seals and opens webhook secrets.
#[derive(Clone)]
pub struct SecretKeys {
    ring: Arc<Ring>,
}

/// The key that seals, and the older ones that still open.
struct Ring {
    sealing: Key,
    older: Vec<Key>,
}

struct Key {
    id: String,
    aead: LessSafeKey,
}

impl Ring {
    fn all(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.sealing).chain(&self.older)
    }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.ring.all().map(|key| key.id.as_str()).collect();
        f.debug_struct("SecretKeys").field("ids", &ids).finish_non_exhaustive()
    }
}

fn key(id: &str, material: &[u8]) -> Option<Key> {
    let digest = Sha256::digest(material);
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &digest).ok()?);
    Some(Key { id: id.to_owned(), aead })
}

impl SecretKeys {
    /// Parses `SECRETS_ENCRYPTION_KEYS`: `id:material`, comma-separated, first one sealing. One
    /// entry may be bare material (its id is `k0`). Ids are 1-32 of `A-Z a-z 0-9 _ -`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut keys: Vec<Key> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, material) = match entry.split_once(':') {
                Some((id, material)) if is_id(id) => (id, material),
                _ => (DEFAULT_ID, entry),
            };
            if material.len() < MIN_MATERIAL {
                return Err(format!("key {id}: its material must be at least {MIN_MATERIAL} characters"));
            }
            if keys.iter().any(|known| known.id == id) {
                return Err(format!("key id {id} appears twice (at most one key may be given without an id)"));
            }
            keys.push(key(id, material.as_bytes()).ok_or_else(|| format!("key {id}: not usable"))?);
        }
        let mut keys = keys.into_iter();
        let sealing = keys.next().ok_or("lists no key")?;
        Ok(Self { ring: Arc::new(Ring { sealing, older: keys.collect() }) })
    }

    /// A new `SECRETS_ENCRYPTION_KEYS` value: one key, `k1`, of 32 random bytes (base64url).
    pub fn new_setting() -> String {
        format!("k1:{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
    }

    /// A key made now, for relay-local's in-memory stores (they end with the process anyway).
    pub fn random() -> Result<Self> {
        let sealing = key("local", &rand::random::<[u8; 32]>())
            .ok_or_else(|| Error::Internal("the crypto library refused a random key".into()))?;
        Ok(Self { ring: Arc::new(Ring { sealing, older: Vec::new() }) })
    }

    /// Seals `secret` for webhook `owner` with the first key.
    pub fn seal(&self, secret: &WebhookSecret, owner: WebhookId) -> Result<SealedSecret> {
        let Key { id, aead } = &self.ring.sealing;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = secret.expose().as_bytes().to_vec();
        let aad = owner.to_string();
        aead.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut sealed)
            .map_err(|_| Error::Internal(format!("the secret of webhook {owner} could not be sealed")))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(SealedSecret(format!("{PREFIX}{id}:{}", URL_SAFE_NO_PAD.encode(bytes))))
    }

    /// Opens a sealed (or plain, older) secret of webhook `owner`. A value that does not open
    /// (an unknown key id, another webhook's value, tampering) is an internal error: the
    /// stored data or the key ring is wrong, and the caller must not go on without the secret.
    pub fn open(&self, sealed: &SealedSecret, owner: WebhookId) -> Result<WebhookSecret> {
        let corrupt = |why: &str| Error::Internal(format!("the secret of webhook {owner} does not open: {why}"));
        let Some(rest) = sealed.0.strip_prefix(PREFIX) else {
            return WebhookSecret::parse(&sealed.0).map_err(|_| corrupt("neither sealed nor a whsec_ secret"));
        };
        let (id, encoded) = rest.split_once(':').ok_or_else(|| corrupt("malformed"))?;
        let key = self
            .ring
            .all()
            .find(|key| key.id == id)
            .ok_or_else(|| corrupt(&format!("no key {id} in SECRETS_ENCRYPTION_KEYS")))?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| corrupt("malformed"))?;
        let (nonce, ciphertext) = bytes.split_at_checked(NONCE_LEN).ok_or_else(|| corrupt("malformed"))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt("malformed"))?;
        let mut in_out = ciphertext.to_vec();
        let aad = owner.to_string();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut in_out)
            .map_err(|_| corrupt("authentication failed"))?;
        let text = std::str::from_utf8(plain).map_err(|_| corrupt("not text"))?;
        WebhookSecret::parse(text).map_err(|_| corrupt("not a whsec_ secret"))
    }

    /// `sealed` sealed again with the first key, when it is plain or sealed with another key;
    /// `None` when it is already sealed with the first key (or does not open).
    pub fn reseal(&self, sealed: &SealedSecret, owner: WebhookId) -> Option<SealedSecret> {
        if sealed.key_id() == Some(self.ring.sealing.id.as_str()) {
            return None;
        }
        self.open(sealed, owner).ok().and_then(|secret| self.seal(&secret, owner).ok())
    }
}

fn is_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATERIAL: &str = "a-long-high-entropy-key-material-0001";

    fn keys(list: &str) -> SecretKeys {
        SecretKeys::parse(list).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_for_its_webhook_only() {
        let keys = keys(&format!("k1:{MATERIAL}"));
        let secret = WebhookSecret::generate();
        let owner = WebhookId::new();
        let sealed = keys.seal(&secret, owner).unwrap();
        assert!(sealed.as_str().starts_with("enc:v1:k1:"), "{}", sealed.as_str());
        assert!(!sealed.as_str().contains(secret.expose()));
        assert!(!sealed.as_str().contains(&secret.expose()["whsec_".len()..]));
        assert_eq!(keys.open(&sealed, owner).unwrap(), secret);
        assert!(keys.open(&sealed, WebhookId::new()).is_err(), "moved onto another webhook");
        assert_ne!(keys.seal(&secret, owner).unwrap(), sealed, "a fresh nonce every time");
        assert_eq!(format!("{sealed:?}"), "sealed(k1)");
    }

    #[test]
    fn tampering_and_unknown_keys_do_not_open() {
        let one = keys(&format!("k1:{MATERIAL}"));
        let owner = WebhookId::new();
        let sealed = one.seal(&WebhookSecret::generate(), owner).unwrap();
        let mut bytes = sealed.as_str().to_owned().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = SealedSecret::from_stored(String::from_utf8(bytes).unwrap());
        assert!(one.open(&tampered, owner).is_err());
        let other = keys(&format!("k2:{MATERIAL}-other"));
        let err = other.open(&sealed, owner).unwrap_err().to_string();
        assert!(err.contains("no key k1"), "{err}");
        for garbage in ["enc:v1:k1", "enc:v1:k1:!!", "enc:v1:k1:AAAA", "nonsense", ""] {
            assert!(one.open(&SealedSecret::from_stored(garbage.into()), owner).is_err(), "{garbage}");
        }
    }

    /// Rotation: a new key first, the old one kept: old values open and are sealed again with
    /// the new key; values sealed with the new key are left alone.
    #[test]
    fn keys_rotate_and_plain_secrets_are_sealed_on_rewrite() {
        let owner = WebhookId::new();
        let secret = WebhookSecret::generate();
        let old = keys(&format!("k1:{MATERIAL}"));
        let sealed_old = old.seal(&secret, owner).unwrap();
        let rotated = keys(&format!("k2:{MATERIAL}-new, k1:{MATERIAL}"));
        assert_eq!(rotated.open(&sealed_old, owner).unwrap(), secret);
        let resealed = rotated.reseal(&sealed_old, owner).unwrap();
        assert_eq!(resealed.key_id(), Some("k2"));
        assert!(rotated.reseal(&resealed, owner).is_none());
        let plain = SealedSecret::from_stored(secret.expose().to_owned());
        assert_eq!(plain.key_id(), None);
        assert_eq!(rotated.open(&plain, owner).unwrap(), secret);
        assert_eq!(rotated.reseal(&plain, owner).unwrap().key_id(), Some("k2"));
        assert_eq!(format!("{plain:?}"), "plain([redacted])");
    }

    #[test]
    fn the_setting_is_checked() {
        assert!(SecretKeys::parse(MATERIAL).is_ok(), "bare material: id k0");
        assert_eq!(format!("{:?}", keys(MATERIAL)), "SecretKeys { ids: [\"k0\"], .. }");
        for bad in ["", " , ", "k1:short", &format!("k1:{MATERIAL},k1:{MATERIAL}"), &format!("{MATERIAL},{MATERIAL}x")]
        {
            assert!(SecretKeys::parse(bad).is_err(), "{bad}");
        }
        assert!(SecretKeys::parse(&SecretKeys::new_setting()).is_ok());
        let random = SecretKeys::random().unwrap();
        let owner = WebhookId::new();
        let secret = WebhookSecret::generate();
        assert_eq!(random.open(&random.seal(&secret, owner).unwrap(), owner).unwrap(), secret);
    }
}
