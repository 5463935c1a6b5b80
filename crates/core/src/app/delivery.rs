use std::sync::Arc;
use std::time::Duration;

use super::{RelayMessage, modify_webhook};
use crate::backoff::{RetryPolicy, parse_retry_after};
use crate::domain::{
    Attempt, AttemptResult, Delivery, DeliveryKey, DeliveryStatus, Event, EventId, Trigger, Webhook, WebhookSecret,
};
use crate::ports::{DeliveryLog, EventStore, Locks, OutboundRequest, Queue, WebhookSender, WebhookStore};
use crate::sealing::SecretKeys;
use crate::settings::DeliverySettings;
use crate::signing::SignatureHeaders;
use crate::{Error, Result, Timestamp};

/// A message that comes back this much before its delivery's `nextAttemptAt` is on time
/// (clocks of different workers differ a little).
const EARLY_TOLERANCE: Duration = Duration::from_millis(250);

/// What the queue should do with a message once it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delete it.
    Done,
    /// Keep it, invisible for this long, then handle it again.
    RetryIn(Duration),
}

/// Dispatch (fan one event out to its webhooks) and delivery (sign and POST one pair).
#[derive(Clone, Debug)]
pub struct Deliverer {
    events: Arc<dyn EventStore>,
    webhooks: Arc<dyn WebhookStore>,
    deliveries: Arc<dyn DeliveryLog>,
    queue: Arc<dyn Queue>,
    sender: Arc<dyn WebhookSender>,
    locks: Arc<dyn Locks>,
    policy: RetryPolicy,
    /// How long a delivery lock is held at most: longer than an attempt and its logging.
    lock_ttl: Duration,
    /// A webhook failing without a success for this long is disabled.
    disable_after: Duration,
    /// Opens the webhooks' sealed secrets to sign with.
    keys: SecretKeys,
}

/// The ports a [`Deliverer`] works over.
#[derive(Debug, Clone)]
pub struct DelivererPorts {
    pub events: Arc<dyn EventStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub queue: Arc<dyn Queue>,
    pub sender: Arc<dyn WebhookSender>,
    pub locks: Arc<dyn Locks>,
}

impl Deliverer {
    /// `settings.webhook_timeout` bounds one attempt; the delivery lock outlives it.
    pub fn new(ports: DelivererPorts, settings: &DeliverySettings, keys: SecretKeys) -> Self {
        let DelivererPorts { events, webhooks, deliveries, queue, sender, locks } = ports;
        let lock_ttl = settings.webhook_timeout * 2 + Duration::from_secs(5);
        let (policy, disable_after) = (settings.retry, settings.disable_after);
        Self { events, webhooks, deliveries, queue, sender, locks, policy, lock_ttl, disable_after, keys }
    }

    /// Records a pending delivery for every active webhook subscribed to the event's type and
    /// enqueues a `deliver` message for each one not yet final. Safe to repeat.
    #[tracing::instrument(skip_all, fields(event_id = %event_id))]
    pub async fn dispatch(&self, event_id: EventId) -> Result<()> {
        let Some(event) = self.events.get(event_id).await? else {
            tracing::warn!("event no longer exists; nothing to dispatch");
            return Ok(());
        };
        let webhooks = self.webhooks.subscribed(&event.event_type).await?;
        let now = Timestamp::now();
        let wanted: Vec<Delivery> = webhooks
            .iter()
            .map(|w| Delivery::new(event.id, w.id, w.tenant.clone(), event.event_type.clone(), now))
            .collect();
        let stored = self.deliveries.ensure(&wanted).await?;
        let messages: Vec<String> = stored
            .iter()
            .filter(|d| !d.status.is_final())
            .map(|d| RelayMessage::Deliver { event_id: d.event_id, webhook_id: d.webhook_id }.to_body())
            .collect();
        self.queue.send_batch(&messages).await?;
        tracing::info!(webhooks = webhooks.len(), enqueued = messages.len(), "event dispatched");
        Ok(())
    }

    /// Makes the scheduled attempt of one delivery, unless it is final already (a duplicate
    /// message) or not yet due (an early copy). Copies of one message arriving together are
    /// serialised by a lock on (event, webhook, attempt number): one delivers, the others see
    /// its result. Without the lock service (Redis down) it delivers anyway: at least once.
    #[tracing::instrument(skip_all, fields(event_id = %key.event_id, webhook_id = %key.webhook_id))]
    pub async fn deliver(&self, key: DeliveryKey) -> Result<Next> {
        let delivery = self.current(key).await?;
        if let Some(next) = self.settled(&delivery) {
            return Ok(next);
        }
        let lock_key = format!("delivery:{}:{}:{}", key.event_id, key.webhook_id, delivery.attempt_count + 1);
        let token = match self.locks.try_lock(&lock_key, self.lock_ttl).await {
            Ok(Some(token)) => Some(token),
            Ok(None) => {
                tracing::debug!("another copy of this message is delivering it");
                return Ok(Next::RetryIn(self.lock_ttl));
            }
            Err(err) => {
                tracing::warn!(error = %err, "delivery locks unavailable; delivering without one");
                None
            }
        };
        let result = self.deliver_locked(key).await;
        if let Some(token) = token
            && let Err(err) = self.locks.unlock(&lock_key, &token).await
        {
            tracing::debug!(error = %err, "could not release the delivery lock; it expires");
        }
        result
    }

    async fn current(&self, key: DeliveryKey) -> Result<Delivery> {
        // Dispatch records every delivery before enqueueing it, so the log lost it. The
        // message comes back until it is dead-lettered, and maintenance records the delivery
        // as failed, where a manual retry can still send it.
        self.deliveries.get(key).await?.ok_or_else(|| Error::Internal("no delivery record for this message".into()))
    }

    /// What to do without an attempt: done when final, wait when not yet due.
    fn settled(&self, delivery: &Delivery) -> Option<Next> {
        if delivery.status.is_final() {
            tracing::debug!(status = delivery.status.as_str(), "delivery is final; duplicate message dropped");
            return Some(Next::Done);
        }
        let now = Timestamp::now();
        match delivery.next_attempt_at {
            Some(due) if due > now + EARLY_TOLERANCE => Some(Next::RetryIn(now.until(due))),
            _ => None,
        }
    }

    async fn deliver_locked(&self, key: DeliveryKey) -> Result<Next> {
        // Read again under the lock: a copy that held it before may have delivered.
        let delivery = self.current(key).await?;
        if let Some(next) = self.settled(&delivery) {
            return Ok(next);
        }
        let webhook = match self.webhooks.get(key.webhook_id).await? {
            Some(webhook) if webhook.is_active => webhook,
            Some(_) => return self.give_up(delivery, "webhook is disabled").await,
            None => return self.give_up(delivery, "webhook was deleted").await,
        };
        let Some(event) = self.events.get(key.event_id).await? else {
            return self.give_up(delivery, "event no longer exists").await;
        };
        let (_, retry_in) = self.attempt(&event, &webhook, &delivery, Trigger::Scheduled).await?;
        Ok(retry_in.map_or(Next::Done, Next::RetryIn))
    }

    async fn give_up(&self, delivery: Delivery, reason: &str) -> Result<Next> {
        tracing::info!(reason, "delivery failed without an attempt");
        fail_without_attempt(self.deliveries.as_ref(), delivery, reason).await?;
        Ok(Next::Done)
    }

    /// Puts failed deliveries back on the schedule: each becomes `pending` and gets one more
    /// scheduled attempt (no further retries unless the policy still has some left).
    pub async fn redeliver(&self, failed: &[Delivery]) -> Result<()> {
        let mut messages = Vec::with_capacity(failed.len());
        for delivery in failed {
            let mut again = delivery.clone();
            again.status = DeliveryStatus::Pending;
            again.next_attempt_at = None;
            again.updated_at = Timestamp::now();
            self.deliveries.record(&again, None).await?;
            messages.push(RelayMessage::Deliver { event_id: again.event_id, webhook_id: again.webhook_id }.to_body());
        }
        self.queue.send_batch(&messages).await
    }

    /// Signs and POSTs the event to the webhook once, logs the attempt with the delivery's new
    /// state, and disables the webhook on 410 Gone. Returns the new state and, for a scheduled
    /// attempt that failed with retries left, the delay before the next one.
    pub async fn attempt(
        &self,
        event: &Event,
        webhook: &Webhook,
        delivery: &Delivery,
        trigger: Trigger,
    ) -> Result<(Delivery, Option<Duration>)> {
        let body = event.delivery_body();
        let started_at = Timestamp::now();
        let secrets = webhook.signing_secrets(&self.keys, started_at)?;
        let secrets: Vec<&WebhookSecret> = secrets.iter().collect();
        let headers = SignatureHeaders::sign(&secrets, &event.id.to_string(), started_at.as_secs(), &body);
        let pairs = headers.to_pairs();
        let sent = self.sender.send(OutboundRequest { url: webhook.url.as_url(), headers: &pairs, body }).await;

        let now = Timestamp::now();
        let retry_after = sent.retry_after.as_deref().and_then(|value| parse_retry_after(value, now));
        let result = AttemptResult::classify(sent.status, retry_after);
        let attempt = Attempt {
            number: delivery.attempt_count + 1,
            status_code: sent.status,
            duration_ms: u64::try_from(sent.duration.as_millis()).unwrap_or(u64::MAX),
            error: sent.error,
            response_body: sent.body_excerpt,
            trigger,
            created_at: started_at,
        };
        let (next, retry_in) = delivery.after_attempt(&result, &attempt, &self.policy, now);
        self.deliveries.record(&next, Some(&attempt)).await?;
        let outcome = match result {
            AttemptResult::Delivered => "succeeded",
            AttemptResult::Gone => "gone",
            AttemptResult::Failed { .. } => "failed",
        };
        let metrics = crate::metrics::global();
        metrics.increment("relay_delivery_attempts_total", &[("outcome", outcome)]);
        metrics.observe("relay_delivery_attempt_duration_ms", &[], sent.duration);
        tracing::info!(
            attempt = attempt.number,
            status_code = attempt.status_code,
            duration_ms = attempt.duration_ms,
            error = attempt.error.as_deref(),
            outcome = next.status.as_str(),
            retry_in_ms = retry_in.map(|d| d.as_millis() as u64),
            "delivery attempt"
        );
        match result {
            AttemptResult::Gone => self.disable(webhook, "endpoint answered 410 Gone").await?,
            AttemptResult::Delivered if webhook.failing_since.is_some() => self.track_health(webhook, None).await?,
            AttemptResult::Failed { .. } => self.track_health(webhook, Some(now)).await?,
            AttemptResult::Delivered => {}
        }
        Ok((next, retry_in))
    }

    async fn disable(&self, webhook: &Webhook, reason: &str) -> Result<()> {
        let disabled = modify_webhook(self.webhooks.as_ref(), &self.keys, webhook.id, |current| {
            current.disable(reason, Timestamp::now());
            Ok(true)
        })
        .await?;
        if disabled.is_some() {
            tracing::warn!(webhook_id = %webhook.id, reason, "webhook disabled");
        }
        Ok(())
    }

    /// Notes when a webhook started failing (`failed_at`) or that it recovered (`None`), and
    /// disables it once every delivery has failed for `disable_after`. The webhook is written
    /// only on those changes, not on every failure.
    async fn track_health(&self, webhook: &Webhook, failed_at: Option<Timestamp>) -> Result<()> {
        // Most failures change nothing: skip the read when the window is still open.
        if let (Some(now), Some(since)) = (failed_at, webhook.failing_since)
            && since.until(now) < self.disable_after
        {
            return Ok(());
        }
        // Written at the revision read, so a rotation or change made meanwhile is never undone.
        modify_webhook(self.webhooks.as_ref(), &self.keys, webhook.id, |current| {
            match (failed_at, current.failing_since) {
                (None, None) => return Ok(false),
                (None, Some(_)) => current.failing_since = None,
                (Some(now), None) => current.failing_since = Some(now),
                (Some(now), Some(since)) if since.until(now) >= self.disable_after && current.is_active => {
                    let hours = self.disable_after.as_secs_f64() / 3600.0;
                    let reason = format!("every delivery failed for {hours:.1} h (since {since})");
                    current.disable(reason.clone(), now);
                    tracing::warn!(webhook_id = %webhook.id, reason, "webhook disabled");
                }
                (Some(_), Some(_)) => return Ok(false),
            }
            Ok(true)
        })
        .await?;
        Ok(())
    }
}

/// Marks a delivery `failed` for a reason other than an attempt's response (its webhook was
/// disabled or deleted, or the queue gave up on its message).
pub async fn fail_without_attempt(log: &dyn DeliveryLog, mut delivery: Delivery, reason: &str) -> Result<()> {
    delivery.status = DeliveryStatus::Failed;
    delivery.last_error = Some(reason.to_owned());
    delivery.next_attempt_at = None;
    delivery.updated_at = Timestamp::now();
    log.record(&delivery, None).await
}
