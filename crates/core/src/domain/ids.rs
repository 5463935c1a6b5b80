//! Identifiers. Event, webhook and delivery ids are UUIDv7, so they sort by creation time and
//! serve directly as paging cursors.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses an id from a path or message; anything but a UUID is "not found".
            pub fn parse(value: &str) -> Result<Self> {
                Uuid::parse_str(value).map(Self).map_err(|_| Error::NotFound($what))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

uuid_id!(
    /// The id of an accepted event; also the `webhook-id` header of every delivery of it.
    EventId,
    "event"
);

impl EventId {
    /// The smallest id an event created at `at` can have: every event created earlier has a
    /// smaller id.
    pub fn first_at(at: crate::Timestamp) -> Self {
        let millis = u64::try_from(at.as_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6] = 0x70;
        bytes[8] = 0x80;
        Self(Uuid::from_bytes(bytes))
    }

    /// When the id was made (its UUIDv7 milliseconds).
    pub fn created_at(&self) -> crate::Timestamp {
        let bytes = self.0.as_bytes();
        let mut millis = [0u8; 8];
        millis[2..].copy_from_slice(&bytes[..6]);
        crate::Timestamp::from_millis(i64::try_from(u64::from_be_bytes(millis)).unwrap_or(0))
    }

    /// A number from 0 to `shards - 1` taken from the id's random bits: the write shard of a
    /// key that would otherwise be one partition.
    pub fn shard(&self, shards: u8) -> u8 {
        self.0.as_bytes()[15] % shards.max(1)
    }
}
uuid_id!(
    /// The id of a registered webhook.
    WebhookId,
    "webhook"
);

uuid_id!(
    /// The id of a tenant's API key (not the key).
    ApiKeyId,
    "API key"
);

/// The owner of API keys and webhooks: letters, digits, `-` and `_`, 1 to 64 characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(value: &str) -> std::result::Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!("tenant id {value:?} must be 1-64 letters, digits, '-' or '_'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let first = EventId::new();
        let second = EventId::new();
        assert!(first < second);
    }

    #[test]
    fn first_at_bounds_ids_by_time() {
        let before = EventId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let bound = EventId::first_at(crate::Timestamp::now());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = EventId::new();
        assert!(before < bound && bound < after, "{before} {bound} {after}");
    }

    #[test]
    fn an_event_id_knows_when_it_was_made_and_spreads_over_shards() {
        let at = crate::Timestamp::from_millis(1_764_547_200_123);
        assert_eq!(EventId::first_at(at).created_at(), at);
        let mut seen = [0u32; 16];
        for _ in 0..16_000 {
            seen[usize::from(EventId::new().shard(16))] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn a_non_uuid_is_not_found() {
        assert!(matches!(EventId::parse("nope"), Err(Error::NotFound("event"))));
        let id = WebhookId::new();
        assert_eq!(WebhookId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn tenant_ids_are_restricted() {
        assert!(TenantId::parse("acme-corp_1").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a:b").is_err());
        assert!(TenantId::parse(&"x".repeat(65)).is_err());
    }
}
