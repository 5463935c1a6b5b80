use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::{Result, Timestamp};
use crate::domain::{Attempt, Delivery, DeliveryKey, DeliveryStatus, Page, PageRequest, WebhookId};
use crate::ports::DeliveryLog;

#[derive(Debug, Default)]
pub struct MemoryDeliveryLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    deliveries: BTreeMap<DeliveryKey, Delivery>,
    attempts: HashMap<DeliveryKey, Vec<Attempt>>,
}

impl MemoryDeliveryLog {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DeliveryLog for MemoryDeliveryLog {
    async fn ensure(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>> {
        let mut state = lock(&self.state);
        Ok(deliveries
            .iter()
            .map(|d| state.deliveries.entry(d.key()).or_insert_with(|| d.clone()).clone())
            .collect())
    }

    async fn get(&self, key: DeliveryKey) -> Result<Option<Delivery>> {
        Ok(lock(&self.state).deliveries.get(&key).cloned())
    }

    async fn record(&self, delivery: &Delivery, attempt: Option<&Attempt>) -> Result<()> {
        let mut state = lock(&self.state);
        state.deliveries.insert(delivery.key(), delivery.clone());
        if let Some(attempt) = attempt {
            state.attempts.entry(delivery.key()).or_default().push(attempt.clone());
        }
        Ok(())
    }

    async fn list(&self, webhook: WebhookId, status: Option<DeliveryStatus>, page: &PageRequest) -> Result<Page<Delivery>> {
        let state = lock(&self.state);
        let matching = state
            .deliveries
            .values()
            .rev()
            .filter(|d| d.webhook_id == webhook && status.is_none_or(|s| d.status == s));
        Ok(page.apply(matching, |d| d.event_id.as_uuid()).map(Delivery::clone))
    }

    async fn failed_between(&self, webhook: WebhookId, since: Timestamp, until: Timestamp, limit: usize) -> Result<Vec<Delivery>> {
        let state = lock(&self.state);
        Ok(state
            .deliveries
            .values()
            .filter(|d| {
                d.webhook_id == webhook && d.status == DeliveryStatus::Failed && d.created_at >= since && d.created_at < until
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn attempts(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Vec<Attempt>>> {
        let state = lock(&self.state);
        Ok(keys.iter().map(|k| (*k, state.attempts.get(k).cloned().unwrap_or_default())).collect())
    }
}
