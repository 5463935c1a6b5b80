use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::{BatchHandler, Handled};
use crate::ports::{Queue, ReceivedMessage};

/// How long one receive waits for a message (SQS long polling).
const WAIT: Duration = Duration::from_secs(1);

/// The most messages one poller holds at once: one receive's worth, as on SQS.
const SLOTS: usize = 10;

/// Does for relay-local what Lambda's event source mapping does in AWS: receive up to 10
/// messages, pass them to the batch handler, and delete each one it did not say must come
/// back. A poller holds at most [`SLOTS`] messages, each slot freed as soon as its message is
/// handled, so a delivery waiting on a slow receiver holds one slot and not a whole batch:
/// the poller receives more while it waits.
#[derive(Clone, Debug)]
pub struct Poller {
    queue: Arc<dyn Queue>,
    handler: BatchHandler,
}

impl Poller {
    pub fn new(queue: Arc<dyn Queue>, handler: BatchHandler) -> Self {
        Self { queue, handler }
    }

    /// Runs until `stop` turns true; the messages in hand are finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(SLOTS));
        let mut batches = JoinSet::new();
        while !*stop.borrow() {
            while batches.try_join_next().is_some() {}
            let permits = tokio::select! {
                permits = take_slots(&slots) => permits,
                _ = stop.changed() => break,
            };
            let Some(mut permits) = permits else { break };
            let received = tokio::select! {
                received = self.queue.receive(permits.len(), WAIT) => received,
                _ = stop.changed() => break,
            };
            match received {
                Ok(messages) if messages.is_empty() => {}
                Ok(messages) => {
                    permits.truncate(messages.len());
                    batches.spawn(self.clone().handle(messages, permits));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "receive failed; backing off");
                    tokio::time::sleep(WAIT).await;
                }
            }
        }
        while batches.join_next().await.is_some() {}
    }

    /// Handles one batch, deleting each message as soon as the handler is done with it and
    /// giving back its slot.
    async fn handle(self, messages: Vec<ReceivedMessage>, mut permits: Vec<OwnedSemaphorePermit>) {
        let (finished, mut handled) = mpsc::unbounded_channel::<Handled>();
        let deleting = async {
            while let Some(message) = handled.recv().await {
                if !message.retry
                    && let Err(err) = self.queue.delete(&message.receipt_handle).await
                {
                    tracing::warn!(message_id = %message.message_id, error = %err, "delete failed; the message may be handled again");
                }
                permits.pop();
            }
        };
        // A batch whose task panicked leaves its unfinished messages to come back.
        tokio::join!(self.handler.handle_each(self.queue.clone(), messages, finished), deleting);
    }
}

/// Waits for one free slot, then takes as many more as are free (up to [`SLOTS`]); `None`
/// once the semaphore is closed.
async fn take_slots(slots: &Arc<Semaphore>) -> Option<Vec<OwnedSemaphorePermit>> {
    let mut permits = vec![slots.clone().acquire_owned().await.ok()?];
    while permits.len() < SLOTS {
        match slots.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => break,
        }
    }
    Some(permits)
}
