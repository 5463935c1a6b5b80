//! Events: what internal services post, and what is stored and delivered.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::js_json::{self, Numbers, ProblemKind};
use super::{Channel, EventId, EventType, EventTypeRegistry, TenantId, parse_channels, required_text};
use crate::{Error, FieldError, Result, Timestamp};

/// The body of `POST /api/events`, as sent; [`NewEvent::parse`] checks it. The payload is kept
/// as the JSON text posted, so that it can be written back exactly as JavaScript would.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventInput {
    pub event_type: Option<String>,
    pub event_name: Option<String>,
    /// A JSON object, delivered as `data`.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    pub source: Option<String>,
    /// The tenant whose webhooks receive the event; absent: every tenant's (a broadcast), where
    /// `ALLOW_BROADCAST_EVENTS` allows it.
    pub tenant: Option<String>,
    /// Up to 10 channels; a webhook subscribed to channels receives the event only when it
    /// shares one of them.
    pub channels: Option<Vec<String>>,
}

/// The deepest a payload may nest, the payload object itself being level 1. Every answer that
/// holds a payload (the event, the list of events) wraps it in at most three more levels, and
/// JSON parsers cap nesting (serde_json reads 127 levels by default): deeper payloads would
/// make those answers unreadable.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How deeply arrays and objects nest in JSON `text` (0 for a scalar): a scan of the bytes,
/// without parsing.
pub fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in text {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// An event's payload: a JSON object, held as exactly the text JavaScript's
/// `JSON.stringify(JSON.parse(posted))` writes for it ([`js_json`]): the posted key order (with
/// JavaScript's order for integer-like keys), numbers as `Number#toString` writes them,
/// strings escaped as `JSON.stringify` escapes them. Delivered, stored and answered as is, so a
/// receiver that re-serializes the body it parsed gets the very bytes that were signed.
#[derive(Clone)]
pub struct Payload(Box<RawValue>);

/// Two payloads are equal when their text is: the same meaning in the same order.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Payload {}

impl Payload {
    /// A posted payload: a JSON object whose numbers JavaScript holds exactly. A number it
    /// would change is `422` naming it (`payload.items[2].price`); a lone UTF-16 surrogate,
    /// which UTF-8 cannot carry, is invalid JSON (`400`), as it is anywhere else in a body.
    pub fn from_posted(raw: &RawValue) -> Result<Self> {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(Error::validation("payload", "must be a JSON object"));
        }
        if nesting(text.as_bytes()) > MAX_PAYLOAD_DEPTH {
            return Err(Error::validation("payload", format!("must not nest deeper than {MAX_PAYLOAD_DEPTH} levels")));
        }
        match js_json::normalize(text, "payload", Numbers::Strict) {
            Ok(normalized) => Self::wrap(normalized),
            Err(problems) => match problems.iter().find(|p| p.kind != ProblemKind::Number) {
                Some(bad) => Err(Error::BadJson(format!("{}: {}", bad.path, bad.message))),
                None => Err(Error::invalid(problems.into_iter().map(|p| FieldError::new(p.path, p.message)).collect())),
            },
        }
    }

    /// A payload read back from a store: written as JavaScript would, whatever it holds
    /// (payloads stored before this form existed are converted; nothing is refused).
    pub fn from_stored(text: &str) -> Result<Self, String> {
        let normalized = js_json::normalize(text, "payload", Numbers::Lenient).map_err(|problems| {
            problems.into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; ")
        })?;
        if !normalized.starts_with('{') {
            return Err("the payload is not a JSON object".into());
        }
        Self::wrap(normalized).map_err(|e| e.to_string())
    }

    fn wrap(normalized: String) -> Result<Self> {
        RawValue::from_string(normalized)
            .map(Self)
            .map_err(|e| Error::Internal(format!("a normalized payload is not JSON: {e}")))
    }

    /// The JSON text: compact, as delivered.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The payload as a value (object keys sorted): for comparing meanings, not for output.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }

    /// The same text indented two spaces a level, keys in their order: for people to read.
    pub fn pretty(&self) -> String {
        let text = self.as_str();
        let mut out = String::with_capacity(text.len() * 2);
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut chars = text.chars().peekable();
        let newline = |out: &mut String, depth: usize| {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        };
        while let Some(c) = chars.next() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                '{' | '[' => {
                    out.push(c);
                    let close = if c == '{' { '}' } else { ']' };
                    if chars.peek() == Some(&close) {
                        out.push(close);
                        chars.next();
                    } else {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                    out.push(c);
                }
                ',' => {
                    out.push(c);
                    newline(&mut out, depth);
                }
                ':' => out.push_str(": "),
                _ => out.push(c),
            }
        }
        out
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Self::from_stored(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Payloads are tenants' data: debug output shows their size only.
impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.as_str().len())
    }
}

/// A checked event, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub event_name: String,
    pub payload: Payload,
    pub source: Option<String>,
    pub tenant: Option<TenantId>,
    pub channels: Vec<Channel>,
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
        let payload = match input.payload.as_deref().map(Payload::from_posted) {
            None => {
                problems.push(FieldError::new("payload", "is required"));
                None
            }
            Some(Ok(payload)) => Some(payload),
            Some(Err(Error::Validation { details, .. })) => {
                problems.extend(details);
                None
            }
            Some(Err(other)) => return Err(other),
        };
        let source = match input.source.as_deref() {
            None => None,
            Some(s) => required_text("source", s, 255).map_err(|e| problems.push(e)).ok(),
        };
        let tenant = match input.tenant.as_deref() {
            None => None,
            Some(t) => {
                TenantId::parse(t).map_err(|_| problems.push(FieldError::new("tenant", "is not a tenant id"))).ok()
            }
        };
        let channels = match input.channels.as_deref() {
            None => Some(Vec::new()),
            Some(names) => parse_channels("channels", names, &mut problems),
        };
        match (event_type, event_name, payload, channels) {
            (Some(event_type), Some(event_name), Some(payload), Some(channels)) if problems.is_empty() => {
                Ok(Self { event_type, event_name, payload, source, tenant, channels })
            }
            _ => Err(Error::invalid(problems)),
        }
    }

    /// A digest of the request's meaning (not its bytes: key order and white space do not
    /// count), used to tell a replay from a different request under the same idempotency key.
    pub fn fingerprint(&self) -> String {
        let mut canonical = serde_json::json!({
            "eventType": self.event_type,
            "eventName": self.event_name,
            "payload": self.payload.to_value(),
            "source": self.source,
        });
        // Added only when given, so requests from before tenants keep their fingerprints.
        if let Some(tenant) = &self.tenant {
            canonical["tenant"] = serde_json::json!(tenant);
        }
        if !self.channels.is_empty() {
            canonical["channels"] = serde_json::json!(self.channels);
        }
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
    pub payload: Payload,
    pub source: Option<String>,
    /// The tenant the event is for; `None`: a broadcast to every tenant's subscribers.
    #[serde(default)]
    pub tenant: Option<TenantId>,
    #[serde(default)]
    pub channels: Vec<Channel>,
    pub created_at: Timestamp,
}

impl Event {
    pub fn new(new: NewEvent, now: Timestamp) -> Self {
        Self::with_id(EventId::new(), new, now)
    }

    /// The event `new` under an id given before (an idempotency record's).
    pub fn with_id(id: EventId, new: NewEvent, now: Timestamp) -> Self {
        Self {
            id,
            event_type: new.event_type,
            event_name: new.event_name,
            payload: new.payload,
            source: new.source,
            tenant: new.tenant,
            channels: new.channels,
            created_at: now,
        }
    }

    /// The body POSTed to every webhook: compact JSON, the same bytes on every attempt, and
    /// the bytes JavaScript's `JSON.stringify(JSON.parse(body))` gives back.
    pub fn delivery_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            event_id: EventId,
            event_type: &'a EventType,
            event_name: &'a str,
            data: &'a Payload,
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
