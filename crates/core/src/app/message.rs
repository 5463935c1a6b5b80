use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{EventId, WebhookId};
use crate::ports::{EventStore, Queue};

/// The body of a relay queue message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum RelayMessage {
    /// Fan an event out to every subscribed webhook.
    Dispatch { event_id: EventId },
    /// Sign and POST one event to one webhook. `deferrals` counts how often admission held
    /// this delivery back for a full cap, each time waiting twice as long.
    Deliver {
        event_id: EventId,
        webhook_id: WebhookId,
        #[serde(default, skip_serializing_if = "is_zero")]
        deferrals: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The body of a first `deliver` message.
pub fn deliver_message(event_id: EventId, webhook_id: WebhookId) -> String {
    RelayMessage::Deliver { event_id, webhook_id, deferrals: 0 }.to_body()
}

impl RelayMessage {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// Puts a `dispatch` message for the event on the queue. When the queue refuses, the event is
/// marked undispatched, so maintenance sends it; if even that mark fails, the event is
/// dispatched when the caller retries with its Idempotency-Key.
pub async fn enqueue_dispatch(queue: &dyn Queue, events: &dyn EventStore, event_id: EventId) -> crate::Result<()> {
    let Err(err) = queue.send(&RelayMessage::Dispatch { event_id }.to_body(), Duration::ZERO).await else {
        return Ok(());
    };
    if let Err(mark) = events.mark_undispatched(event_id).await {
        tracing::warn!(event_id = %event_id, error = %mark, "could not mark the event undispatched");
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_a_readable_shape() {
        let event_id = EventId::new();
        let webhook_id = WebhookId::new();
        let message = RelayMessage::Deliver { event_id, webhook_id, deferrals: 0 };
        let body = message.to_body();
        assert_eq!(body, format!(r#"{{"type":"deliver","eventId":"{event_id}","webhookId":"{webhook_id}"}}"#));
        assert_eq!(RelayMessage::parse(&body).unwrap(), message);
        assert!(RelayMessage::parse(r#"{"type":"explode"}"#).is_err());
        let deferred = RelayMessage::Deliver { event_id, webhook_id, deferrals: 3 };
        assert_eq!(RelayMessage::parse(&deferred.to_body()).unwrap(), deferred);
    }
}
