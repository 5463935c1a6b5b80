use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::{deliver_message, modify_webhook};
use crate::auth::Directory;
use crate::backoff::{RetryPolicy, parse_retry_after};
use crate::domain::{
    Attempt, AttemptResult, Delivery, DeliveryKey, DeliveryStatus, Event, EventId, EventType, Ordering, TenantId,
    Trigger, Webhook, WebhookId, WebhookSecret,
};
use crate::ports::{
    Admission, Ask, Circuit, Deferral, DeliveryLog, EventStore, GatePolicy, Gates, Lease, Locks, OutboundRequest,
    Queue, Record, WebhookSender, WebhookStore,
};
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
    /// No attempt was made: admission held it back. It comes back after `after` (a fresh copy
    /// on a standard lane, so waiting never counts toward the dead-letter queue's receives;
    /// the same message on the ordered lane, which keeps its place).
    Defer { after: Duration, reason: Deferral },
}

/// How long the attempts of a batch that finish close together wait for each other, so that
/// they are recorded in one write; an attempt still running then is recorded when it ends,
/// and the batch's other messages are released without waiting for it.
const FLUSH_WINDOW: Duration = Duration::from_millis(25);

/// Where [`Deliverer::deliver_each`] sends each key's answer: its index in the batch, and what
/// to do with its message (`Err`: it must come back).
pub type Answers = mpsc::UnboundedSender<(usize, Result<Next>)>;

/// A delivery of a batch that is over: attempted, or failed without an attempt.
struct Finished {
    index: usize,
    outcome: Result<Outcome>,
    /// Its slot, when admission gave one.
    lease: Option<Lease>,
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
    /// The ordered lane: `deliver` messages of webhooks whose `ordering` is `"ordered"`.
    ordered_queue: Arc<dyn Queue>,
    sender: Arc<dyn WebhookSender>,
    locks: Arc<dyn Locks>,
    gates: Arc<dyn Gates>,
    /// The tenants (through the process's short cache): a disabled tenant's webhooks get nothing.
    tenants: Arc<Directory>,
    policy: RetryPolicy,
    /// `WEBHOOK_MAX_IN_FLIGHT`, for webhooks without their own `maxInFlight`.
    max_in_flight: u32,
    admission: GatePolicy,
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
    pub ordered_queue: Arc<dyn Queue>,
    pub sender: Arc<dyn WebhookSender>,
    pub locks: Arc<dyn Locks>,
    pub gates: Arc<dyn Gates>,
    /// The process's directory, shared with its API so that a change made here holds at once.
    pub tenants: Arc<Directory>,
}

impl Deliverer {
    /// `settings.webhook_timeout` bounds one attempt; the delivery lock outlives it.
    pub fn new(ports: DelivererPorts, settings: &DeliverySettings, keys: SecretKeys) -> Self {
        let DelivererPorts { events, webhooks, deliveries, queue, ordered_queue, sender, locks, gates, tenants } =
            ports;
        let lock_ttl = settings.webhook_timeout * 2 + Duration::from_secs(5);
        let (policy, disable_after) = (settings.retry, settings.disable_after);
        Self {
            events,
            webhooks,
            deliveries,
            queue,
            ordered_queue,
            sender,
            locks,
            gates,
            tenants,
            policy,
            max_in_flight: settings.max_in_flight,
            admission: settings.gates,
            lock_ttl,
            disable_after,
            keys,
        }
    }

    /// `WEBHOOK_MAX_IN_FLIGHT`: the cap of a webhook without its own `maxInFlight`.
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// The delivery lane and the ordered lane.
    pub fn lanes(&self) -> (&Arc<dyn Queue>, &Arc<dyn Queue>) {
        (&self.queue, &self.ordered_queue)
    }

    /// The lane a webhook's deliveries travel: the ordered one for `"ordered"` webhooks.
    pub fn queue_for(&self, webhook: &Webhook) -> &Arc<dyn Queue> {
        match webhook.schedule.ordering {
            Ordering::Ordered => &self.ordered_queue,
            Ordering::Unordered => &self.queue,
        }
    }

    /// Each webhook's circuit breaker, in order (closed when the gates cannot be asked).
    pub async fn circuits(&self, webhooks: &[WebhookId]) -> Vec<Circuit> {
        self.gates.circuits(webhooks).await.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not read the circuit breakers");
            vec![Circuit::CLOSED; webhooks.len()]
        })
    }

    /// Sends `deliver` messages for `deliveries` (of `webhooks`), each on its webhook's lane;
    /// an ordered webhook's in the order its events were accepted (their ids are time-ordered).
    async fn enqueue(&self, deliveries: &[&Delivery], webhooks: &HashMap<WebhookId, &Webhook>) -> Result<()> {
        let mut unordered = Vec::new();
        let mut ordered: Vec<(EventId, WebhookId)> = Vec::new();
        for d in deliveries {
            match webhooks.get(&d.webhook_id).map(|w| w.schedule.ordering) {
                Some(Ordering::Ordered) => ordered.push((d.event_id, d.webhook_id)),
                _ => unordered.push(deliver_message(d.event_id, d.webhook_id)),
            }
        }
        ordered.sort();
        let grouped: Vec<(String, String)> = ordered
            .into_iter()
            .map(|(event_id, webhook_id)| (webhook_id.to_string(), deliver_message(event_id, webhook_id)))
            .collect();
        let (sent, sent_ordered) = tokio::join!(
            async { if unordered.is_empty() { Ok(()) } else { self.queue.send_batch(&unordered).await } },
            async { if grouped.is_empty() { Ok(()) } else { self.ordered_queue.send_grouped(&grouped).await } },
        );
        sent.and(sent_ordered)
    }

    /// Records a pending delivery for every active webhook subscribed to the event's type and
    /// enqueues a `deliver` message for each one not yet final. Safe to repeat.
    pub async fn dispatch(&self, event_id: EventId) -> Result<()> {
        self.dispatch_many(&[event_id]).await
    }

    /// [`Deliverer::dispatch`] for a worker's batch of events: the events read at once, each
    /// distinct event type's webhooks read once, one write to the log, one send to the queue.
    /// An event dispatched before (an idempotent replay, maintenance) goes again only to the
    /// webhooks it has deliveries for: an event is fanned out once.
    pub async fn dispatch_many(&self, event_ids: &[EventId]) -> Result<()> {
        let (found, again) =
            tokio::try_join!(self.events.get_many(event_ids), self.events.dispatched_before(event_ids))?;
        let mut events: Vec<Event> = Vec::with_capacity(found.len());
        for id in event_ids {
            match found.iter().find(|e| e.id == *id) {
                Some(event) if !events.iter().any(|e| e.id == *id) => events.push(event.clone()),
                Some(_) => {}
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
        let mut fanned: Vec<(&Event, Vec<&Webhook>)> = events
            .iter()
            .map(|event| {
                let found = webhooks.get(&(&event.event_type, event.tenant.as_ref())).map_or(&[][..], Vec::as_slice);
                // Parsed once per event, by the first webhook whose filter reads it.
                let payload = std::cell::OnceCell::new();
                (event, found.iter().filter(|w| w.receives(event, &payload) && !disabled.contains(&w.tenant)).collect())
            })
            .collect();
        if !again.is_empty() {
            let keys: Vec<DeliveryKey> = fanned
                .iter()
                .filter(|(event, _)| again.contains(&event.id))
                .flat_map(|(event, subscribed)| {
                    subscribed.iter().map(|w| DeliveryKey { event_id: event.id, webhook_id: w.id })
                })
                .collect();
            let existing = self.deliveries.get_many(&keys).await?;
            for (event, subscribed) in &mut fanned {
                if again.contains(&event.id) {
                    subscribed.retain(|w| existing.contains_key(&DeliveryKey { event_id: event.id, webhook_id: w.id }));
                }
            }
        }
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
        let unfinished: Vec<&Delivery> = stored.iter().filter(|d| !d.status.is_final()).collect();
        let by_id: HashMap<WebhookId, &Webhook> =
            fanned.iter().flat_map(|(_, subscribed)| subscribed.iter().map(|w| (w.id, *w))).collect();
        self.enqueue(&unfinished, &by_id).await?;
        let dispatched: Vec<(&Event, Vec<WebhookId>)> =
            fanned.iter().map(|(event, subscribed)| (*event, subscribed.iter().map(|w| w.id).collect())).collect();
        self.events.mark_dispatched(&dispatched).await?;
        for (event, webhooks) in &dispatched {
            tracing::debug!(event_id = %event.id, webhooks = webhooks.len(), "event dispatched");
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

    /// Makes the scheduled attempt of each delivery of a worker's batch, unless it is final
    /// already (a duplicate message), not yet due (an early copy) or held back by admission
    /// (its webhook's breaker, its webhook's or tenant's cap in flight, its rate limit), and
    /// sends `done` what to do with each key's message (by index in `keys`) as soon as that is
    /// known: a slow attempt holds back only its own message. The batch costs one round trip to
    /// the lock service to lock, one read of the log, one admission, the attempts
    /// (concurrently), and per group of attempts finishing together one write of the log, one
    /// release of their slots and one unlock; each distinct webhook and event is read once.
    ///
    /// Copies of one message arriving together are serialised by a lock on (event, webhook),
    /// taken before the delivery is read: one delivers, the others come back later and see its
    /// result. Without the lock service (Redis down) it delivers anyway: at least once; without
    /// the gates, with no admission. `Err` means the keys not yet answered were not recorded:
    /// their messages must come back.
    pub async fn deliver_each(&self, keys: &[DeliveryKey], done: &Answers) -> Result<()> {
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
        let mut held: Vec<Option<(String, String)>> =
            lock_keys.into_iter().zip(&tokens).map(|(key, token)| Some((key, token.clone()??))).collect();
        let locked: Vec<Option<DeliveryKey>> =
            keys.iter().zip(&tokens).map(|(key, token)| token.is_some().then_some(*key)).collect();
        let result = self.deliver_locked(&locked, &mut held, done).await;
        // What is still held: the locks of keys answered before any attempt, or of a batch that failed.
        let rest: Vec<(String, String)> = held.into_iter().flatten().collect();
        self.unlock(&rest).await;
        result
    }

    async fn unlock(&self, held: &[(String, String)]) {
        if held.is_empty() {
            return;
        }
        if let Err(err) = self.locks.unlock_many(held).await {
            tracing::debug!(error = %err, "could not release the delivery locks; they expire");
        }
    }

    /// The batch's deliveries whose lock was taken (`Some`); the others are busy. `held` are
    /// the locks by index: those released here are taken out.
    async fn deliver_locked(
        &self,
        keys: &[Option<DeliveryKey>],
        held: &mut [Option<(String, String)>],
        done: &Answers,
    ) -> Result<()> {
        let answer = |index: usize, result: Result<Next>| {
            let _ = done.send((index, result));
        };
        let wanted: Vec<DeliveryKey> = keys.iter().flatten().copied().collect();
        let current = self.deliveries.get_many(&wanted).await?;
        let mut due: Vec<(usize, &Delivery)> = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let Some(key) = key else {
                tracing::debug!("another copy of this message is delivering it");
                answer(index, Ok(Next::RetryIn(self.lock_ttl)));
                continue;
            };
            match current.get(key) {
                // Dispatch records every delivery before enqueueing it, so the log lost it. The
                // message comes back until it is dead-lettered, and maintenance records the
                // delivery as failed, where a manual retry can still send it.
                None => answer(
                    index,
                    Err(Error::Internal(format!(
                        "no delivery record for event {} and webhook {}",
                        key.event_id, key.webhook_id
                    ))),
                ),
                Some(delivery) => match self.settled(delivery) {
                    Some(next) => answer(index, Ok(next)),
                    None => due.push((index, delivery)),
                },
            }
        }
        let (webhooks, events) = self.subjects(&due).await?;
        // Those without an attempt: their webhook or event is gone.
        let mut finished: Vec<Finished> = Vec::new();
        let mut going: Vec<(usize, &Delivery, &Webhook, &Event)> = Vec::new();
        for (index, delivery) in &due {
            let gave_up =
                |reason| Finished { index: *index, outcome: Ok(Outcome::gave_up(delivery, reason)), lease: None };
            match (webhooks.get(&delivery.webhook_id), events.get(&delivery.event_id)) {
                (Some(webhook), Some(event)) if webhook.is_active => going.push((*index, delivery, webhook, event)),
                (Some(webhook), _) if !webhook.is_active => finished.push(gave_up("webhook is disabled")),
                (None, _) => finished.push(gave_up("webhook was deleted")),
                _ => finished.push(gave_up("event no longer exists")),
            }
        }
        // An ordered webhook's delivery whose turn has not come goes back behind the earlier one.
        let turns = join_all(going.iter().map(|(_, delivery, webhook, _)| async move {
            match webhook.schedule.ordering {
                Ordering::Ordered => self.deliveries.unfinished_before(webhook.id, delivery.event_id).await,
                Ordering::Unordered => Ok(None),
            }
        }))
        .await;
        let mut in_turn = Vec::with_capacity(going.len());
        for (going, earlier) in going.into_iter().zip(turns) {
            if let Some(earlier) = earlier? {
                tracing::debug!(webhook_id = %going.2.id, earlier = %earlier, "an earlier event goes first");
                answer(going.0, Ok(Next::Defer { after: Duration::ZERO, reason: Deferral::OutOfTurn }));
            } else {
                in_turn.push(going);
            }
        }
        let going = in_turn;
        let admissions = self.admit(&going).await;
        let mut in_play: Vec<usize> = finished.iter().map(|f| f.index).collect();
        let mut attempts = FuturesUnordered::new();
        for ((index, delivery, webhook, event), admission) in going.into_iter().zip(admissions) {
            let lease = match admission {
                Some(Admission::Defer { after, reason }) => {
                    tracing::debug!(webhook_id = %webhook.id, reason = reason.as_str(), "delivery deferred");
                    crate::metrics::global()
                        .increment("relay_delivery_deferrals_total", &[("reason", reason.as_str())]);
                    answer(index, Ok(Next::Defer { after, reason }));
                    continue;
                }
                Some(Admission::Go(lease)) => Some(lease),
                None => None,
            };
            in_play.push(index);
            attempts.push(async move {
                if let Some(wait) = lease.as_ref().map(|l| l.wait).filter(|w| !w.is_zero()) {
                    tokio::time::sleep(wait).await;
                }
                let outcome = self.send(event, webhook, delivery, Trigger::Scheduled).await;
                Finished { index, outcome: outcome.map(|sent| Outcome::Sent(Box::new(sent))), lease }
            });
        }
        // Answered already (busy, settled, deferred, no record): their locks go now.
        let early: Vec<(String, String)> = held
            .iter_mut()
            .enumerate()
            .filter(|(index, _)| !in_play.contains(index))
            .filter_map(|(_, lock)| lock.take())
            .collect();
        self.unlock(&early).await;
        // Attempts finishing close together are recorded together; a slow one on its own.
        loop {
            let mut group = std::mem::take(&mut finished);
            if let Some(first) = attempts.next().await {
                group.push(first);
                let until = tokio::time::Instant::now() + FLUSH_WINDOW;
                while let Ok(Some(next)) = tokio::time::timeout_at(until, attempts.next()).await {
                    group.push(next);
                }
            }
            if group.is_empty() {
                return Ok(());
            }
            let locks: Vec<(String, String)> = group.iter().filter_map(|f| held.get_mut(f.index)?.take()).collect();
            self.finish(group, &webhooks, done).await;
            self.unlock(&locks).await;
        }
    }

    /// Admission for the deliveries about to be attempted, one per delivery; `None` for each
    /// when the gates cannot be asked (the batch then goes without them, as without locks).
    async fn admit(&self, going: &[(usize, &Delivery, &Webhook, &Event)]) -> Vec<Option<Admission>> {
        if going.is_empty() {
            return Vec::new();
        }
        let asks: Vec<Ask> = going
            .iter()
            .map(|(_, _, webhook, _)| Ask {
                webhook: webhook.id,
                tenant: webhook.tenant.clone(),
                max_in_flight: webhook.schedule.max_in_flight.unwrap_or(self.max_in_flight),
                rate_limit: webhook.schedule.rate_limit,
            })
            .collect();
        match self.gates.admit(&asks, &self.admission).await {
            Ok(admissions) if admissions.len() == asks.len() => admissions.into_iter().map(Some).collect(),
            Ok(_) => {
                tracing::warn!("the gates answered a different number of asks; delivering without admission");
                vec![None; asks.len()]
            }
            Err(err) => {
                tracing::warn!(error = %err, "admission unavailable; delivering without it");
                vec![None; asks.len()]
            }
        }
    }

    /// Gives back slots, telling each webhook's breaker how its attempt went.
    async fn release(&self, released: &[(Lease, Option<bool>)]) {
        if !released.is_empty()
            && let Err(err) = self.gates.release(released, &self.admission).await
        {
            tracing::warn!(error = %err, "could not release the deliveries' slots; they expire");
        }
    }

    /// Records a group of finished deliveries in one write, releases their slots (telling each
    /// webhook's breaker how its attempt went) and answers for their messages.
    async fn finish(&self, mut group: Vec<Finished>, webhooks: &HashMap<WebhookId, Webhook>, done: &Answers) {
        // The slots go back while the log is written: they guard the receivers, not the log.
        let mut released = Vec::new();
        for finished in &mut group {
            let succeeded = match &finished.outcome {
                Ok(Outcome::Sent(sent)) => Some(matches!(sent.result, AttemptResult::Delivered)),
                _ => None,
            };
            if let Some(lease) = finished.lease.take() {
                released.push((lease, succeeded));
            }
        }
        let records: Vec<Record<'_>> =
            group.iter().filter_map(|f| f.outcome.as_ref().ok().map(Outcome::record)).collect();
        let (recorded, ()) = tokio::join!(self.deliveries.record_many(&records), self.release(&released));
        let mut answers = Vec::with_capacity(group.len());
        for Finished { index, outcome, .. } in group {
            let answer = match (outcome, &recorded) {
                (Err(err), _) => Err(err),
                (Ok(_), Err(err)) => Err(Error::Internal(format!("the delivery log refused the batch: {err}"))),
                (Ok(Outcome::GaveUp { delivery, reason }), Ok(())) => {
                    tracing::info!(event_id = %delivery.event_id, webhook_id = %delivery.webhook_id, reason, "delivery failed without an attempt");
                    Ok(Next::Done)
                }
                (Ok(Outcome::Sent(sent)), Ok(())) => {
                    if let Err(err) = self.after(webhooks.get(&sent.next.webhook_id), &sent).await {
                        tracing::warn!(webhook_id = %sent.next.webhook_id, error = %err, "could not update the webhook's health");
                    }
                    Ok(sent.retry_in.map_or(Next::Done, Next::RetryIn))
                }
            };
            answers.push((index, answer));
        }
        for answer in answers {
            let _ = done.send(answer);
        }
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
            self.events.get_many(&event_ids)
        );
        let mut found_webhooks = HashMap::with_capacity(webhook_ids.len());
        for webhook in webhooks {
            if let Some(webhook) = webhook? {
                found_webhooks.insert(webhook.id, webhook);
            }
        }
        Ok((found_webhooks, events?.into_iter().map(|e| (e.id, e)).collect()))
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
    pub async fn redeliver(&self, webhook: &Webhook, failed: &[Delivery]) -> Result<()> {
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
        let again: Vec<&Delivery> = again.iter().collect();
        self.enqueue(&again, &HashMap::from([(webhook.id, webhook)])).await
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
