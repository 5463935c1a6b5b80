use serde::{Deserialize, Serialize};

use crate::domain::{EventId, WebhookId};

/// The body of a relay queue message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum RelayMessage {
    /// Fan an event out to every subscribed webhook.
    Dispatch { event_id: EventId },
    /// Sign and POST one event to one webhook.
    Deliver { event_id: EventId, webhook_id: WebhookId },
}

impl RelayMessage {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_a_readable_shape() {
        let event_id = EventId::new();
        let webhook_id = WebhookId::new();
        let message = RelayMessage::Deliver { event_id, webhook_id };
        let body = message.to_body();
        assert_eq!(body, format!(r#"{{"type":"deliver","eventId":"{event_id}","webhookId":"{webhook_id}"}}"#));
        assert_eq!(RelayMessage::parse(&body).unwrap(), message);
        assert!(RelayMessage::parse(r#"{"type":"explode"}"#).is_err());
    }
}
