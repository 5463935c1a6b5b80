//! Scheduled maintenance (relay-maintenance in AWS, a timer in relay-local): nothing accepted
//! is lost and nothing stuck stays invisible.
//!
//! - `redispatch`: events stored but never enqueued (the queue refused the dispatch message
//!   after the event was written, and ingest marked them undispatched) are enqueued now.
//! - `prune`: the event index forgets events past their retention (the store's TTL removed
//!   the events themselves).
//! - `drain_dead_letters`: messages the queues gave up on become `failed` deliveries, visible in
//!   the log and retryable by hand, and are removed from their DLQ (every lane's: the ordered
//!   lane has its own on SQS, where a FIFO queue's must be FIFO too).

use std::sync::Arc;
use std::time::Duration;

use super::RelayMessage;
use super::delivery::fail_without_attempt;
use super::message::enqueue_dispatch;
use crate::domain::{Delivery, DeliveryKey, EventId};
use crate::ports::{DeliveryLog, EventStore, Queue, WebhookStore};
use crate::{Result, Timestamp};

/// An event younger than this may still be on its way to the queue.
pub const REDISPATCH_AFTER: Duration = Duration::from_secs(60);

/// Event index entries one run removes at most.
const PRUNE_BATCH: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceReport {
    pub redispatched: usize,
    pub dead_letters: usize,
    /// Dead-lettered deliveries recorded as failed.
    pub failed_deliveries: usize,
    /// Dead-lettered dispatches re-sent.
    pub redispatched_from_dlq: usize,
    /// Messages that could not be read, logged and dropped.
    pub unreadable: usize,
    /// Event index entries removed past the events' retention.
    pub pruned: u64,
}

#[derive(Clone, Debug)]
pub struct Maintenance {
    events: Arc<dyn EventStore>,
    webhooks: Arc<dyn WebhookStore>,
    deliveries: Arc<dyn DeliveryLog>,
    queue: Arc<dyn Queue>,
    /// Each distinct dead-letter queue of the lanes.
    dead_letters: Vec<Arc<dyn Queue>>,
}

impl Maintenance {
    pub fn new(
        events: Arc<dyn EventStore>,
        webhooks: Arc<dyn WebhookStore>,
        deliveries: Arc<dyn DeliveryLog>,
        queue: Arc<dyn Queue>,
        dead_letters: Vec<Arc<dyn Queue>>,
    ) -> Self {
        Self { events, webhooks, deliveries, queue, dead_letters }
    }

    /// Everything, once.
    pub async fn run(&self) -> Result<MaintenanceReport> {
        let mut report = self.drain_dead_letters(1000).await?;
        report.redispatched = self.redispatch(Timestamp::now() - REDISPATCH_AFTER, 1000).await?;
        report.pruned = self.events.prune(Timestamp::now(), PRUNE_BATCH).await?;
        tracing::info!(?report, "maintenance done");
        Ok(report)
    }

    /// Enqueues up to `limit` events created before `created_before` that were never enqueued.
    #[tracing::instrument(skip_all)]
    pub async fn redispatch(&self, created_before: Timestamp, limit: usize) -> Result<usize> {
        let stuck = self.events.undispatched(created_before, limit).await?;
        for event_id in &stuck {
            enqueue_dispatch(self.queue.as_ref(), self.events.as_ref(), *event_id).await?;
            self.events.mark_enqueued(*event_id).await?;
            tracing::warn!(event_id = %event_id, "event was never enqueued; dispatched now");
        }
        Ok(stuck.len())
    }

    /// Takes up to `max` messages off the dead-letter queues, in turn, and records each.
    #[tracing::instrument(skip_all)]
    pub async fn drain_dead_letters(&self, max: usize) -> Result<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        for dead_letter in &self.dead_letters {
            self.drain(dead_letter.as_ref(), max, &mut report).await?;
        }
        Ok(report)
    }

    /// Takes messages off `dead_letter` until `report` counts `max` dead letters or it is empty.
    async fn drain(&self, dead_letter: &dyn Queue, max: usize, report: &mut MaintenanceReport) -> Result<()> {
        while report.dead_letters < max {
            let messages = dead_letter.receive(10, Duration::ZERO).await?;
            if messages.is_empty() {
                break;
            }
            for message in messages {
                report.dead_letters += 1;
                match RelayMessage::parse(&message.body) {
                    Ok(RelayMessage::Deliver { event_id, webhook_id, .. }) => {
                        if self.record_dead_delivery(DeliveryKey { event_id, webhook_id }).await? {
                            report.failed_deliveries += 1;
                        }
                    }
                    Ok(RelayMessage::Dispatch { event_id }) => {
                        self.redispatch_dead(event_id).await?;
                        report.redispatched_from_dlq += 1;
                    }
                    Err(err) => {
                        let excerpt: String = message.body.chars().take(200).collect();
                        tracing::error!(error = %err, body = %excerpt, "unreadable dead letter dropped");
                        report.unreadable += 1;
                    }
                }
                dead_letter.delete(&message.receipt_handle).await?;
            }
        }
        Ok(())
    }

    /// Records the delivery as failed, creating its record if the log lost it. False when the
    /// event or webhook no longer exists (nothing to record).
    async fn record_dead_delivery(&self, key: DeliveryKey) -> Result<bool> {
        let delivery = match self.deliveries.get(key).await? {
            Some(delivery) if delivery.status.is_final() => return Ok(true),
            Some(delivery) => delivery,
            None => {
                let (Some(event), Some(webhook)) =
                    (self.events.get(key.event_id).await?, self.webhooks.get(key.webhook_id).await?)
                else {
                    tracing::warn!(event_id = %key.event_id, webhook_id = %key.webhook_id, "dead letter for a deleted event or webhook");
                    return Ok(false);
                };
                let fresh = Delivery::new(
                    event.id,
                    webhook.id,
                    webhook.tenant.clone(),
                    event.event_type.clone(),
                    Timestamp::now(),
                );
                self.deliveries.ensure(&[fresh]).await?.remove(0)
            }
        };
        tracing::error!(event_id = %key.event_id, webhook_id = %key.webhook_id, "delivery dead-lettered");
        fail_without_attempt(self.deliveries.as_ref(), delivery, "dead-lettered: the queue gave up on its message")
            .await?;
        Ok(true)
    }

    /// A dispatch that kept failing is tried once more from the start; if the event is gone
    /// there is nothing to do.
    async fn redispatch_dead(&self, event_id: EventId) -> Result<()> {
        tracing::error!(event_id = %event_id, "dispatch dead-lettered; sending it again");
        self.queue.send(&RelayMessage::Dispatch { event_id }.to_body(), Duration::ZERO).await
    }
}
