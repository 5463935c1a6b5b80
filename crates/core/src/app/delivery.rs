use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{RelayMessage, modify_webhook};
use crate::auth::Directory;
use crate::backoff::{RetryPolicy, parse_retry_after};
use crate::domain::{
    Attempt, AttemptResult, Delivery, DeliveryKey, DeliveryStatus, Event, EventId, EventType, TenantId, Trigger,
    Webhook, WebhookId, WebhookSecret,
};
use crate::ports::{DeliveryLog, EventStore, Locks, OutboundRequest, Queue, Record, WebhookSender, WebhookStore};
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

/// One attempt made, not yet recorded.
#[derive(Debug)]
struct Sent {
    /// The delivery's state after it.
    next: Delivery,
    attempt: Attempt,
    /// For a scheduled attempt that failed with retries left: the delay before the next one.
    retry_in: Option<Duration>,
    result: AttemptResult,
    duration: Duration,
    /// When the response (or the failure) came.
    at: Timestamp,
}

/// What became of one due delivery of a batch.
#[derive(Debug)]
enum Outcome {
    Sent(Box<Sent>),
    /// Failed without an attempt: its webhook or its event is gone.
    GaveUp {
        delivery: Delivery,
        reason: &'static str,
    },
}

impl Outcome {
    fn gave_up(delivery: &Delivery, reason: &'static str) -> Self {
        Self::GaveUp { delivery: failed_without_attempt(delivery.clone(), reason), reason }
    }

    fn record(&self) -> Record<'_> {
        match self {
            Self::Sent(sent) => Record { delivery: &sent.next, attempt: Some(&sent.attempt) },
            Self::GaveUp { delivery, .. } => Record { delivery, attempt: None },
        }
    }
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
    /// The tenants (through the process's short cache): a disabled tenant's webhooks get nothing.
    tenants: Arc<Directory>,
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
    /// The process's directory, shared with its API so that a change made here holds at once.
    pub tenants: Arc<Directory>,
}

impl Deliverer {
    /// `settings.webhook_timeout` bounds one attempt; the delivery lock outlives it.
    pub fn new(ports: DelivererPorts, settings: &DeliverySettings, keys: SecretKeys) -> Self {
        let DelivererPorts { events, webhooks, deliveries, queue, sender, locks, tenants } = ports;
        let lock_ttl = settings.webhook_timeout * 2 + Duration::from_secs(5);
        let (policy, disable_after) = (settings.retry, settings.disable_after);
        Self { events, webhooks, deliveries, queue, sender, locks, tenants, policy, lock_ttl, disable_after, keys }
    }

    /// Records a pending delivery for every active webhook subscribed to the event's type and
    /// enqueues a `deliver` message for each one not yet final. Safe to repeat.
    pub async fn dispatch(&self, event_id: EventId) -> Result<()> {
        self.dispatch_many(&[event_id]).await
    }

    /// [`Deliverer::dispatch`] for a worker's batch of events: each distinct event type's
    /// webhooks read once, one write to the log, one send to the queue.
    pub async fn dispatch_many(&self, event_ids: &[EventId]) -> Result<()> {
        let found = join_all(event_ids.iter().map(|id| self.events.get(*id))).await;
        let mut events = Vec::with_capacity(event_ids.len());
        for (id, event) in event_ids.iter().zip(found) {
            match event? {
                Some(event) => events.push(event),
                None => tracing::warn!(event_id = %id, "event no longer exists; nothing to dispatch"),
            }
        }
        // One lookup per (event type, tenant) of the batch, a broadcast's tenant being `None`.
        let mut lookups: Vec<(&EventType, Option<&TenantId>)> =
            events.iter().map(|e| (&e.event_type, e.tenant.as_ref())).collect();
        lookups.sort();
        lookups.dedup();
        let subscribed = join_all(lookups.iter().map(|(t, tenant)| self.webhooks.subscribed(t, *tenant))).await;
        let mut webhooks: HashMap<(&EventType, Option<&TenantId>), Vec<Webhook>> =
            HashMap::with_capacity(lookups.len());
        for (lookup, found) in lookups.into_iter().zip(subscribed) {
            webhooks.insert(lookup, found?);
        }
        let disabled = self.disabled_tenants(webhooks.values().flatten()).await?;
        let fanned: Vec<(&Event, Vec<&Webhook>)> = events
            .iter()
            .map(|event| {
                let found = webhooks.get(&(&event.event_type, event.tenant.as_ref())).map_or(&[][..], Vec::as_slice);
                // Parsed once per event, by the first webhook whose filter reads it.
                let payload = std::cell::OnceCell::new();
                (event, found.iter().filter(|w| w.receives(event, &payload) && !disabled.contains(&w.tenant)).collect())
            })
            .collect();
        let now = Timestamp::now();
        let wanted: Vec<Delivery> = fanned
            .iter()
            .flat_map(|(event, subscribed)| {
                subscribed
                    .iter()
                    .map(|w| Delivery::new(event.id, w.id, w.tenant.clone(), event.event_type.clone(), now))
            })
            .collect();
        let stored = self.deliveries.ensure(&wanted).await?;
        let messages: Vec<String> = stored
            .iter()
            .filter(|d| !d.status.is_final())
            .map(|d| RelayMessage::Deliver { event_id: d.event_id, webhook_id: d.webhook_id }.to_body())
            .collect();
        self.queue.send_batch(&messages).await?;
        let dispatched: Vec<(EventId, Vec<WebhookId>)> =
            fanned.iter().map(|(event, subscribed)| (event.id, subscribed.iter().map(|w| w.id).collect())).collect();
        self.events.mark_dispatched(&dispatched).await?;
        for (event_id, webhooks) in &dispatched {
            tracing::info!(event_id = %event_id, webhooks = webhooks.len(), "event dispatched");
        }
        Ok(())
    }

    /// Which tenants of `webhooks` are stored and disabled: their webhooks get no new event
    /// (a broadcast included), whatever their own state.
    async fn disabled_tenants(&self, webhooks: impl Iterator<Item = &Webhook>) -> Result<Vec<TenantId>> {
        let mut tenants: Vec<&TenantId> = webhooks.map(|w| &w.tenant).collect();
        tenants.sort();
        tenants.dedup();
        let found = join_all(tenants.iter().map(|t| self.tenants.tenant(t))).await;
        let mut disabled = Vec::new();
        for (tenant, found) in tenants.into_iter().zip(found) {
            if found?.is_some_and(|t| !t.is_active) {
                disabled.push(tenant.clone());
            }
        }
        Ok(disabled)
    }

    /// Makes the scheduled attempt of one delivery: [`Deliverer::deliver_many`] of one.
    pub async fn deliver(&self, key: DeliveryKey) -> Result<Next> {
        let mut results = self.deliver_many(&[key]).await?;
        results.pop().unwrap_or_else(|| Err(Error::Internal("no result for the delivery".into())))
    }

    /// Makes the scheduled attempt of each delivery of a worker's batch, unless it is final
    /// already (a duplicate message) or not yet due (an early copy), and says, per key in
    /// order, what to do with its message. The whole batch costs one round trip to the lock
    /// service to lock, one read of the log, the attempts (concurrently), one write of the log
    /// and one round trip to unlock; each distinct webhook and event is read once.
    ///
    /// Copies of one message arriving together are serialised by a lock on (event, webhook),
    /// taken before the delivery is read: one delivers, the others come back later and see its
    /// result. Without the lock service (Redis down) it delivers anyway: at least once.
    /// `Err` means nothing of the batch was recorded: every message must come back.
    pub async fn deliver_many(&self, keys: &[DeliveryKey]) -> Result<Vec<Result<Next>>> {
        let lock_keys: Vec<String> = keys.iter().map(|k| format!("delivery:{}:{}", k.event_id, k.webhook_id)).collect();
        // Per key: `None` when another holder has it, else the token to release (none when
        // the lock service is down and the batch goes ahead without locks).
        let tokens: Vec<Option<Option<String>>> = match self.locks.try_lock_many(&lock_keys, self.lock_ttl).await {
            Ok(tokens) => tokens.into_iter().map(|t| t.map(Some)).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "delivery locks unavailable; delivering without them");
                vec![Some(None); keys.len()]
            }
        };
        let locked: Vec<Option<DeliveryKey>> =
            keys.iter().zip(&tokens).map(|(key, token)| token.is_some().then_some(*key)).collect();
        let result = self.deliver_locked(&locked).await;
        let held: Vec<(String, String)> =
            lock_keys.into_iter().zip(tokens).filter_map(|(key, token)| Some((key, token.flatten()?))).collect();
        if let Err(err) = self.locks.unlock_many(&held).await {
            tracing::debug!(error = %err, "could not release the delivery locks; they expire");
        }
        result
    }

    /// The batch's deliveries whose lock was taken (`Some`); the others are busy.
    async fn deliver_locked(&self, keys: &[Option<DeliveryKey>]) -> Result<Vec<Result<Next>>> {
        let wanted: Vec<DeliveryKey> = keys.iter().flatten().copied().collect();
        let current = self.deliveries.get_many(&wanted).await?;
        let mut results: Vec<Option<Result<Next>>> = Vec::with_capacity(keys.len());
        let mut due: Vec<(usize, &Delivery)> = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let Some(key) = key else {
                tracing::debug!("another copy of this message is delivering it");
                results.push(Some(Ok(Next::RetryIn(self.lock_ttl))));
                continue;
            };
            match current.get(key) {
                // Dispatch records every delivery before enqueueing it, so the log lost it. The
                // message comes back until it is dead-lettered, and maintenance records the
                // delivery as failed, where a manual retry can still send it.
                None => results.push(Some(Err(Error::Internal(format!(
                    "no delivery record for event {} and webhook {}",
                    key.event_id, key.webhook_id
                ))))),
                Some(delivery) => match self.settled(delivery) {
                    Some(next) => results.push(Some(Ok(next))),
                    None => {
                        results.push(None);
                        due.push((index, delivery));
                    }
                },
            }
        }
        let (webhooks, events) = self.subjects(&due).await?;
        // Each due delivery's attempt, or the reason there is none, made concurrently.
        let outcomes = join_all(due.iter().map(|(_, delivery)| async {
            let webhook = match webhooks.get(&delivery.webhook_id) {
                Some(webhook) if webhook.is_active => webhook,
                Some(_) => return Ok(Outcome::gave_up(delivery, "webhook is disabled")),
                None => return Ok(Outcome::gave_up(delivery, "webhook was deleted")),
            };
            let Some(event) = events.get(&delivery.event_id) else {
                return Ok(Outcome::gave_up(delivery, "event no longer exists"));
            };
            Ok(Outcome::Sent(Box::new(self.send(event, webhook, delivery, Trigger::Scheduled).await?)))
        }))
        .await;
        let outcomes: Vec<Outcome> = outcomes.into_iter().collect::<Result<_>>()?;
        let records: Vec<Record<'_>> = outcomes.iter().map(Outcome::record).collect();
        self.deliveries.record_many(&records).await?;
        for ((index, _), outcome) in due.iter().zip(outcomes) {
            let next = match outcome {
                Outcome::GaveUp { delivery, reason } => {
                    tracing::info!(event_id = %delivery.event_id, webhook_id = %delivery.webhook_id, reason, "delivery failed without an attempt");
                    Next::Done
                }
                Outcome::Sent(sent) => {
                    self.after(webhooks.get(&sent.next.webhook_id), &sent).await?;
                    sent.retry_in.map_or(Next::Done, Next::RetryIn)
                }
            };
            if let Some(slot) = results.get_mut(*index) {
                *slot = Some(Ok(next));
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("delivery not handled".into()))))
            .collect())
    }

    /// The webhooks and events of the due deliveries, each read once.
    async fn subjects(
        &self,
        due: &[(usize, &Delivery)],
    ) -> Result<(HashMap<WebhookId, Webhook>, HashMap<EventId, Event>)> {
        let mut webhook_ids: Vec<WebhookId> = due.iter().map(|(_, d)| d.webhook_id).collect();
        webhook_ids.sort();
        webhook_ids.dedup();
        let mut event_ids: Vec<EventId> = due.iter().map(|(_, d)| d.event_id).collect();
        event_ids.sort();
        event_ids.dedup();
        let (webhooks, events) = tokio::join!(
            join_all(webhook_ids.iter().map(|id| self.webhooks.get(*id))),
            join_all(event_ids.iter().map(|id| self.events.get(*id)))
        );
        let mut found_webhooks = HashMap::with_capacity(webhook_ids.len());
        for webhook in webhooks {
            if let Some(webhook) = webhook? {
                found_webhooks.insert(webhook.id, webhook);
            }
        }
        let mut found_events = HashMap::with_capacity(event_ids.len());
        for event in events {
            if let Some(event) = event? {
                found_events.insert(event.id, event);
            }
        }
        Ok((found_webhooks, found_events))
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

    /// Puts failed deliveries back on the schedule: each becomes `pending` and gets one more
    /// scheduled attempt (no further retries unless the policy still has some left).
    pub async fn redeliver(&self, failed: &[Delivery]) -> Result<()> {
        let now = Timestamp::now();
        let again: Vec<Delivery> = failed
            .iter()
            .map(|delivery| Delivery {
                status: DeliveryStatus::Pending,
                next_attempt_at: None,
                updated_at: now,
                ..delivery.clone()
            })
            .collect();
        let records: Vec<Record<'_>> = again.iter().map(|delivery| Record { delivery, attempt: None }).collect();
        self.deliveries.record_many(&records).await?;
        let messages: Vec<String> = again
            .iter()
            .map(|d| RelayMessage::Deliver { event_id: d.event_id, webhook_id: d.webhook_id }.to_body())
            .collect();
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
        let sent = self.send(event, webhook, delivery, trigger).await?;
        self.deliveries.record(&sent.next, Some(&sent.attempt)).await?;
        self.after(Some(webhook), &sent).await?;
        Ok((sent.next, sent.retry_in))
    }

    /// Signs and POSTs the event to the webhook once: the attempt and the delivery's new state,
    /// not yet recorded.
    async fn send(&self, event: &Event, webhook: &Webhook, delivery: &Delivery, trigger: Trigger) -> Result<Sent> {
        let body = event.delivery_body();
        let started_at = Timestamp::now();
        let secrets = webhook.signing_secrets(&self.keys, started_at)?;
        let secrets: Vec<&WebhookSecret> = secrets.iter().collect();
        let headers = SignatureHeaders::sign(&secrets, &event.id.to_string(), started_at.as_secs(), &body);
        // The relay's own headers, then the webhook's (which never share a name with them).
        let pairs: Vec<(&str, &str)> = headers.to_pairs().into_iter().chain(webhook.headers.iter()).collect();
        let timeout = webhook.schedule.timeout();
        let sent =
            self.sender.send(OutboundRequest { url: webhook.url.as_url(), headers: &pairs, body, timeout }).await;

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
        let (next, retry_in) = delivery.after_attempt(&result, &attempt, &webhook.schedule.policy(&self.policy), now);
        Ok(Sent { next, attempt, retry_in, result, duration: sent.duration, at: now })
    }

    /// Once an attempt is recorded: its metrics and log line, and the webhook's health (disabled
    /// on 410 Gone, or after failing for too long). `webhook` is `None` only if it vanished.
    async fn after(&self, webhook: Option<&Webhook>, sent: &Sent) -> Result<()> {
        let outcome = match sent.result {
            AttemptResult::Delivered => "succeeded",
            AttemptResult::Gone => "gone",
            AttemptResult::Failed { .. } => "failed",
        };
        let metrics = crate::metrics::global();
        metrics.increment("relay_delivery_attempts_total", &[("outcome", outcome)]);
        metrics.observe("relay_delivery_attempt_duration_ms", &[], sent.duration);
        let attempt = &sent.attempt;
        tracing::info!(
            event_id = %sent.next.event_id,
            webhook_id = %sent.next.webhook_id,
            attempt = attempt.number,
            status_code = attempt.status_code,
            duration_ms = attempt.duration_ms,
            error = attempt.error.as_deref(),
            outcome = sent.next.status.as_str(),
            retry_in_ms = sent.retry_in.map(|d| d.as_millis() as u64),
            "delivery attempt"
        );
        let Some(webhook) = webhook else { return Ok(()) };
        match sent.result {
            AttemptResult::Gone => self.disable(webhook, "endpoint answered 410 Gone").await?,
            AttemptResult::Delivered if webhook.failing_since.is_some() => self.track_health(webhook, None).await?,
            AttemptResult::Failed { .. } => self.track_health(webhook, Some(sent.at)).await?,
            AttemptResult::Delivered => {}
        }
        Ok(())
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
pub async fn fail_without_attempt(log: &dyn DeliveryLog, delivery: Delivery, reason: &str) -> Result<()> {
    log.record(&failed_without_attempt(delivery, reason), None).await
}

fn failed_without_attempt(mut delivery: Delivery, reason: &str) -> Delivery {
    delivery.status = DeliveryStatus::Failed;
    delivery.last_error = Some(reason.to_owned());
    delivery.next_attempt_at = None;
    delivery.updated_at = Timestamp::now();
    delivery
}
