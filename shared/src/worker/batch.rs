use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::task::JoinSet;

use crate::app::{Deliverer, Next, RelayMessage};
use crate::domain::DeliveryKey;
use crate::ports::Queue;

/// Handles one batch of relay queue messages, each in its own task and span, and reports
/// only the ids of the messages that must come back (`ReportBatchItemFailures`). A message
/// to retry later has its visibility set to the backoff delay before it is reported.
#[derive(Clone, Debug)]
pub struct BatchHandler {
    deliverer: Deliverer,
    queue: Arc<dyn Queue>,
}

impl BatchHandler {
    pub fn new(deliverer: Deliverer, queue: Arc<dyn Queue>) -> Self {
        Self { deliverer, queue }
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut tasks = JoinSet::new();
        for (index, record) in event.records.into_iter().enumerate() {
            let handler = self.clone();
            tasks.spawn(async move { (index, record.message_id.clone(), handler.handle_message(record).await) });
        }
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, _, true)) => {}
                Ok((index, id, false)) => failed.push((index, id.unwrap_or_default())),
                Err(err) => {
                    // A task that panicked lost its id: fail the whole batch so nothing is
                    // deleted that was not handled.
                    tracing::error!(error = %err, "message task panicked");
                    return SqsBatchResponse::default().with_all_failed_marker();
                }
            }
        }
        failed.sort();
        let mut response = SqsBatchResponse::default();
        for (_, id) in failed {
            response.add_failure(id);
        }
        response
    }

    /// True when the message is done with (Lambda deletes it); false to have it come back.
    #[tracing::instrument(skip_all, fields(
        message_id = record.message_id.as_deref().unwrap_or(""),
        receive_count = record.attributes.get("ApproximateReceiveCount").map(String::as_str).unwrap_or(""),
    ))]
    async fn handle_message(&self, record: SqsMessage) -> bool {
        let body = record.body.as_deref().unwrap_or_default();
        let message = match RelayMessage::parse(body) {
            Ok(message) => message,
            Err(err) => {
                // Left to come back until the queue moves it to the DLQ.
                tracing::error!(error = %err, "unreadable message");
                return false;
            }
        };
        let result = match message {
            RelayMessage::Dispatch { event_id } => self.deliverer.dispatch(event_id).await.map(|()| Next::Done),
            RelayMessage::Deliver { event_id, webhook_id } => {
                self.deliverer.deliver(DeliveryKey { event_id, webhook_id }).await
            }
        };
        match result {
            Ok(Next::Done) => true,
            Ok(Next::RetryIn(delay)) => {
                let handle = record.receipt_handle.as_deref().unwrap_or_default();
                if let Err(err) = self.queue.change_visibility(handle, delay).await {
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

trait AllFailed {
    fn with_all_failed_marker(self) -> Self;
}

impl AllFailed for SqsBatchResponse {
    /// Lambda treats an empty item identifier as a failure of the whole batch.
    fn with_all_failed_marker(mut self) -> Self {
        self.add_failure(String::new());
        self
    }
}
