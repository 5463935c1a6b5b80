use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use tokio::sync::watch;

use super::BatchHandler;
use crate::ports::{Queue, ReceivedMessage};

/// How long one receive waits for a message (SQS long polling).
const WAIT: Duration = Duration::from_secs(1);

/// Does for relay-local what Lambda's event source mapping does in AWS: receive up to 10
/// messages, pass them to the batch handler as an `SqsEvent`, and delete those it did not
/// report as failed.
#[derive(Clone, Debug)]
pub struct Poller {
    queue: Arc<dyn Queue>,
    handler: BatchHandler,
}

impl Poller {
    pub fn new(queue: Arc<dyn Queue>, handler: BatchHandler) -> Self {
        Self { queue, handler }
    }

    /// Runs until `stop` turns true; a batch in progress is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let received = tokio::select! {
                received = self.queue.receive(10, WAIT) => received,
                _ = stop.changed() => break,
            };
            match received {
                Ok(messages) if messages.is_empty() => {}
                Ok(messages) => self.handle(messages).await,
                Err(err) => {
                    tracing::warn!(error = %err, "receive failed; backing off");
                    tokio::time::sleep(WAIT).await;
                }
            }
        }
    }

    async fn handle(&self, messages: Vec<ReceivedMessage>) {
        let event = to_sqs_event(&messages);
        let response = self.handler.handle(event).await;
        let failed: HashSet<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        if failed.contains("") {
            return;
        }
        for message in messages.iter().filter(|m| !failed.contains(m.message_id.as_str())) {
            if let Err(err) = self.queue.delete(&message.receipt_handle).await {
                tracing::warn!(message_id = %message.message_id, error = %err, "delete failed; the message may be handled again");
            }
        }
    }
}

/// The shape Lambda gives the delivery function.
pub fn to_sqs_event(messages: &[ReceivedMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt_handle.clone());
            record.body = Some(m.body.clone());
            record.attributes.insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
            record.event_source = Some("aws:sqs".into());
            record
        })
        .collect();
    event
}
