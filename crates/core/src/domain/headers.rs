//! A webhook's custom `headers`, sent with every delivery: up to 20, never one of the relay's
//! own (signatures, content, hop-by-hop), values up to 1 KiB. Values of headers named like
//! credentials are masked wherever they are shown, and `Debug` prints no value at all.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FieldError;

/// The most custom headers one webhook carries.
pub const MAX_HEADERS: usize = 20;
/// The longest value, in bytes.
pub const MAX_HEADER_VALUE: usize = 1024;
/// What a masked value shows.
pub const MASKED: &str = "********";

/// Headers the relay sets itself, or that belong to the connection: never a webhook's.
const RESERVED: [&str; 18] = [
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-relay-signature",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A webhook's custom headers, in the order given, names lower-cased.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CustomHeaders(Vec<(String, String)>);

impl CustomHeaders {
    /// Checks a posted `headers` object; every problem is named (`headers.X-Token`).
    pub fn parse(map: &serde_json::Map<String, serde_json::Value>) -> Result<Self, Vec<FieldError>> {
        let mut problems = Vec::new();
        if map.len() > MAX_HEADERS {
            return Err(vec![FieldError::new("headers", format!("must hold at most {MAX_HEADERS} headers"))]);
        }
        let mut headers: Vec<(String, String)> = Vec::with_capacity(map.len());
        for (name, value) in map {
            let field = format!("headers.{name}");
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                problems.push(FieldError::new(field, "is not a header name (letters, digits and !#$%&'*+-.^_`|~)"));
                continue;
            }
            if RESERVED.contains(&lower.as_str()) || lower.starts_with("x-relay-") {
                problems.push(FieldError::new(
                    field,
                    "is set by the relay (signatures, content and connection headers cannot be replaced)",
                ));
                continue;
            }
            if headers.iter().any(|(n, _)| n == &lower) {
                problems.push(FieldError::new(field, "is given twice (names are case-insensitive)"));
                continue;
            }
            let Some(text) = value.as_str() else {
                problems.push(FieldError::new(field, "must be a string"));
                continue;
            };
            if text.len() > MAX_HEADER_VALUE {
                problems.push(FieldError::new(field, format!("must be at most {MAX_HEADER_VALUE} bytes")));
                continue;
            }
            if !text.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                problems.push(FieldError::new(field, "must be visible ASCII (no line breaks or control characters)"));
                continue;
            }
            headers.push((lower, text.trim().to_owned()));
        }
        if problems.is_empty() { Ok(Self(headers)) } else { Err(problems) }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (name, value) pairs to send.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The headers as shown to people and API callers: credentials' values masked.
    pub fn masked(&self) -> serde_json::Map<String, serde_json::Value> {
        self.0
            .iter()
            .map(|(name, value)| {
                let shown = if is_credential(name) { MASKED } else { value.as_str() };
                (name.clone(), serde_json::Value::String(shown.to_owned()))
            })
            .collect()
    }
}

/// Whether a header's value is a credential: `authorization`, `cookie`, or a name holding
/// `token`, `key`, `secret`, `password` or `auth`.
pub fn is_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "cookie"
        || ["authorization", "token", "key", "secret", "password", "auth", "signature"].iter().any(|w| name.contains(w))
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Values are tenants' credentials: names only.
impl fmt::Debug for CustomHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(n, _)| n)).finish()
    }
}

/// The stored form (stores and caches): the whole values, as an object.
impl Serialize for CustomHeaders {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map: serde_json::Map<String, serde_json::Value> =
            self.0.iter().map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone()))).collect();
        map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CustomHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        Self::parse(&map).map_err(|problems| {
            serde::de::Error::custom(
                problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<CustomHeaders, Vec<String>> {
        CustomHeaders::parse(value.as_object().unwrap()).map_err(|p| p.into_iter().map(|p| p.field).collect())
    }

    #[test]
    fn the_relays_own_and_malformed_headers_are_refused() {
        let ok = parse(json!({"Authorization": "Bearer abc", "X-Team": "core"})).unwrap();
        assert_eq!(ok.iter().collect::<Vec<_>>(), [("authorization", "Bearer abc"), ("x-team", "core")]);
        for name in
            ["Content-Type", "webhook-signature", "X-Relay-Signature", "X-Relay-Anything", "Transfer-Encoding", "Host"]
        {
            assert_eq!(parse(json!({name: "x"})).unwrap_err(), [format!("headers.{name}")], "{name}");
        }
        assert_eq!(parse(json!({"bad name": "x"})).unwrap_err(), ["headers.bad name"]);
        assert_eq!(parse(json!({"X-A": "line\r\nInjected: yes"})).unwrap_err(), ["headers.X-A"]);
        assert_eq!(parse(json!({"X-A": 1})).unwrap_err(), ["headers.X-A"]);
        assert_eq!(parse(json!({"X-A": "x".repeat(1025)})).unwrap_err(), ["headers.X-A"]);
        assert_eq!(parse(json!({"X-A": "1", "x-a": "2"})).unwrap_err(), ["headers.x-a"]);
        let many: serde_json::Map<_, _> = (0..21).map(|i| (format!("x-h{i}"), json!("v"))).collect();
        assert!(CustomHeaders::parse(&many).is_err());
    }

    #[test]
    fn credentials_are_masked_and_never_debugged() {
        let headers = parse(json!({"Authorization": "Bearer s3cr3t", "X-Api-Key": "k3y", "X-Team": "core"})).unwrap();
        let masked = headers.masked();
        assert_eq!(masked["authorization"], MASKED);
        assert_eq!(masked["x-api-key"], MASKED);
        assert_eq!(masked["x-team"], "core");
        let debug = format!("{headers:?}");
        assert!(!debug.contains("s3cr3t") && !debug.contains("k3y") && !debug.contains("core"), "{debug}");
        let stored = serde_json::to_value(&headers).unwrap();
        assert_eq!(serde_json::from_value::<CustomHeaders>(stored).unwrap(), headers);
    }
}
