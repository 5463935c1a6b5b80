//! Port contract suites: the behaviour every implementation of a port must have. Each suite
//! is a set of async functions over a port instance; `memory` runs them against the
//! in-memory adapters, and each real backend adds a module that runs the same functions.

pub mod coordination;
pub mod deliveries;
pub mod events;
pub mod gates;
pub mod queue;
pub mod tenants;
pub mod webhooks;

mod dynamodb;
mod memory;
mod postgres;
mod redis;
mod sqs;

use relay_core::Timestamp;
use relay_core::domain::{
    Delivery, Event, EventInput, EventTypeRegistry, NewEvent, NewWebhook, TenantId, Webhook, WebhookInput, WebhookRules,
};
use relay_core::sealing::SecretKeys;
use serde_json::json;

pub fn event(event_type: &str, source: Option<&str>) -> Event {
    let input: EventInput = serde_json::from_value(json!({
        "eventType": event_type, "eventName": "contract", "payload": {"k": "v"}, "source": source,
    }))
    .unwrap();
    Event::new(NewEvent::parse(input, &EventTypeRegistry::default()).unwrap(), Timestamp::now())
}

pub fn webhook(tenant: &str, event_types: &[&str], active: bool) -> Webhook {
    let input: WebhookInput = serde_json::from_value(json!({
        "name": "contract", "url": "https://example.com/hook", "eventTypes": event_types, "isActive": active,
    }))
    .unwrap();
    let registry = EventTypeRegistry::default();
    let new = NewWebhook::parse(
        input,
        WebhookRules {
            registry: &registry,
            require_https: true,
            max_timeout: std::time::Duration::from_secs(5),
            max_retries: 3,
        },
    )
    .unwrap();
    Webhook::new(TenantId::parse(tenant).unwrap(), new, Timestamp::now(), keys()).unwrap()
}

/// The keys the contract suites seal webhook secrets with.
pub fn keys() -> &'static SecretKeys {
    static KEYS: std::sync::LazyLock<SecretKeys> = std::sync::LazyLock::new(|| SecretKeys::random().unwrap());
    &KEYS
}

pub fn delivery(event: &Event, webhook: &Webhook) -> Delivery {
    Delivery::new(event.id, webhook.id, webhook.tenant.clone(), event.event_type.clone(), Timestamp::now())
}
