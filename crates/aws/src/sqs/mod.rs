//! The relay queue on Amazon SQS (aws-sdk-sqs), standard or FIFO. Reached through the SDK's
//! standard endpoint settings only, so LocalStack and real SQS are the same code.

mod provision;

pub use provision::{ORDERED_MAX_RECEIVE_COUNT, QueueSpec, Queues, create_queues};

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};

use relay_core::ports::{Queue, QueueDepth, ReceivedMessage};
use relay_core::{Error, Result};
use uuid::Uuid;

/// SQS's limits.
const MAX_DELAY_SECS: u64 = 900;
const MAX_VISIBILITY_SECS: u64 = 43_200;
const MAX_WAIT_SECS: u64 = 20;
const BATCH: usize = 10;

/// A queue at its URL. A URL ending in `.fifo` is a FIFO queue's (SQS requires the suffix):
/// every message sent to it gets a group and a fresh deduplication id (the relay deduplicates
/// deliveries itself; a fixed id would have SQS drop a manual retry sent within its 5-minute
/// deduplication window).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    fifo: bool,
}

/// A message to send in a batch, and its group on a FIFO queue (none: a group of its own).
struct Outgoing<'a> {
    group: Option<&'a str>,
    body: &'a str,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        let url = url.into();
        Self { client, fifo: url.ends_with(".fifo"), url }
    }

    /// The batch entry for `message`, with a group and a fresh deduplication id on FIFO.
    fn entry(&self, id: usize, message: &Outgoing<'_>) -> Result<SendMessageBatchRequestEntry> {
        let entry = SendMessageBatchRequestEntry::builder().id(id.to_string()).message_body(message.body);
        let entry = if self.fifo {
            let group = message.group.map_or_else(fresh_id, str::to_owned);
            entry.message_group_id(group).message_deduplication_id(fresh_id())
        } else {
            entry
        };
        entry.build().map_err(|e| Error::Internal(format!("batch entry: {e}")))
    }

    /// Sends in batches of 10, in order. With `resend_refused` (when no order is at stake:
    /// a standard queue, or each message a group of its own) entries SQS refuses are sent once
    /// more. If any still fail, the whole call fails (the caller retries it; duplicates are
    /// harmless downstream).
    async fn send_all(&self, messages: &[Outgoing<'_>], resend_refused: bool) -> Result<()> {
        let rounds = if resend_refused { 2 } else { 1 };
        for chunk in messages.chunks(BATCH) {
            let mut pending: Vec<(usize, &Outgoing<'_>)> = chunk.iter().enumerate().collect();
            for round in 1..=rounds {
                let entries = pending.iter().map(|(i, message)| self.entry(*i, message)).collect::<Result<Vec<_>>>()?;
                let output = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(unavailable)?;
                let failed: Vec<&str> = output.failed().iter().map(|f| f.id()).collect();
                if failed.is_empty() {
                    break;
                }
                if round == rounds {
                    let first = &output.failed()[0];
                    return Err(Error::unavailable(
                        "queue",
                        format!(
                            "{} of {} messages refused: {} {}",
                            failed.len(),
                            chunk.len(),
                            first.code(),
                            first.message().unwrap_or_default()
                        ),
                    ));
                }
                pending.retain(|(i, _)| failed.contains(&i.to_string().as_str()));
            }
        }
        Ok(())
    }

    /// The client's bounds on a request and a call, extended by the time a long poll may
    /// rightly wait for a message.
    fn long_poll_timeouts(&self, wait: Duration) -> TimeoutConfig {
        let config = self.client.config();
        let bounds = config.timeout_config();
        let mut extended = TimeoutConfig::builder();
        if let Some(connect) = bounds.and_then(TimeoutConfig::connect_timeout) {
            extended = extended.connect_timeout(connect);
        }
        if let Some(read) = bounds.and_then(TimeoutConfig::read_timeout) {
            extended = extended.read_timeout(read + wait);
        }
        if let Some(attempt) = bounds.and_then(TimeoutConfig::operation_attempt_timeout) {
            extended = extended.operation_attempt_timeout(attempt + wait);
        }
        if let Some(call) = bounds.and_then(TimeoutConfig::operation_timeout) {
            extended = extended.operation_timeout(call + wait);
        }
        extended.build()
    }
}

fn fresh_id() -> String {
    Uuid::new_v4().simple().to_string()
}

fn unavailable(err: impl std::error::Error) -> Error {
    Error::unavailable("queue", DisplayErrorContext(err))
}

/// Whole seconds, rounded up so a backoff is never shortened, within SQS's limit.
fn ceil_secs(duration: Duration, max: u64) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.min(max)).unwrap_or(i32::MAX)
}

#[async_trait]
impl Queue for SqsQueue {
    /// On a FIFO queue the message is a group of its own and `delay` is not applied: SQS FIFO
    /// refuses a message's own delay (only the queue's may apply).
    async fn send(&self, body: &str, delay: Duration) -> Result<()> {
        let send = self.client.send_message().queue_url(&self.url).message_body(body);
        let send = if self.fifo {
            send.message_group_id(fresh_id()).message_deduplication_id(fresh_id())
        } else {
            send.delay_seconds(ceil_secs(delay, MAX_DELAY_SECS))
        };
        send.send().await.map_err(unavailable)?;
        Ok(())
    }

    /// Sends in batches of 10; entries SQS refuses are sent once more, and if any still fail
    /// the whole call fails (the caller retries it; duplicates are harmless downstream). On a
    /// FIFO queue each message is a group of its own.
    async fn send_batch(&self, bodies: &[String]) -> Result<()> {
        let messages: Vec<Outgoing<'_>> = bodies.iter().map(|body| Outgoing { group: None, body }).collect();
        self.send_all(&messages, true).await
    }

    fn ordered(&self) -> bool {
        self.fifo
    }

    /// Sends in batches of 10, in order. A refused entry is not sent again on its own: it
    /// would land behind later messages of its group. The call fails instead, naming the
    /// refusals.
    async fn send_grouped(&self, messages: &[(String, String)]) -> Result<()> {
        if !self.fifo {
            return Err(Error::Internal("this queue keeps no order: send_grouped needs a FIFO queue".into()));
        }
        let messages: Vec<Outgoing<'_>> =
            messages.iter().map(|(group, body)| Outgoing { group: Some(group), body }).collect();
        self.send_all(&messages, false).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        let max = i32::try_from(max.clamp(1, BATCH)).unwrap_or(10);
        let wait = Duration::from_secs(wait.as_secs().min(MAX_WAIT_SECS));
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(0))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(self.long_poll_timeouts(wait)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .messages()
            .iter()
            .map(|m| ReceivedMessage {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(ceil_secs(timeout, MAX_VISIBILITY_SECS))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(unavailable)?;
        let attrs = output.attributes();
        let read = |name: QueueAttributeName| -> u64 {
            attrs.and_then(|a| a.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: read(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: read(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_seconds_within_limits() {
        assert_eq!(ceil_secs(Duration::ZERO, MAX_DELAY_SECS), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1), MAX_DELAY_SECS), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500), MAX_DELAY_SECS), 2);
        assert_eq!(ceil_secs(Duration::from_secs(60), MAX_DELAY_SECS), 60);
        assert_eq!(ceil_secs(Duration::from_secs(10_000), MAX_DELAY_SECS), 900);
        assert_eq!(ceil_secs(Duration::from_secs(100_000), MAX_VISIBILITY_SECS), 43_200);
    }
}
