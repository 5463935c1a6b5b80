use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::BatchHandler;
use crate::ports::{Queue, ReceivedMessage};

/// How long one receive waits for a message (SQS long polling).
const WAIT: Duration = Duration::from_secs(1);

/// Does for relay-local what Lambda's event source mapping does in AWS: receive up to 10
/// messages, pass them to the batch handler, and delete those it did not say must come back.
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
        let done: Vec<(String, String)> =
            messages.iter().map(|m| (m.message_id.clone(), m.receipt_handle.clone())).collect();
        let outcome = self.handler.handle(messages).await;
        for (message_id, receipt_handle) in done.iter().filter(|(id, _)| !outcome.must_retry(id)) {
            if let Err(err) = self.queue.delete(receipt_handle).await {
                tracing::warn!(message_id = %message_id, error = %err, "delete failed; the message may be handled again");
            }
        }
    }
}
