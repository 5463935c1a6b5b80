//! Domain types. Each identifier and each value that arrives from outside has a `parse`
//! constructor, so an invalid one cannot exist past the edge.

mod channel;
mod delivery;
mod event;
mod event_type;
mod filter;
mod headers;
mod ids;
pub mod js_json;
mod page;
mod tenant;
mod webhook;

pub use channel::{Channel, MAX_CHANNELS, channels_match, parse_channels};
pub use delivery::{Attempt, AttemptResult, Delivery, DeliveryKey, DeliveryStatus, Trigger};
pub use event::{Event, EventInput, NewEvent, Payload, nesting};
pub use event_type::{EventType, EventTypeRegistry};
pub use filter::Filter;
pub use headers::{CustomHeaders, MASKED, is_credential};
pub use ids::{ApiKeyId, EventId, TenantId, WebhookId};
pub use page::{Page, PageRequest, encode_cursor};
pub use tenant::{
    API_KEY_PREFIX, ApiKey, ApiKeyInput, DEFAULT_MAX_WEBHOOKS, IssuedKey, MAX_API_KEYS, NewTenant, PortalLink,
    PortalLinkInput, Tenant, TenantInput, TenantPatch, parse_new_tenant_id,
};
pub use webhook::{
    MAX_IN_FLIGHT, MAX_RATE_LIMIT, MAX_RETRY_DELAY_MS, NewWebhook, Ordering, Schedule, SchedulePatch, Webhook,
    WebhookInput, WebhookPatch, WebhookRules, WebhookSecret, WebhookUrl,
};

/// For an optional field where `null` means something (clear it): absent is `None`, `null` is
/// `Some(None)`.
pub(crate) fn nullable<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// Trims `value` and checks it is non-empty and at most `max` characters long.
pub(crate) fn required_text(field: &str, value: &str, max: usize) -> Result<String, crate::FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(crate::FieldError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(crate::FieldError::new(field, format!("must be at most {max} characters")));
    }
    Ok(trimmed.to_owned())
}
