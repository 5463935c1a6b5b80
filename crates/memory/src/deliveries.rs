use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::lock;
use relay_core::domain::TenantId;
use relay_core::domain::{
    Attempt, Delivery, DeliveryKey, DeliveryStatus, EventId, EventType, Page, PageRequest, WebhookId,
};
use relay_core::ports::{DeliveryLog, DeliveryStats, Record, StatsScope, TimelineBucket};
use relay_core::{Result, Timestamp};

#[derive(Debug, Default)]
pub struct MemoryDeliveryLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    deliveries: BTreeMap<DeliveryKey, Delivery>,
    attempts: HashMap<DeliveryKey, Vec<Attempt>>,
    /// Each webhook's events whose delivery is not final: what an ordered webhook asks.
    unfinished: HashMap<WebhookId, BTreeSet<EventId>>,
}

impl State {
    /// Stores the delivery's state, keeping `unfinished` in step.
    fn put(&mut self, delivery: Delivery) {
        self.index(&delivery);
        self.deliveries.insert(delivery.key(), delivery);
    }

    fn index(&mut self, delivery: &Delivery) {
        if delivery.status.is_final() {
            if let Some(events) = self.unfinished.get_mut(&delivery.webhook_id) {
                events.remove(&delivery.event_id);
                if events.is_empty() {
                    self.unfinished.remove(&delivery.webhook_id);
                }
            }
        } else {
            self.unfinished.entry(delivery.webhook_id).or_default().insert(delivery.event_id);
        }
    }
}

impl MemoryDeliveryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes these deliveries and their attempts (their events were evicted).
    pub fn forget(&self, keys: &[DeliveryKey]) {
        let mut state = lock(&self.state);
        for key in keys {
            if let Some(mut gone) = state.deliveries.remove(key) {
                gone.status = DeliveryStatus::Failed;
                state.index(&gone);
            }
            state.attempts.remove(key);
        }
        crate::shrink_if_sparse(&mut state.attempts);
    }

    /// How many deliveries are held.
    pub fn len(&self) -> usize {
        lock(&self.state).deliveries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl DeliveryLog for MemoryDeliveryLog {
    async fn ensure(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>> {
        let mut state = lock(&self.state);
        Ok(deliveries
            .iter()
            .map(|d| match state.deliveries.get(&d.key()) {
                Some(stored) => stored.clone(),
                None => {
                    state.put(d.clone());
                    d.clone()
                }
            })
            .collect())
    }

    async fn get(&self, key: DeliveryKey) -> Result<Option<Delivery>> {
        Ok(lock(&self.state).deliveries.get(&key).cloned())
    }

    async fn close_unfinished(&self, reason: &str, now: Timestamp) -> Result<u64> {
        let mut state = lock(&self.state);
        let mut closed = 0;
        for delivery in state
            .deliveries
            .values_mut()
            .filter(|d| matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying))
        {
            delivery.status = DeliveryStatus::Failed;
            delivery.last_error = Some(reason.to_owned());
            delivery.next_attempt_at = None;
            delivery.updated_at = now;
            closed += 1;
        }
        state.unfinished.clear();
        Ok(closed)
    }

    async fn get_many(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Delivery>> {
        let state = lock(&self.state);
        Ok(keys.iter().filter_map(|key| Some((*key, state.deliveries.get(key)?.clone()))).collect())
    }

    async fn record_many(&self, records: &[Record<'_>]) -> Result<()> {
        let mut state = lock(&self.state);
        for Record { delivery, attempt } in records {
            state.put((*delivery).clone());
            if let Some(attempt) = attempt {
                // Most deliveries take one attempt: no room for four until a second comes.
                state.attempts.entry(delivery.key()).or_insert_with(|| Vec::with_capacity(1)).push((*attempt).clone());
            }
        }
        Ok(())
    }

    async fn unfinished_before(&self, webhook: WebhookId, before: EventId) -> Result<Option<EventId>> {
        let state = lock(&self.state);
        Ok(state.unfinished.get(&webhook).and_then(|events| events.first()).filter(|first| **first < before).copied())
    }

    async fn list(
        &self,
        webhook: WebhookId,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        let state = lock(&self.state);
        let matching =
            state.deliveries.values().rev().filter(|d| d.webhook_id == webhook && status.is_none_or(|s| d.status == s));
        Ok(page.apply(matching, |d| d.event_id.as_uuid()).map(Delivery::clone))
    }

    async fn failed_between(
        &self,
        webhook: WebhookId,
        since: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let state = lock(&self.state);
        Ok(state
            .deliveries
            .values()
            .filter(|d| {
                d.webhook_id == webhook
                    && d.status == DeliveryStatus::Failed
                    && d.created_at >= since
                    && d.created_at < until
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn stats(&self, scope: &StatsScope, since: Timestamp) -> Result<DeliveryStats> {
        let state = lock(&self.state);
        let in_scope = |d: &Delivery| match scope {
            StatsScope::Webhook(id) => d.webhook_id == *id,
            StatsScope::Tenant(tenant) => d.tenant == *tenant,
        };
        let mut stats = DeliveryStats::default();
        let mut events = std::collections::HashSet::new();
        let mut latencies = Vec::new();
        for d in state.deliveries.values().filter(|d| in_scope(d)) {
            for a in state.attempts.get(&d.key()).into_iter().flatten().filter(|a| a.created_at >= since) {
                latencies.push(a.duration_ms);
                let slot = if a.status_code.is_some_and(|s| (200..300).contains(&s)) {
                    &mut stats.last_success_at
                } else {
                    &mut stats.last_failure_at
                };
                *slot = (*slot).max(Some(a.created_at));
            }
            if d.created_at < since {
                continue;
            }
            stats.deliveries += 1;
            events.insert(d.event_id);
            match d.status {
                DeliveryStatus::Pending => stats.pending += 1,
                DeliveryStatus::Retrying => stats.retrying += 1,
                DeliveryStatus::Succeeded => stats.succeeded += 1,
                DeliveryStatus::Failed => stats.failed += 1,
            }
        }
        stats.events = events.len() as u64;
        stats.attempts = latencies.len() as u64;
        if !latencies.is_empty() {
            latencies.sort_unstable();
            stats.avg_latency_ms = Some(latencies.iter().sum::<u64>() as f64 / latencies.len() as f64);
            stats.p95_latency_ms = Some(percentile(&latencies, 0.95));
        }
        Ok(stats.with_rate())
    }

    async fn recent(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Delivery>> {
        let state = lock(&self.state);
        let mut recent: Vec<Delivery> = state.deliveries.values().filter(|d| &d.tenant == tenant).cloned().collect();
        recent.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.event_id)));
        recent.truncate(limit);
        Ok(recent)
    }

    async fn timeline(&self, tenant: &TenantId, since: Timestamp, bucket: Duration) -> Result<Vec<TimelineBucket>> {
        let width = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX).max(1);
        let state = lock(&self.state);
        let mut buckets: BTreeMap<i64, TimelineBucket> = BTreeMap::new();
        for d in state.deliveries.values().filter(|d| &d.tenant == tenant && d.created_at >= since) {
            let start = d.created_at.as_millis().div_euclid(width) * width;
            buckets
                .entry(start)
                .or_insert_with(|| TimelineBucket::empty(Timestamp::from_millis(start)))
                .count(d.status, 1);
        }
        Ok(buckets.into_values().collect())
    }

    async fn events(
        &self,
        tenant: &TenantId,
        event_type: Option<&EventType>,
        page: &PageRequest,
    ) -> Result<Page<EventId>> {
        let state = lock(&self.state);
        let ids: BTreeSet<EventId> = state
            .deliveries
            .values()
            .filter(|d| &d.tenant == tenant && event_type.is_none_or(|t| &d.event_type == t))
            .map(|d| d.event_id)
            .collect();
        Ok(page.apply(ids.into_iter().rev(), EventId::as_uuid))
    }

    async fn of_event(&self, tenant: &TenantId, event: EventId) -> Result<Vec<Delivery>> {
        let state = lock(&self.state);
        Ok(state.deliveries.values().filter(|d| d.event_id == event && &d.tenant == tenant).cloned().collect())
    }

    async fn attempts(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Vec<Attempt>>> {
        let state = lock(&self.state);
        Ok(keys.iter().map(|k| (*k, state.attempts.get(k).cloned().unwrap_or_default())).collect())
    }
}

/// The `p` percentile of sorted values, interpolated linearly as PostgreSQL's
/// `percentile_cont` does.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let rank = p * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    let fraction = rank - low as f64;
    sorted[low] as f64 + (sorted[high] as f64 - sorted[low] as f64) * fraction
}
