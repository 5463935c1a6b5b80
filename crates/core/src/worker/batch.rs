use std::sync::Arc;

use futures_util::future::join_all;

use crate::app::{Deliverer, Next, RelayMessage};
use crate::domain::{DeliveryKey, EventId};
use crate::ports::{Queue, ReceivedMessage};

/// Handles one batch of relay queue messages, each in its own task and span, and says which
/// must come back. A message to retry later has its visibility set to the backoff delay first.
#[derive(Clone, Debug)]
pub struct BatchHandler {
    deliverer: Deliverer,
    queue: Arc<dyn Queue>,
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// These messages (their ids, in batch order) must come back; every other one is done with
    /// and may be deleted.
    Retry(Vec<String>),
    /// None may be deleted: a message's task panicked, so which were handled is not known.
    RetryAll,
}

impl BatchOutcome {
    /// Whether the message `id` must come back.
    pub fn must_retry(&self, id: &str) -> bool {
        match self {
            Self::Retry(ids) => ids.iter().any(|retry| retry == id),
            Self::RetryAll => true,
        }
    }
}

impl BatchHandler {
    pub fn new(deliverer: Deliverer, queue: Arc<dyn Queue>) -> Self {
        Self { deliverer, queue }
    }

    /// Handles the batch in a task of its own, so a panic costs a retry of the batch, not the
    /// worker.
    pub async fn handle(&self, messages: Vec<ReceivedMessage>) -> BatchOutcome {
        let handler = self.clone();
        match tokio::spawn(async move { handler.handle_batch(messages).await }).await {
            Ok(retry) => BatchOutcome::Retry(retry),
            Err(err) => {
                // Which messages were handled is not known: keep the whole batch, so nothing
                // is deleted that was not handled.
                tracing::error!(error = %err, "batch task panicked");
                BatchOutcome::RetryAll
            }
        }
    }

    /// The ids of the messages that must come back, in batch order. The batch's dispatches go
    /// together to [`Deliverer::dispatch_many`] and its deliveries to
    /// [`Deliverer::deliver_many`], so the stores see a few writes per batch, not per message.
    #[tracing::instrument(skip_all, fields(messages = messages.len()))]
    async fn handle_batch(&self, messages: Vec<ReceivedMessage>) -> Vec<String> {
        let mut retry = vec![false; messages.len()];
        let mut dispatches = Vec::new();
        let mut deliveries = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match RelayMessage::parse(&message.body) {
                Ok(RelayMessage::Dispatch { event_id }) => dispatches.push((index, event_id)),
                Ok(RelayMessage::Deliver { event_id, webhook_id }) => {
                    deliveries.push((index, message, DeliveryKey { event_id, webhook_id }));
                }
                Err(err) => {
                    // Left to come back until the queue moves it to the DLQ.
                    tracing::error!(message_id = %message.message_id, error = %err, "unreadable message");
                    retry[index] = true;
                }
            }
        }
        let event_ids: Vec<EventId> = dispatches.iter().map(|(_, id)| *id).collect();
        let keys: Vec<DeliveryKey> = deliveries.iter().map(|(_, _, key)| *key).collect();
        let (dispatched, delivered) = tokio::join!(
            async { if event_ids.is_empty() { Ok(()) } else { self.deliverer.dispatch_many(&event_ids).await } },
            async { if keys.is_empty() { Ok(Vec::new()) } else { self.deliverer.deliver_many(&keys).await } },
        );
        if let Err(err) = dispatched {
            tracing::error!(error = %err, events = event_ids.len(), "dispatch failed; the messages will come back");
            for (index, _) in &dispatches {
                retry[*index] = true;
            }
        }
        let results = delivered.unwrap_or_else(|err| {
            tracing::error!(error = %err, deliveries = keys.len(), "delivery failed; the messages will come back");
            Vec::new()
        });
        let mut delays = Vec::new();
        for (position, (index, message, _)) in deliveries.iter().enumerate() {
            match results.get(position) {
                Some(Ok(Next::Done)) => continue,
                Some(Ok(Next::RetryIn(delay))) => delays.push((*message, *delay)),
                Some(Err(err)) => {
                    tracing::error!(message_id = %message.message_id, error = %err, "message failed; it will come back");
                }
                None => {}
            }
            retry[*index] = true;
        }
        join_all(delays.iter().map(|(message, delay)| async move {
            if let Err(err) = self.queue.change_visibility(&message.receipt_handle, *delay).await {
                // It comes back after the queue's own visibility timeout instead; the
                // delivery's nextAttemptAt still holds it until it is due.
                tracing::warn!(message_id = %message.message_id, error = %err, "could not set the backoff delay on the message");
            }
        }))
        .await;
        messages.into_iter().zip(retry).filter(|(_, retry)| *retry).map(|(message, _)| message.message_id).collect()
    }
}
