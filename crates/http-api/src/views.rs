//! What the API shows of the domain types: camelCase JSON, no tenant ids, secrets only when
//! asked for.

use serde::Serialize;

use relay_core::Timestamp;
use relay_core::app::{DeliveryWithAttempts, WebhookState};
use relay_core::domain::{
    ApiKey, Attempt, Channel, DeliveryStatus, EventId, EventType, Webhook, WebhookId, WebhookSecret,
};
use relay_core::ports::Circuit;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView<'a> {
    pub id: WebhookId,
    pub name: &'a str,
    pub url: &'a str,
    pub event_types: &'a [EventType],
    pub channels: &'a [Channel],
    /// The filter as written; `null` when none.
    pub filter: Option<&'a serde_json::Value>,
    /// The custom headers, credentials' values masked.
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// The webhook's own attempt timeout and retry schedule; `null`: the relay's settings.
    pub timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    pub retry_delay_ms: Option<u64>,
    /// Its deliveries in flight at most (its own, else `WEBHOOK_MAX_IN_FLIGHT`).
    pub max_in_flight: u32,
    /// Deliveries per second at most; `null`: no limit.
    pub rate_limit: Option<u32>,
    /// `"ordered"` or `"unordered"`.
    pub ordering: &'static str,
    /// Its circuit breaker: `state` (`closed`, `open`, `half-open`), `failures` in a row,
    /// `openUntil` while open.
    pub circuit: Circuit,
    pub is_active: bool,
    pub disabled_reason: Option<&'a str>,
    /// Since when every delivery has failed; `null` while deliveries succeed.
    pub failing_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl<'a> WebhookView<'a> {
    pub fn new(webhook: &'a Webhook, state: WebhookState) -> Self {
        Self {
            id: webhook.id,
            name: &webhook.name,
            url: webhook.url.as_str(),
            event_types: &webhook.event_types,
            channels: &webhook.channels,
            filter: webhook.filter.as_ref().map(|f| f.as_json()),
            headers: webhook.headers.masked(),
            timeout_ms: webhook.schedule.timeout_ms,
            max_retries: webhook.schedule.max_retries,
            retry_delay_ms: webhook.schedule.retry_delay_ms,
            max_in_flight: state.max_in_flight,
            rate_limit: webhook.schedule.rate_limit,
            ordering: webhook.schedule.ordering.as_str(),
            circuit: state.circuit,
            is_active: webhook.is_active,
            disabled_reason: webhook.disabled_reason.as_deref(),
            failing_since: webhook.failing_since,
            secret: None,
            created_at: webhook.created_at,
            updated_at: webhook.updated_at,
        }
    }

    pub fn with_secret(webhook: &'a Webhook, state: WebhookState, secret: &'a WebhookSecret) -> Self {
        Self { secret: Some(secret.expose()), ..Self::new(webhook, state) }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView<'a> {
    pub event_id: EventId,
    pub webhook_id: WebhookId,
    pub event_type: &'a EventType,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<&'a str>,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub attempts: &'a [Attempt],
}

impl<'a> DeliveryView<'a> {
    pub fn new(item: &'a DeliveryWithAttempts) -> Self {
        let d = &item.delivery;
        Self {
            event_id: d.event_id,
            webhook_id: d.webhook_id,
            event_type: &d.event_type,
            status: d.status,
            attempt_count: d.attempt_count,
            last_status_code: d.last_status_code,
            last_error: d.last_error.as_deref(),
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempts: &item.attempts,
        }
    }
}

/// A tenant's API key as listed: never the key, nor its digest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView<'a> {
    pub id: relay_core::domain::ApiKeyId,
    pub name: &'a str,
    /// The key's first characters, to tell keys apart.
    pub prefix: &'a str,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// Only in the answer to `POST /api/tenants/{id}/api-keys`: the key, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
}

impl<'a> ApiKeyView<'a> {
    pub fn new(key: &'a ApiKey) -> Self {
        Self {
            id: key.id,
            name: &key.name,
            prefix: &key.prefix,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            key: None,
        }
    }
}
