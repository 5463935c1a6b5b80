//! Webhooks: an endpoint a tenant registered, the event types it wants, and its secret.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::{
    Channel, CustomHeaders, Event, EventType, EventTypeRegistry, Filter, TenantId, WebhookId, channels_match, nullable,
    parse_channels, required_text,
};
use crate::sealing::{SealedSecret, SecretKeys};
use crate::{Error, FieldError, Result, Timestamp};

/// Where deliveries go: an absolute http(s) URL with a host and no credentials. Whether the
/// host may be reached is decided when delivering (see `adapters::http::ssrf`).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    pub fn parse(value: &str, require_https: bool) -> Result<Self, String> {
        if value.len() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        let url = Url::parse(value.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
        if url.as_str().len() > 2048 {
            return Err("must be at most 2048 characters once percent-encoded".into());
        }
        match url.scheme() {
            "https" => {}
            "http" if !require_https => {}
            "http" => return Err("must use https".into()),
            other => return Err(format!("scheme {other:?} is not allowed; use https")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must have a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        if url.fragment().is_some() {
            return Err("must not contain a fragment".into());
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read back from a store or cache: the scheme rule was applied when it was written.
impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text, false).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A webhook's signing secret: `whsec_` + base64 of random bytes. Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    text: String,
    key: Vec<u8>,
}

impl WebhookSecret {
    pub const PREFIX: &'static str = "whsec_";

    /// A new secret from 32 bytes of the operating system's randomness (via a CSPRNG).
    pub fn generate() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self { text: format!("{}{}", Self::PREFIX, BASE64.encode(&key)), key }
    }

    /// A secret in the Standard Webhooks form, with 24 to 64 key bytes.
    pub fn parse(value: &str) -> Result<Self, String> {
        let encoded = value.strip_prefix(Self::PREFIX).ok_or("must start with whsec_")?;
        let key = BASE64.decode(encoded).map_err(|_| "must be whsec_ followed by base64")?;
        if !(24..=64).contains(&key.len()) {
            return Err("must encode 24 to 64 bytes".into());
        }
        Ok(Self { text: value.to_owned(), key })
    }

    /// The whole secret string, as the receiver stores it (the seed's HMAC key).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The decoded key bytes (the Standard Webhooks HMAC key).
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whsec_[redacted]")
    }
}

/// A registered webhook. Its serde form is for stores and caches; its secrets are sealed
/// ([`crate::sealing`]) and opened only to sign a delivery or show them to the tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: WebhookId,
    pub tenant: TenantId,
    pub name: String,
    pub url: WebhookUrl,
    pub event_types: Vec<EventType>,
    /// When not empty, only events carrying one of these channels are delivered.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Only events passing it are delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Sent with every delivery.
    #[serde(default, skip_serializing_if = "CustomHeaders::is_empty")]
    pub headers: CustomHeaders,
    /// Its own schedule, within the relay's bounds: `None` is the relay's setting.
    #[serde(default, skip_serializing_if = "Schedule::is_default")]
    pub schedule: Schedule,
    pub is_active: bool,
    /// Why the relay disabled it (e.g. the endpoint answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub secret: SealedSecret,
    /// The secret before the last rotation, still signing until `previous_secret_expires_at`.
    #[serde(default)]
    pub previous_secret: Option<SealedSecret>,
    #[serde(default)]
    pub previous_secret_expires_at: Option<Timestamp>,
    /// When deliveries started failing without a success since; `None` while healthy.
    #[serde(default)]
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped by the store on every write: an update is refused when the stored webhook is no
    /// longer at the revision the writer read (optimistic concurrency), so a delivery noting a
    /// failure cannot put back a secret rotated or a change made since it read the webhook.
    #[serde(default)]
    pub revision: u64,
}

impl Webhook {
    /// A new webhook, its secret (the given one, or a generated one) sealed with `keys`.
    pub fn new(tenant: TenantId, new: NewWebhook, now: Timestamp, keys: &SecretKeys) -> Result<Self> {
        let id = WebhookId::new();
        let secret = keys.seal(&new.secret.unwrap_or_else(WebhookSecret::generate), id)?;
        Ok(Self {
            id,
            tenant,
            name: new.name,
            url: new.url,
            event_types: new.event_types,
            channels: new.channels,
            filter: new.filter,
            headers: new.headers,
            schedule: new.schedule,
            is_active: new.is_active,
            disabled_reason: None,
            secret,
            previous_secret: None,
            previous_secret_expires_at: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
            revision: 0,
        })
    }

    pub fn wants(&self, event_type: &EventType) -> bool {
        self.is_active && self.event_types.contains(event_type)
    }

    /// Whether `event` is for this webhook: active, subscribed to its type, sharing a channel
    /// with it unless the webhook names none, and passing its filter. `payload` holds the
    /// event's payload parsed, filled by the first filter that needs it. (Which tenant's it
    /// is, the store's lookup decides.)
    pub fn receives(&self, event: &Event, payload: &std::cell::OnceCell<serde_json::Value>) -> bool {
        self.wants(&event.event_type)
            && channels_match(&self.channels, &event.channels)
            && self.filter.as_ref().is_none_or(|f| f.matches(event, payload.get_or_init(|| event.payload.to_value())))
    }

    /// Applies a checked `PUT`. Re-enabling clears the reason it was disabled.
    pub fn apply(&mut self, patch: WebhookPatch, now: Timestamp) {
        if let Some(name) = patch.name {
            self.name = name;
        }
        if let Some(url) = patch.url {
            self.url = url;
        }
        if let Some(types) = patch.event_types {
            self.event_types = types;
        }
        if let Some(channels) = patch.channels {
            self.channels = channels;
        }
        if let Some(filter) = patch.filter {
            self.filter = filter;
        }
        if let Some(headers) = patch.headers {
            self.headers = headers;
        }
        self.schedule.apply(&patch.schedule);
        if let Some(active) = patch.is_active {
            self.is_active = active;
            if active {
                self.disabled_reason = None;
                self.failing_since = None;
            }
        }
        self.updated_at = now;
    }

    /// The secrets that sign a delivery made at `now`, newest first: the current one, and the
    /// previous one during its grace period.
    pub fn signing_secrets(&self, keys: &SecretKeys, now: Timestamp) -> Result<Vec<WebhookSecret>> {
        let mut secrets = vec![keys.open(&self.secret, self.id)?];
        if let (Some(previous), Some(expires)) = (&self.previous_secret, self.previous_secret_expires_at)
            && now < expires
        {
            secrets.push(keys.open(previous, self.id)?);
        }
        Ok(secrets)
    }

    /// Replaces the secret with `new` (sealed for this webhook); the old one keeps signing for
    /// `grace` (unless `grace` is zero).
    pub fn rotate_secret(&mut self, new: SealedSecret, grace: std::time::Duration, now: Timestamp) {
        let old = std::mem::replace(&mut self.secret, new);
        if grace.is_zero() {
            self.previous_secret = None;
            self.previous_secret_expires_at = None;
        } else {
            self.previous_secret = Some(old);
            self.previous_secret_expires_at = Some(now + grace);
        }
        self.updated_at = now;
    }

    /// Seals the secrets again with the first key of `keys` where they are plain or sealed
    /// with an older key; true when something changed (so the webhook is worth writing).
    pub fn reseal(&mut self, keys: &SecretKeys) -> bool {
        let mut changed = false;
        if let Some(sealed) = keys.reseal(&self.secret, self.id) {
            self.secret = sealed;
            changed = true;
        }
        if let Some(sealed) = self.previous_secret.as_ref().and_then(|previous| keys.reseal(previous, self.id)) {
            self.previous_secret = Some(sealed);
            changed = true;
        }
        changed
    }

    pub fn disable(&mut self, reason: impl Into<String>, now: Timestamp) {
        self.is_active = false;
        self.disabled_reason = Some(reason.into());
        self.updated_at = now;
    }
}

/// The body of `POST /api/webhooks` and `PUT /api/webhooks/:id`, as sent.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookInput {
    pub name: Option<String>,
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Up to 10 channels; the webhook then receives only events carrying one of them (`[]`:
    /// every event of its types).
    pub channels: Option<Vec<String>>,
    /// A filter on the event (`eventType`, `source`, `tenant`, `payload.*`): only events passing
    /// it are delivered; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Option<serde_json::Value>>,
    /// Headers sent with every delivery (up to 20); replaces the whole set, `{}` clears it.
    #[schema(value_type = Option<Object>)]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    /// Ms per attempt, 1 to `WEBHOOK_TIMEOUT`; `null`: the relay's.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>)]
    pub timeout_ms: Option<Option<u64>>,
    /// Retries after the first attempt, 0 to `WEBHOOK_MAX_RETRIES`; `null`: `WEBHOOK_MAX_RETRIES`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub max_retries: Option<Option<u32>>,
    /// Ms before the first retry (doubling after), 1 to 43200000; `null`: `WEBHOOK_RETRY_DELAY`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>)]
    pub retry_delay_ms: Option<Option<u64>>,
    /// Deliveries in flight at once, 1 to 1000; `null`: `WEBHOOK_MAX_IN_FLIGHT` (10).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub max_in_flight: Option<Option<u32>>,
    /// Deliveries per second at most, 1 to 10000, spread evenly; `null`: no limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit: Option<Option<u32>>,
    /// `"ordered"`: events arrive in the order they were accepted, one at a time, a failing
    /// one holding back the later ones; `"unordered"` (the default): concurrently.
    pub ordering: Option<String>,
    pub is_active: Option<bool>,
    /// Only on create: the caller's own `whsec_` secret instead of a generated one.
    pub secret: Option<String>,
}

/// The most event types one webhook subscribes to (a DynamoDB transaction rewrites its
/// subscriptions in one go, and holds at most 100 items).
pub const MAX_EVENT_TYPES: usize = 40;

/// A checked webhook registration.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub name: String,
    pub url: WebhookUrl,
    pub event_types: Vec<EventType>,
    pub channels: Vec<Channel>,
    pub filter: Option<Filter>,
    pub headers: CustomHeaders,
    pub schedule: Schedule,
    pub is_active: bool,
    /// `None`: generate one.
    pub secret: Option<WebhookSecret>,
}

/// A checked partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub name: Option<String>,
    pub url: Option<WebhookUrl>,
    pub event_types: Option<Vec<EventType>>,
    pub channels: Option<Vec<Channel>>,
    /// `Some(None)`: remove the filter.
    pub filter: Option<Option<Filter>>,
    pub headers: Option<CustomHeaders>,
    /// Each field: `Some(None)` back to the relay's setting.
    pub schedule: SchedulePatch,
    pub is_active: Option<bool>,
}

/// The rules a webhook's fields follow.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRules<'a> {
    pub registry: &'a EventTypeRegistry,
    pub require_https: bool,
    /// `WEBHOOK_TIMEOUT`: the longest `timeoutMs`.
    pub max_timeout: std::time::Duration,
    /// `WEBHOOK_MAX_RETRIES`: the most `maxRetries`.
    pub max_retries: u32,
}

/// The longest `retryDelayMs` (as `WEBHOOK_RETRY_DELAY`).
pub const MAX_RETRY_DELAY_MS: u64 = 43_200_000;

/// A webhook's own attempt timeout and retry schedule; each `None` is the relay's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_ms: Option<u64>,
    /// `maxInFlight`; `None`: `WEBHOOK_MAX_IN_FLIGHT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// `rateLimit`, deliveries per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Ordering::is_unordered")]
    pub ordering: Ordering,
}

/// Whether a webhook's deliveries keep the order of their events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// Concurrently, each retried on its own schedule.
    #[default]
    Unordered,
    /// One at a time in the order the events were accepted; a failing delivery holds back the
    /// later ones until it succeeds or its retries run out.
    Ordered,
}

impl Ordering {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unordered => "unordered",
            Self::Ordered => "ordered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Unordered, Self::Ordered].into_iter().find(|o| o.as_str() == text)
    }

    pub fn is_unordered(&self) -> bool {
        *self == Self::Unordered
    }
}

/// The most `maxInFlight` a webhook may ask for.
pub const MAX_IN_FLIGHT: u32 = 1000;
/// The highest `rateLimit`, deliveries per second.
pub const MAX_RATE_LIMIT: u32 = 10_000;

/// A checked change of a [`Schedule`]: `None` leaves a field, `Some(None)` resets it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulePatch {
    pub timeout_ms: Option<Option<u64>>,
    pub max_retries: Option<Option<u32>>,
    pub retry_delay_ms: Option<Option<u64>>,
    pub max_in_flight: Option<Option<u32>>,
    pub rate_limit: Option<Option<u32>>,
    pub ordering: Option<Ordering>,
}

impl SchedulePatch {
    /// Pushes a problem for each value out of its bounds: the relay's `WEBHOOK_TIMEOUT` and
    /// `WEBHOOK_MAX_RETRIES` at most (the queues are sized for the latter), and a first retry
    /// within 12 hours.
    fn check(self, rules: WebhookRules<'_>, problems: &mut Vec<FieldError>) -> Self {
        let max_timeout_ms = u64::try_from(rules.max_timeout.as_millis()).unwrap_or(u64::MAX);
        let bounds = [
            ("timeoutMs", self.timeout_ms.flatten(), 1, max_timeout_ms, "at most WEBHOOK_TIMEOUT"),
            (
                "maxRetries",
                self.max_retries.flatten().map(u64::from),
                0,
                u64::from(rules.max_retries),
                "at most WEBHOOK_MAX_RETRIES",
            ),
            ("retryDelayMs", self.retry_delay_ms.flatten(), 1, MAX_RETRY_DELAY_MS, "ms before the first retry"),
            (
                "maxInFlight",
                self.max_in_flight.flatten().map(u64::from),
                1,
                u64::from(MAX_IN_FLIGHT),
                "deliveries at once",
            ),
            (
                "rateLimit",
                self.rate_limit.flatten().map(u64::from),
                1,
                u64::from(MAX_RATE_LIMIT),
                "deliveries per second",
            ),
        ];
        for (field, value, min, max, what) in bounds {
            if value.is_some_and(|n| !(min..=max).contains(&n)) {
                problems.push(FieldError::new(field, format!("must be from {min} to {max} ({what})")));
            }
        }
        self
    }
}

impl Schedule {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// This schedule with `patch` applied.
    pub fn with(mut self, patch: &SchedulePatch) -> Self {
        self.apply(patch);
        self
    }

    pub fn apply(&mut self, patch: &SchedulePatch) {
        if let Some(timeout) = patch.timeout_ms {
            self.timeout_ms = timeout;
        }
        if let Some(retries) = patch.max_retries {
            self.max_retries = retries;
        }
        if let Some(delay) = patch.retry_delay_ms {
            self.retry_delay_ms = delay;
        }
        if let Some(max) = patch.max_in_flight {
            self.max_in_flight = max;
        }
        if let Some(rate) = patch.rate_limit {
            self.rate_limit = rate;
        }
        if let Some(ordering) = patch.ordering {
            self.ordering = ordering;
        }
    }

    /// `relay`'s retry policy with this schedule's overrides.
    pub fn policy(&self, relay: &crate::backoff::RetryPolicy) -> crate::backoff::RetryPolicy {
        crate::backoff::RetryPolicy {
            max_retries: self.max_retries.unwrap_or(relay.max_retries),
            base_delay: self.retry_delay_ms.map_or(relay.base_delay, std::time::Duration::from_millis),
            ..*relay
        }
    }

    /// The attempt timeout, when the webhook has its own.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout_ms.map(std::time::Duration::from_millis)
    }
}

impl WebhookPatch {
    pub fn parse(input: WebhookInput, rules: WebhookRules<'_>) -> Result<Self> {
        let mut problems = Vec::new();
        if input.secret.is_some() {
            problems.push(FieldError::new(
                "secret",
                "is set on create only; rotate it with POST /api/webhooks/{id}/secret/rotate",
            ));
        }
        let name = input.name.and_then(|n| required_text("name", &n, 255).map_err(|e| problems.push(e)).ok());
        let url = input.url.and_then(|u| {
            WebhookUrl::parse(&u, rules.require_https).map_err(|m| problems.push(FieldError::new("url", m))).ok()
        });
        let event_types = input.event_types.and_then(|names| parse_event_types(&names, rules.registry, &mut problems));
        let channels = input.channels.and_then(|names| parse_channels("channels", &names, &mut problems));
        let filter = match input.filter {
            None => None,
            Some(None) => Some(None),
            Some(Some(value)) => Filter::parse(&value, "filter").map_err(|p| problems.extend(p)).ok().map(Some),
        };
        let ordering = input.ordering.and_then(|text| {
            Ordering::parse(&text)
                .ok_or_else(|| problems.push(FieldError::new("ordering", "must be \"ordered\" or \"unordered\"")))
                .ok()
        });
        let wanted = SchedulePatch {
            timeout_ms: input.timeout_ms,
            max_retries: input.max_retries,
            retry_delay_ms: input.retry_delay_ms,
            max_in_flight: input.max_in_flight,
            rate_limit: input.rate_limit,
            ordering,
        };
        let schedule = wanted.check(rules, &mut problems);
        let headers = input.headers.and_then(|map| CustomHeaders::parse(&map).map_err(|p| problems.extend(p)).ok());
        if problems.is_empty() {
            Ok(Self { name, url, event_types, channels, filter, headers, schedule, is_active: input.is_active })
        } else {
            Err(Error::invalid(problems))
        }
    }
}

impl NewWebhook {
    pub fn parse(mut input: WebhookInput, rules: WebhookRules<'_>) -> Result<Self> {
        let mut problems = Vec::new();
        for (field, missing) in
            [("name", input.name.is_none()), ("url", input.url.is_none()), ("eventTypes", input.event_types.is_none())]
        {
            if missing {
                problems.push(FieldError::new(field, "is required"));
            }
        }
        let secret = match input.secret.take() {
            None => None,
            Some(text) => WebhookSecret::parse(&text).map_err(|m| problems.push(FieldError::new("secret", m))).ok(),
        };
        let patch = WebhookPatch::parse(input, rules);
        match patch {
            Ok(WebhookPatch {
                name: Some(name),
                url: Some(url),
                event_types: Some(event_types),
                channels,
                filter,
                headers,
                schedule,
                is_active,
            }) if problems.is_empty() => Ok(Self {
                name,
                url,
                event_types,
                channels: channels.unwrap_or_default(),
                filter: filter.flatten(),
                headers: headers.unwrap_or_default(),
                schedule: Schedule::default().with(&schedule),
                is_active: is_active.unwrap_or(true),
                secret,
            }),
            Ok(_) => Err(Error::invalid(problems)),
            Err(Error::Validation { details, .. }) => {
                problems.extend(details);
                Err(Error::invalid(problems))
            }
            Err(other) => Err(other),
        }
    }
}

fn parse_event_types(
    names: &[String],
    registry: &EventTypeRegistry,
    problems: &mut Vec<FieldError>,
) -> Option<Vec<EventType>> {
    if names.is_empty() {
        problems.push(FieldError::new("eventTypes", "must list at least one event type"));
        return None;
    }
    if names.len() > MAX_EVENT_TYPES {
        problems.push(FieldError::new("eventTypes", format!("must list at most {MAX_EVENT_TYPES} event types")));
        return None;
    }
    let mut types: Vec<EventType> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match registry.parse(name) {
            Ok(t) if !types.contains(&t) => types.push(t),
            Ok(_) => {}
            Err(m) => problems.push(FieldError::new(format!("eventTypes[{i}]"), m)),
        }
    }
    Some(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES_HTTP: fn(&EventTypeRegistry) -> WebhookRules<'_> = |registry| WebhookRules {
        registry,
        require_https: false,
        max_timeout: std::time::Duration::from_secs(5),
        max_retries: 3,
    };

    #[test]
    fn urls_follow_the_rules() {
        assert!(WebhookUrl::parse("https://hrms.example.com/webhooks", true).is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook", false).is_ok());
        assert_eq!(WebhookUrl::parse("http://hrms.example.com/", true).unwrap_err(), "must use https");
        for bad in
            ["not a url", "ftp://x.example/", "https://user:pw@x.example/", "https://x.example/#frag", "/relative"]
        {
            assert!(WebhookUrl::parse(bad, false).is_err(), "{bad} accepted");
        }
        let grows = format!("https://x.example/{}", "é".repeat(1000));
        assert!(grows.len() <= 2048, "within the limit as sent");
        assert!(WebhookUrl::parse(&grows, false).is_err(), "past it once encoded");
    }

    #[test]
    fn generated_secrets_have_the_standard_form() {
        let secret = WebhookSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(secret.key().len(), 32);
        assert_eq!(WebhookSecret::parse(secret.expose()).unwrap(), secret);
        assert_ne!(WebhookSecret::generate(), secret);
        assert_eq!(format!("{secret:?}"), "whsec_[redacted]");
    }

    #[test]
    fn malformed_secrets_are_rejected() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn registration_needs_name_url_and_known_types() {
        let registry = EventTypeRegistry::default();
        let err = NewWebhook::parse(
            WebhookInput {
                url: Some("https://x.example/".into()),
                event_types: Some(vec!["nope.x".into()]),
                ..Default::default()
            },
            RULES_HTTP(&registry),
        )
        .unwrap_err();
        let Error::Validation { details, .. } = err else { panic!() };
        let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["name", "eventTypes[0]"]);

        let ok = NewWebhook::parse(
            WebhookInput {
                name: Some(" HRMS ".into()),
                url: Some("https://x.example/".into()),
                event_types: Some(vec!["job.created".into(), "job.created".into()]),
                channels: None,
                filter: None,
                headers: None,
                timeout_ms: None,
                max_retries: None,
                retry_delay_ms: None,
                max_in_flight: None,
                rate_limit: None,
                ordering: None,
                is_active: None,
                secret: None,
            },
            RULES_HTTP(&registry),
        )
        .unwrap();
        assert_eq!(ok.name, "HRMS");
        assert_eq!(ok.event_types.len(), 1);
        assert!(ok.is_active);
    }

    #[test]
    fn a_rotated_secret_signs_until_its_grace_ends() {
        let registry = EventTypeRegistry::default();
        let new = NewWebhook::parse(
            WebhookInput {
                name: Some("n".into()),
                url: Some("https://x.example/".into()),
                event_types: Some(vec!["job.created".into()]),
                channels: None,
                filter: None,
                headers: None,
                timeout_ms: None,
                max_retries: None,
                retry_delay_ms: None,
                max_in_flight: None,
                rate_limit: None,
                ordering: None,
                is_active: None,
                secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            },
            RULES_HTTP(&registry),
        )
        .unwrap();
        let now = Timestamp::from_millis(1_000_000);
        let keys = SecretKeys::random().unwrap();
        let mut hook = Webhook::new(TenantId::parse("t").unwrap(), new, now, &keys).unwrap();
        let old = keys.open(&hook.secret, hook.id).unwrap();
        assert_eq!(old.expose(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "the caller's own secret");
        assert!(!hook.secret.as_str().contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "kept sealed");
        let fresh = WebhookSecret::generate();
        hook.rotate_secret(keys.seal(&fresh, hook.id).unwrap(), std::time::Duration::from_secs(60), now);
        assert_eq!(hook.signing_secrets(&keys, now).unwrap(), [fresh.clone(), old]);
        assert_eq!(hook.signing_secrets(&keys, now + std::time::Duration::from_secs(60)).unwrap(), [fresh]);
        hook.rotate_secret(keys.seal(&WebhookSecret::generate(), hook.id).unwrap(), std::time::Duration::ZERO, now);
        assert_eq!(hook.signing_secrets(&keys, now).unwrap().len(), 1);
        assert!(!format!("{hook:?}").contains("whsec_"), "{hook:?}");
    }

    #[test]
    fn a_secret_is_for_create_only_and_must_be_well_formed() {
        let registry = EventTypeRegistry::default();
        let input = |secret: &str| WebhookInput {
            name: Some("n".into()),
            url: Some("https://x.example/".into()),
            event_types: Some(vec!["job.created".into()]),
            channels: None,
            filter: None,
            headers: None,
            timeout_ms: None,
            max_retries: None,
            retry_delay_ms: None,
            max_in_flight: None,
            rate_limit: None,
            ordering: None,
            is_active: None,
            secret: Some(secret.into()),
        };
        let Error::Validation { details, .. } =
            NewWebhook::parse(input("not-a-secret"), RULES_HTTP(&registry)).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(details[0].field, "secret");
        let Error::Validation { details, .. } =
            WebhookPatch::parse(input("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), RULES_HTTP(&registry)).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(details[0].field, "secret");
    }

    #[test]
    fn reenabling_clears_the_disabled_reason() {
        let registry = EventTypeRegistry::default();
        let new = NewWebhook::parse(
            WebhookInput {
                name: Some("n".into()),
                url: Some("https://x.example/".into()),
                event_types: Some(vec!["job.created".into()]),
                channels: None,
                filter: None,
                headers: None,
                timeout_ms: None,
                max_retries: None,
                retry_delay_ms: None,
                max_in_flight: None,
                rate_limit: None,
                ordering: None,
                is_active: None,
                secret: None,
            },
            RULES_HTTP(&registry),
        )
        .unwrap();
        let mut hook =
            Webhook::new(TenantId::parse("t").unwrap(), new, Timestamp::now(), &SecretKeys::random().unwrap()).unwrap();
        hook.disable("endpoint answered 410 Gone", Timestamp::now());
        assert!(!hook.wants(&registry.parse("job.created").unwrap()));
        hook.apply(WebhookPatch { is_active: Some(true), ..Default::default() }, Timestamp::now());
        assert!(hook.is_active);
        assert_eq!(hook.disabled_reason, None);
    }
}
