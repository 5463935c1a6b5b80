//! Events: what internal services post, and what is stored and delivered.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{required_text, EventId, EventType, EventTypeRegistry};
use crate::{Error, FieldError, Result, Timestamp};

/// The body of `POST /api/events`, as sent; [`NewEvent::parse`] checks it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventInput {
    pub event_type: Option<String>,
    pub event_name: Option<String>,
    /// A JSON object, delivered as `data`.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub source: Option<String>,
}

/// The deepest a payload may nest, the payload object itself being level 1. Every answer that
/// holds a payload (the event, the list of events) wraps it in at most three more levels, and
/// JSON parsers cap nesting (serde_json reads 127 levels by default): deeper payloads would
/// make those answers unreadable.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Whether `value` nests more than `levels` arrays or objects deep.
fn deeper_than(value: &Value, levels: usize) -> bool {
    match value {
        Value::Array(items) => levels == 0 || items.iter().any(|child| deeper_than(child, levels - 1)),
        Value::Object(map) => levels == 0 || map.values().any(|child| deeper_than(child, levels - 1)),
        _ => false,
    }
}

/// A checked event, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub event_name: String,
    pub payload: Map<String, Value>,
    pub source: Option<String>,
}

impl NewEvent {
    pub fn parse(input: EventInput, registry: &EventTypeRegistry) -> Result<Self> {
        let mut problems = Vec::new();
        let event_type = match input.event_type.as_deref() {
            None => {
                problems.push(FieldError::new("eventType", "is required"));
                None
            }
            Some(name) => registry.parse(name).map_err(|m| problems.push(FieldError::new("eventType", m))).ok(),
        };
        let event_name = match input.event_name.as_deref() {
            None => {
                problems.push(FieldError::new("eventName", "is required"));
                None
            }
            Some(name) => required_text("eventName", name, 255).map_err(|e| problems.push(e)).ok(),
        };
        let payload = match input.payload {
            Some(Value::Object(map)) if map.values().any(|v| deeper_than(v, MAX_PAYLOAD_DEPTH - 1)) => {
                problems.push(FieldError::new("payload", format!("must not nest deeper than {MAX_PAYLOAD_DEPTH} levels")));
                None
            }
            Some(Value::Object(map)) => Some(map),
            None => {
                problems.push(FieldError::new("payload", "is required"));
                None
            }
            Some(_) => {
                problems.push(FieldError::new("payload", "must be a JSON object"));
                None
            }
        };
        let source = match input.source.as_deref() {
            None => None,
            Some(s) => required_text("source", s, 255).map_err(|e| problems.push(e)).ok(),
        };
        match (event_type, event_name, payload) {
            (Some(event_type), Some(event_name), Some(payload)) if problems.is_empty() => {
                Ok(Self { event_type, event_name, payload, source })
            }
            _ => Err(Error::invalid(problems)),
        }
    }

    /// A digest of the request's meaning (not its bytes: key order and white space do not
    /// count), used to tell a replay from a different request under the same idempotency key.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::json!({
            "eventType": self.event_type,
            "eventName": self.event_name,
            "payload": self.payload,
            "source": self.source,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "eventId")]
    pub id: EventId,
    pub event_type: EventType,
    pub event_name: String,
    pub payload: Map<String, Value>,
    pub source: Option<String>,
    pub created_at: Timestamp,
    /// When the dispatch message was accepted by the queue; `None` means maintenance must
    /// still dispatch it.
    #[serde(skip)]
    pub enqueued_at: Option<Timestamp>,
}

impl Event {
    pub fn new(new: NewEvent, now: Timestamp) -> Self {
        Self {
            id: EventId::new(),
            event_type: new.event_type,
            event_name: new.event_name,
            payload: new.payload,
            source: new.source,
            created_at: now,
            enqueued_at: None,
        }
    }

    /// The body POSTed to every webhook: compact JSON, the same bytes on every attempt.
    pub fn delivery_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            event_id: EventId,
            event_type: &'a EventType,
            event_name: &'a str,
            data: &'a Map<String, Value>,
            timestamp: Timestamp,
        }
        let body = Body {
            event_id: self.id,
            event_type: &self.event_type,
            event_name: &self.event_name,
            data: &self.payload,
            timestamp: self.created_at,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: Value) -> EventInput {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn parses_the_seed_example() {
        let new = NewEvent::parse(
            input(json!({
                "eventType": "candidate.created",
                "eventName": "Candidate John Doe Created",
                "payload": {"candidateId": "123"},
                "source": "candidates-service"
            })),
            &EventTypeRegistry::default(),
        )
        .unwrap();
        assert_eq!(new.event_type.as_str(), "candidate.created");
        assert_eq!(new.source.as_deref(), Some("candidates-service"));
    }

    #[test]
    fn lists_every_problem() {
        let err = NewEvent::parse(
            input(json!({"eventType": "nope.nope", "eventName": " ", "payload": [1]})),
            &EventTypeRegistry::default(),
        )
        .unwrap_err();
        let Error::Validation { details, .. } = err else { panic!("not a validation error") };
        let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["eventType", "eventName", "payload"]);
    }

    #[test]
    fn payloads_nest_at_most_max_payload_depth_levels() {
        let nested = |levels: usize| {
            let mut payload = json!(1);
            for _ in 0..levels {
                payload = json!({ "a": payload });
            }
            NewEvent::parse(
                input(json!({"eventType": "job.created", "eventName": "x", "payload": payload})),
                &EventTypeRegistry::default(),
            )
        };
        assert!(nested(MAX_PAYLOAD_DEPTH).is_ok());
        let Error::Validation { details, .. } = nested(MAX_PAYLOAD_DEPTH + 1).unwrap_err() else { panic!() };
        assert_eq!(details[0].field, "payload");
        assert!(nested(1).is_ok());
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let registry = EventTypeRegistry::default();
        let a = NewEvent::parse(
            input(json!({"eventType": "job.created", "eventName": "x", "payload": {"a": 1, "b": 2}})),
            &registry,
        )
        .unwrap();
        let b: EventInput =
            serde_json::from_str(r#"{"payload": {"b": 2, "a": 1}, "eventName": "x", "eventType": "job.created"}"#)
                .unwrap();
        let b = NewEvent::parse(b, &registry).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = NewEvent::parse(
            input(json!({"eventType": "job.created", "eventName": "x", "payload": {"a": 1, "b": 3}})),
            &registry,
        )
        .unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn delivery_body_has_the_seed_shape() {
        let new = NewEvent::parse(
            input(json!({"eventType": "job.created", "eventName": "Job", "payload": {"jobId": "7"}})),
            &EventTypeRegistry::default(),
        )
        .unwrap();
        let event = Event::new(new, Timestamp::from_millis(1_761_472_800_000));
        let body: Value = serde_json::from_slice(&event.delivery_body()).unwrap();
        assert_eq!(
            body,
            json!({
                "eventId": event.id.to_string(),
                "eventType": "job.created",
                "eventName": "Job",
                "data": {"jobId": "7"},
                "timestamp": "2025-10-26T10:00:00.000Z"
            })
        );
        assert!(!String::from_utf8(event.delivery_body()).unwrap().contains(' '), "not compact");
    }
}
