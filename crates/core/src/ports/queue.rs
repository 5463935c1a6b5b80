use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// A message as a receive returns it, with what SQS says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Valid until the message is received again; needed to delete it or change its visibility.
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first receive.
    pub receive_count: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

/// A queue with SQS semantics: at-least-once, visibility timeout, receive count, and (set on
/// the queue) redrive to a dead-letter queue after `maxReceiveCount` receives.
#[async_trait]
pub trait Queue: std::fmt::Debug + Send + Sync + 'static {
    /// Sends one message, invisible for `delay` (SQS: at most 15 minutes).
    async fn send(&self, body: &str, delay: Duration) -> Result<()>;
    /// Sends many (in batches of 10 on SQS). Fails unless every message was accepted.
    async fn send_batch(&self, bodies: &[String]) -> Result<()>;
    /// Up to `max` (at most 10) messages, waiting up to `wait` for the first one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>>;
    async fn delete(&self, receipt_handle: &str) -> Result<()>;
    /// Makes a received message invisible for `timeout` from now (at most 12 hours).
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<()>;
    async fn depth(&self) -> Result<QueueDepth>;

    /// Whether this is a FIFO queue (SQS FIFO, or the embedded queue made so): messages of one
    /// group come in the order they were sent, and none while an earlier one of its group is
    /// in flight or waiting to be received again.
    fn ordered(&self) -> bool {
        false
    }

    /// Sends `(group, body)` messages to a FIFO queue, in order (each gets a fresh
    /// deduplication id: the relay deduplicates deliveries itself). Fails on a standard queue.
    async fn send_grouped(&self, messages: &[(String, String)]) -> Result<()> {
        let _ = messages;
        Err(crate::Error::Internal("this queue keeps no order: send_grouped needs a FIFO queue".into()))
    }

    /// When the queue holds as much as it may (a queue in memory, bounded by
    /// `QUEUE_MAX_BACKLOG`): how long a caller should wait before adding more. Only ingest asks
    /// and is refused; the relay's own sends (deliveries, retries) are always accepted, so
    /// nothing accepted is lost. `None` (SQS: the backlog waits in SQS) by default.
    fn full(&self) -> Option<Duration> {
        None
    }
}
