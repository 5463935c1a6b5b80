use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::mpsc;

use crate::app::{Deliverer, Next, RelayMessage};
use crate::domain::{DeliveryKey, EventId};
use crate::ports::{BUSY_DEFER, Deferral, MAX_BUSY_DEFER, Queue, ReceivedMessage};

/// The longest wait a fresh copy of a message can be sent with (SQS: 15 minutes).
const MAX_SEND_DELAY: Duration = Duration::from_secs(900);

/// Handles batches of relay queue messages and says, message by message as soon as it is
/// known, which are done with and which must come back. A message to retry later has its
/// visibility set to the backoff delay first; one that admission held back is sent again with
/// its wait (on the ordered lane, its visibility is set instead, so it keeps its place).
#[derive(Clone, Debug)]
pub struct BatchHandler {
    deliverer: Deliverer,
}

/// A message the handler is finished with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub message_id: String,
    pub receipt_handle: String,
    /// It must come back (its visibility is set, or left to run out); otherwise delete it.
    pub retry: bool,
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
    pub fn new(deliverer: Deliverer) -> Self {
        Self { deliverer }
    }

    /// The queue the `deliver` messages of a lane come from: the ordered lane's, or the
    /// delivery lane's (where a deferred delivery of a standard lane is also sent again).
    pub fn lane(&self, ordered: bool) -> Arc<dyn Queue> {
        let (deliveries, ordered_queue) = self.deliverer.lanes();
        if ordered { ordered_queue.clone() } else { deliveries.clone() }
    }

    /// Handles a whole batch from `source` and says which messages must come back: Lambda's
    /// way, whose event source mapping deletes the others once the invocation returns.
    pub async fn handle(&self, source: Arc<dyn Queue>, messages: Vec<ReceivedMessage>) -> BatchOutcome {
        let (finished, mut handled) = mpsc::unbounded_channel();
        let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
        if !self.handle_each(source, messages, finished).await {
            return BatchOutcome::RetryAll;
        }
        let mut done = HashSet::new();
        while let Some(message) = handled.recv().await {
            if !message.retry {
                done.insert(message.message_id);
            }
        }
        BatchOutcome::Retry(ids.into_iter().filter(|id| !done.contains(id)).collect())
    }

    /// Handles a batch from `source` in a task of its own (a panic costs the messages not yet
    /// finished a retry, not the worker), sending each message to `finished` once it is
    /// handled: a slow delivery holds back only its own message. False when the task panicked:
    /// the messages not sent to `finished` were not handled.
    pub async fn handle_each(
        &self,
        source: Arc<dyn Queue>,
        messages: Vec<ReceivedMessage>,
        finished: mpsc::UnboundedSender<Handled>,
    ) -> bool {
        let handler = self.clone();
        match tokio::spawn(async move { handler.handle_batch(source.as_ref(), messages, &finished).await }).await {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(error = %err, "batch task panicked");
                false
            }
        }
    }

    /// The batch's dispatches go together to [`Deliverer::dispatch_many`] and its deliveries
    /// to [`Deliverer::deliver_each`], so the stores see a few writes per batch, not per
    /// message.
    #[tracing::instrument(skip_all, fields(messages = messages.len()))]
    async fn handle_batch(
        &self,
        source: &dyn Queue,
        messages: Vec<ReceivedMessage>,
        finished: &mpsc::UnboundedSender<Handled>,
    ) {
        let report = |message: &ReceivedMessage, retry: bool| {
            let handled = Handled {
                message_id: message.message_id.clone(),
                receipt_handle: message.receipt_handle.clone(),
                retry,
            };
            let _ = finished.send(handled);
        };
        let mut dispatches = Vec::new();
        let mut deliveries = Vec::new();
        for message in &messages {
            match RelayMessage::parse(&message.body) {
                Ok(RelayMessage::Dispatch { event_id }) => dispatches.push((message, event_id)),
                Ok(RelayMessage::Deliver { event_id, webhook_id, deferrals }) => {
                    deliveries.push((message, DeliveryKey { event_id, webhook_id }, deferrals));
                }
                Err(err) => {
                    // Left to come back until the queue moves it to the DLQ.
                    tracing::error!(message_id = %message.message_id, error = %err, "unreadable message");
                    report(message, true);
                }
            }
        }
        let event_ids: Vec<EventId> = dispatches.iter().map(|(_, id)| *id).collect();
        let dispatching = async {
            if event_ids.is_empty() {
                return;
            }
            let dispatched = self.deliverer.dispatch_many(&event_ids).await;
            if let Err(err) = &dispatched {
                tracing::error!(error = %err, events = event_ids.len(), "dispatch failed; the messages will come back");
            }
            for (message, _) in &dispatches {
                report(message, dispatched.is_err());
            }
        };
        let delivering = async {
            if !source.ordered() {
                self.deliver_together(source, &deliveries, &report).await;
                return;
            }
            // The ordered lane: a batch may hold several messages of one group (SQS FIFO
            // gives them in order). Each group's go one after another; once one is not done,
            // the rest of its group come back at once, still behind it (their group waits for
            // it), as Lambda's rule for FIFO batches asks.
            let mut groups: Vec<Vec<(&ReceivedMessage, DeliveryKey, u32)>> = Vec::new();
            for item in &deliveries {
                match groups.iter_mut().find(|g| g[0].1.webhook_id == item.1.webhook_id) {
                    Some(group) => group.push(*item),
                    None => groups.push(vec![*item]),
                }
            }
            let report = &report;
            join_all(groups.iter().map(|group| async move {
                let mut held = false;
                for item in group {
                    if held {
                        if let Err(err) = source.change_visibility(&item.0.receipt_handle, Duration::ZERO).await {
                            tracing::debug!(message_id = %item.0.message_id, error = %err, "could not release the message; it comes back after its visibility timeout");
                        }
                        report(item.0, true);
                        continue;
                    }
                    held = self.deliver_together(source, std::slice::from_ref(item), &report).await.contains(&true);
                }
            }))
            .await;
        };
        tokio::join!(dispatching, delivering);
    }

    /// Delivers `deliveries` together ([`Deliverer::deliver_each`]), following and reporting
    /// each answer as it comes; says, per delivery, whether its message must come back.
    async fn deliver_together(
        &self,
        source: &dyn Queue,
        deliveries: &[(&ReceivedMessage, DeliveryKey, u32)],
        report: &(impl Fn(&ReceivedMessage, bool) + Sync),
    ) -> Vec<bool> {
        if deliveries.is_empty() {
            return Vec::new();
        }
        let keys: Vec<DeliveryKey> = deliveries.iter().map(|(_, key, _)| *key).collect();
        let (done, mut answers) = mpsc::unbounded_channel();
        let act = async {
            let mut retry: Vec<Option<bool>> = vec![None; keys.len()];
            while let Some((position, result)) = answers.recv().await {
                let Some(&(message, ref key, deferrals)) = deliveries.get(position) else { continue };
                let again = match result {
                    Ok(next) => self.follow(source, message, key, deferrals, next).await,
                    Err(err) => {
                        tracing::error!(message_id = %message.message_id, error = %err, "message failed; it will come back");
                        true
                    }
                };
                retry[position] = Some(again);
                report(message, again);
            }
            retry
        };
        let (delivered, retry) = tokio::join!(
            async {
                let delivered = self.deliverer.deliver_each(&keys, &done).await;
                drop(done);
                delivered
            },
            act
        );
        if let Err(err) = delivered {
            tracing::error!(error = %err, deliveries = keys.len(), "delivery failed; the messages will come back");
        }
        // Whatever was not answered comes back after its visibility timeout.
        deliveries
            .iter()
            .zip(retry)
            .map(|((message, _, _), retry)| {
                retry.unwrap_or_else(|| {
                    report(message, true);
                    true
                })
            })
            .collect()
    }

    /// Does what `next` says with the message; true when it must come back.
    async fn follow(
        &self,
        source: &dyn Queue,
        message: &ReceivedMessage,
        key: &DeliveryKey,
        deferrals: u32,
        next: Next,
    ) -> bool {
        let delay = match next {
            Next::Done => return false,
            Next::RetryIn(delay) => delay,
            Next::Defer { reason: Deferral::OutOfTurn, .. } => {
                // Behind the earlier event's message in its group, with a fresh one.
                let behind =
                    vec![(key.webhook_id.to_string(), crate::app::deliver_message(key.event_id, key.webhook_id))];
                match self.lane(true).send_grouped(&behind).await {
                    Ok(()) => return false,
                    Err(err) => {
                        tracing::warn!(message_id = %message.message_id, error = %err, "could not put the delivery back in its group; it comes back instead");
                    }
                }
                BUSY_DEFER
            }
            Next::Defer { after, reason } => {
                let wait = deferred_wait(after, reason, deferrals);
                // A fresh copy, so that waiting never counts toward the dead-letter queue's
                // receives; the ordered lane keeps the message, and with it its place.
                if !source.ordered() {
                    let again = RelayMessage::Deliver {
                        event_id: key.event_id,
                        webhook_id: key.webhook_id,
                        deferrals: deferrals.saturating_add(1),
                    };
                    match self.lane(false).send(&again.to_body(), wait.min(MAX_SEND_DELAY)).await {
                        Ok(()) => return false,
                        Err(err) => {
                            tracing::warn!(message_id = %message.message_id, error = %err, "could not send the deferred delivery again; it comes back instead");
                        }
                    }
                }
                wait
            }
        };
        if let Err(err) = source.change_visibility(&message.receipt_handle, delay).await {
            // It comes back after the queue's own visibility timeout instead; the
            // delivery's nextAttemptAt still holds it until it is due.
            tracing::warn!(message_id = %message.message_id, error = %err, "could not set the delay on the message");
        }
        true
    }
}

/// How long a delivery held back by admission waits: as the gates said for a breaker or a
/// rate limit (an open breaker's wait spread by up to a fifth, so its backlog does not come
/// back at one moment); for a full cap, [`BUSY_DEFER`] doubled per earlier deferral, up to
/// [`MAX_BUSY_DEFER`], also spread.
fn deferred_wait(after: Duration, reason: Deferral, deferrals: u32) -> Duration {
    let spread = |wait: Duration| wait + wait.mul_f64(rand::random::<f64>() / 5.0);
    match reason {
        Deferral::RateLimited | Deferral::OutOfTurn => after,
        Deferral::CircuitOpen => spread(after),
        Deferral::WebhookBusy | Deferral::TenantBusy => {
            spread(BUSY_DEFER.saturating_mul(1 << deferrals.min(8)).min(MAX_BUSY_DEFER).max(after))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cap_waits_longer_each_time_up_to_a_minute() {
        let wait = |n| deferred_wait(Duration::ZERO, Deferral::WebhookBusy, n);
        assert!(wait(0) >= BUSY_DEFER && wait(0) <= BUSY_DEFER.mul_f64(1.2));
        assert!(wait(3) >= BUSY_DEFER * 8);
        assert!(wait(40) >= MAX_BUSY_DEFER && wait(40) <= MAX_BUSY_DEFER.mul_f64(1.2));
        let paced = Duration::from_millis(1500);
        assert_eq!(deferred_wait(paced, Deferral::RateLimited, 9), paced, "a rate limit's turn is exact");
    }
}
