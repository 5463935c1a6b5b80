use std::sync::Arc;

use tokio::task::JoinSet;

use crate::app::{Deliverer, Next, RelayMessage};
use crate::domain::DeliveryKey;
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

    pub async fn handle(&self, messages: Vec<ReceivedMessage>) -> BatchOutcome {
        let mut tasks = JoinSet::new();
        for (index, message) in messages.into_iter().enumerate() {
            let handler = self.clone();
            tasks.spawn(async move {
                let id = message.message_id.clone();
                (index, id, handler.handle_message(message).await)
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, _, true)) => {}
                Ok((index, id, false)) => failed.push((index, id)),
                Err(err) => {
                    // A task that panicked lost its id: keep the whole batch so nothing is
                    // deleted that was not handled.
                    tracing::error!(error = %err, "message task panicked");
                    return BatchOutcome::RetryAll;
                }
            }
        }
        failed.sort();
        BatchOutcome::Retry(failed.into_iter().map(|(_, id)| id).collect())
    }

    /// True when the message is done with (it may be deleted); false to have it come back.
    #[tracing::instrument(skip_all, fields(message_id = %message.message_id, receive_count = message.receive_count))]
    async fn handle_message(&self, message: ReceivedMessage) -> bool {
        let parsed = match RelayMessage::parse(&message.body) {
            Ok(parsed) => parsed,
            Err(err) => {
                // Left to come back until the queue moves it to the DLQ.
                tracing::error!(error = %err, "unreadable message");
                return false;
            }
        };
        let result = match parsed {
            RelayMessage::Dispatch { event_id } => self.deliverer.dispatch(event_id).await.map(|()| Next::Done),
            RelayMessage::Deliver { event_id, webhook_id } => {
                self.deliverer.deliver(DeliveryKey { event_id, webhook_id }).await
            }
        };
        match result {
            Ok(Next::Done) => true,
            Ok(Next::RetryIn(delay)) => {
                if let Err(err) = self.queue.change_visibility(&message.receipt_handle, delay).await {
                    // It comes back after the queue's own visibility timeout instead; the
                    // delivery's nextAttemptAt still holds it until it is due.
                    tracing::warn!(error = %err, "could not set the backoff delay on the message");
                }
                false
            }
            Err(err) => {
                tracing::error!(error = %err, "message failed; it will come back");
                false
            }
        }
    }
}
